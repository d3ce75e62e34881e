import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RpcClient } from '../src/client/rpcClient.js';
import { startDaemon, type RunningDaemon } from './helpers/daemon.js';

describe('daemon smoke', () => {
  let d: RunningDaemon;
  beforeAll(async () => {
    d = await startDaemon(['--listen', '127.0.0.1:0', '--channels-dir', '/nonexistent-vdsm-agentd']);
  });
  afterAll(async () => {
    await d?.stop();
  });
  it('answers Host.ping2 and its alias ping with true', async () => {
    const c = await RpcClient.connect(d.url);
    expect(await c.call('Host.ping2')).toBe(true);
    expect(await c.call('ping', [])).toBe(true);
    await c.close();
  });
});
