// vdsm-agent-client against the real daemon, run as a user runs it: indented JSON on success,
// exit 1 with the error's code and message on a JSON-RPC error, exit 2 when it cannot connect.
import { execFile } from 'node:child_process';
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLIENT, startDaemon, type RunningDaemon } from './helpers/daemon.js';
import { hasCommand, missing } from './helpers/prereq.js';
import { suiteDaemon } from './helpers/suiteDaemon.js';
import { RpcClient } from '../src/client/rpcClient.js';
import { makePki, type Pki } from './helpers/throwawayPki.js';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function client(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLIENT, ...args], { env: { ...process.env, ...env }, timeout: 20_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr });
    });
  });
}

const NO_CHANNELS = '/nonexistent-vdsm-agentd-channels';

describe('vdsm-agent-client', () => {
  let d: RunningDaemon;
  beforeAll(async () => {
    d = await startDaemon(['--listen', '127.0.0.1:0', '--channels-dir', NO_CHANNELS]);
  });
  afterAll(async () => {
    expect(await d.stop()).toBe(0);
  });

  it('Host ping2 prints true and exits 0', async () => {
    expect(await client(['--url', d.url, 'Host', 'ping2'])).toEqual({ code: 0, stdout: 'true\n', stderr: '' });
  });

  it('takes the URL from VDSM_AGENT_URL', async () => {
    expect(await client(['Host', 'ping2'], { VDSM_AGENT_URL: d.url })).toMatchObject({ code: 0, stdout: 'true\n' });
  });

  it('passes name=value params, JSON-looking values as JSON', async () => {
    expect(await client(['--url', d.url, 'Host', 'subscribeEvents', 'prefixes=["|virt|"]'])).toMatchObject({ code: 0, stdout: 'true\n' });
  });

  it('exits 1 and prints the code and message of a JSON-RPC error', async () => {
    const bad = await client(['--url', d.url, 'Host', 'subscribeEvents', 'prefixes=5']);
    expect(bad).toEqual({ code: 1, stdout: '', stderr: "vdsm-agent-client: error -32602: Invalid params: 'prefixes' must be an array of strings, got number\n" });
    const unknown = await client(['--url', d.url, 'Host', 'noSuchVerb']);
    expect(unknown).toMatchObject({ code: 1, stdout: '', stderr: 'vdsm-agent-client: error -32601: Method not found: Host.noSuchVerb\n' });
  });

  it('exits 2 with one clear line when it cannot connect', async () => {
    const s = createServer();
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    const port = (s.address() as { port: number }).port;
    await new Promise((r) => s.close(r));
    const r = await client(['--url', `ws://127.0.0.1:${port}`, 'Host', 'ping2']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(new RegExp(`^vdsm-agent-client: cannot connect to ws://127.0.0.1:${port}: .*ECONNREFUSED[^\\n]*\\n$`));
  });

  it('exits 2 on a usage error', async () => {
    expect(await client(['--url', d.url, 'ping2'])).toMatchObject({ code: 2, stderr: expect.stringMatching(/expected NAMESPACE METHOD/) });
    expect(await client(['--url', d.url, 'VM', 'getStats', 'vmID'])).toMatchObject({ code: 2, stderr: expect.stringMatching(/param 'vmID' must be name=value/) });
    expect(await client(['--colour', 'Host', 'ping2'])).toMatchObject({ code: 2, stderr: expect.stringMatching(/unknown option --colour/) });
    expect(await client(['--url', d.url, '--tls-cert', '/x.pem', 'Host', 'ping2'])).toMatchObject({ code: 2, stderr: expect.stringMatching(/go together/) });
  });

  describe('at the connection limit', () => {
    const full = suiteDaemon(['--listen', '127.0.0.1:0', '--channels-dir', NO_CHANNELS, '--max-connections', '1']);

    it('exits 2 saying the daemon closed the connection and why', async () => {
      const holder = await RpcClient.connect(full().url);
      try {
        const r = await client(['--url', full().url, 'Host', 'ping2']);
        expect(r).toEqual({ code: 2, stdout: '', stderr: `vdsm-agent-client: lost the connection to ${full().url}: connection closed (1013: connection limit of 1 reached)\n` });
      } finally {
        await holder.close();
      }
    });
  });

  describe.skipIf(missing({ commands: ['openssl'] }))('over mutual TLS', () => {
    let pki: Pki;
    // Made while the suite is collected, so its removal hook is registered (not when skipped).
    const made = hasCommand('openssl') ? makePki() : null;
    let tlsDaemon: RunningDaemon;
    beforeAll(async () => {
      pki = made!;
      tlsDaemon = await startDaemon(['--listen', '127.0.0.1:0', '--channels-dir', NO_CHANNELS, '--tls-cert', pki.server.cert, '--tls-key', pki.server.key, '--tls-ca', pki.ca.cert]);
    });
    afterAll(async () => {
      expect(await tlsDaemon.stop()).toBe(0);
    });

    it('connects with a certificate the CA signed', async () => {
      const r = await client(['--url', tlsDaemon.url, '--tls-cert', pki.client.cert, '--tls-key', pki.client.key, '--tls-ca', pki.ca.cert, 'Host', 'ping2']);
      expect(r).toEqual({ code: 0, stdout: 'true\n', stderr: '' });
    });

    it('exits 2 when refused for a certificate from another CA', async () => {
      const r = await client(['--url', tlsDaemon.url, '--tls-cert', pki.otherCaClient.cert, '--tls-key', pki.otherCaClient.key, '--tls-ca', pki.ca.cert, 'Host', 'ping2']);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/^vdsm-agent-client: cannot connect to wss:\/\/127.0.0.1:\d+: [^\n]+ \(was the client certificate signed by the CA the daemon trusts\?\)\n$/);
    });

    it('exits 2 naming a TLS file it cannot read', async () => {
      const r = await client(['--url', tlsDaemon.url, '--tls-cert', '/nonexistent/client.pem', '--tls-key', pki.client.key, '--tls-ca', pki.ca.cert, 'Host', 'ping2']);
      expect(r).toMatchObject({ code: 2, stderr: expect.stringMatching(/cannot read \/nonexistent\/client.pem: ENOENT/) });
    });
  });
});
