// Logging per SPEC section 6, read from the real daemon's stdout: pino JSON lines; at info one
// line per connection opened and closed, naming the peer, and nothing per request; at debug,
// every request and reply.
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { startDaemon } from './helpers/daemon.js';
import { openPeer } from './helpers/wsPeer.js';
import { tempDir } from './helpers/channelsDir.js';

// An empty channels directory that exists: the log then holds only what these tests are about.
const NO_CHANNELS = tempDir();

async function session(level: string) {
  // direct: no libvirt on a test machine, whose (expected) absence `auto` would log once.
  const d = await startDaemon([
    '--listen',
    '127.0.0.1:0',
    '--channels-dir',
    NO_CHANNELS,
    '--qga-via',
    'direct',
    '--log-level',
    level,
  ]);
  const peer = await openPeer(d.url);
  const peerName = `127.0.0.1:${(peer.ws as unknown as { _socket: Socket })._socket.localPort}`;
  for (let i = 0; i < 20; i++) await peer.ask({ jsonrpc: '2.0', id: i, method: 'Host.ping2' });
  await peer.ask('not json');
  await peer.ask({ jsonrpc: '2.0', id: 'x', method: 'Host.subscribeEvents', params: { prefixes: 3 } });
  peer.ws.close(1000, 'bye');
  await d.waitForLog((l) => l.msg === 'connection closed');
  expect(await d.stop()).toBe(0);
  return { logs: d.logs(), peerName };
}

describe('logging', () => {
  it('at info: pino JSON lines with level names, one per connection opened and closed with the peer, none per request', async () => {
    const { logs, peerName } = await session('info');
    for (const l of logs)
      expect(l).toMatchObject({ level: expect.any(String), time: expect.any(String), msg: expect.any(String) });
    expect(logs.map((l) => l.msg)).toEqual([
      'listening on ' + String(logs[0]!.url),
      'connection opened',
      'connection closed',
      'shutting down',
      'stopped',
    ]);
    expect(logs[1]).toMatchObject({ level: 'info', peer: peerName, conn: expect.any(Number) });
    expect(logs[2]).toMatchObject({ level: 'info', peer: peerName, conn: logs[1]!.conn, code: 1000, reason: 'bye' });
  });

  it('at debug: every request and every reply, with the connection', async () => {
    const { logs } = await session('debug');
    const requests = logs.filter((l) => l.msg === 'request');
    const replies = logs.filter((l) => l.msg === 'reply');
    expect(requests).toHaveLength(22);
    expect(replies).toHaveLength(22);
    expect(requests[0]).toMatchObject({
      level: 'debug',
      conn: expect.any(Number),
      request: expect.stringContaining('"Host.ping2"'),
    });
    expect(replies.some((l) => /-32700/.test(String(l.reply)))).toBe(true);
    expect(replies.some((l) => /-32602.*'prefixes'/.test(String(l.reply)))).toBe(true);
  });
});
