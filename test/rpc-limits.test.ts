// The transport's limits (SPEC section 2), each set on the command line of a real daemon:
// connections, Origin, frame size, batch length, requests in flight per connection.
import net, { type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { RpcClient } from '../src/client/rpcClient.js';
import { startDaemon } from './helpers/daemon.js';
import { suiteDaemon } from './helpers/suiteDaemon.js';
import { openPeer, pingsOnNewConnection } from './helpers/wsPeer.js';

const NO_CHANNELS = '/nonexistent-vdsm-agentd-channels';
const ping = (id: unknown) => ({ jsonrpc: '2.0', id, method: 'Host.ping2' });

describe('connections', () => {
  const daemon = suiteDaemon(['--listen', '127.0.0.1:0', '--channels-dir', NO_CHANNELS]);

  it('serves 300 concurrent connections, each answered', async () => {
    const clients = await Promise.all(Array.from({ length: 300 }, () => RpcClient.connect(daemon().url)));
    try {
      const answers = await Promise.all(clients.map((c) => c.call('Host.ping2')));
      expect(answers).toEqual(Array(300).fill(true));
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
    expect(await pingsOnNewConnection(daemon().url)).toBe(true);
  });
});

describe('connection limit', () => {
  const daemon = suiteDaemon(['--listen', '127.0.0.1:0', '--channels-dir', NO_CHANNELS, '--max-connections', '3']);

  it('closes the connection over the limit with 1013 (try again later), and accepts again once one closes', async () => {
    const clients = await Promise.all(Array.from({ length: 3 }, () => RpcClient.connect(daemon().url)));
    const over = await openPeer(daemon().url);
    expect(await over.closed).toEqual({ code: 1013, reason: 'connection limit of 3 reached' });
    await daemon().waitForLog((l) => l.msg === 'connection refused' && /connection limit of 3/.test(String(l.reason)));
    expect(await clients[0]!.call('Host.ping2')).toBe(true);
    await clients[0]!.close();
    await daemon().waitForLog((l) => l.msg === 'connection closed');
    expect(await pingsOnNewConnection(daemon().url)).toBe(true);
    await Promise.all(clients.map((c) => c.close()));
  });
});

describe('Origin', () => {
  const daemon = suiteDaemon([
    '--listen',
    '127.0.0.1:0',
    '--channels-dir',
    NO_CHANNELS,
    '--allowed-origins',
    'https://engine.example,https://admin.example',
  ]);

  it('refuses a connection whose Origin is not configured as allowed, with HTTP 403', async () => {
    await expect(openPeer(daemon().url, { headers: { Origin: 'https://evil.example' } })).rejects.toMatchObject({
      status: 403,
    });
    await expect(openPeer(daemon().url, { headers: { Origin: 'null' } })).rejects.toMatchObject({ status: 403 });
    const refused = await daemon().waitForLog((l) => l.msg === 'connection refused');
    expect(refused.reason).toMatch(/origin "https:\/\/evil.example" is not allowed/);
    expect(await pingsOnNewConnection(daemon().url)).toBe(true);
  });

  it('serves an allowed Origin and a client that sends none', async () => {
    expect(await pingsOnNewConnection(daemon().url, { headers: { Origin: 'https://admin.example' } })).toBe(true);
    expect(await pingsOnNewConnection(daemon().url)).toBe(true);
  });

  it('refuses any Origin when none is configured (the default)', async () => {
    const plain = await startDaemon(['--listen', '127.0.0.1:0', '--channels-dir', NO_CHANNELS]);
    try {
      await expect(openPeer(plain.url, { headers: { Origin: `http://127.0.0.1` } })).rejects.toMatchObject({
        status: 403,
      });
      expect(await pingsOnNewConnection(plain.url)).toBe(true);
    } finally {
      await plain.stop();
    }
  });
});

describe('frame, batch and in-flight limits set by flags', () => {
  const daemon = suiteDaemon([
    '--listen',
    '127.0.0.1:0',
    '--channels-dir',
    NO_CHANNELS,
    '--max-frame-bytes',
    '4096',
    '--max-batch',
    '8',
    '--max-in-flight',
    '4',
  ]);

  it('closes with 1009 over --max-frame-bytes and serves the next connection', async () => {
    const peer = await openPeer(daemon().url);
    expect(await peer.ask({ ...ping(1), params: { pad: 'x'.repeat(3000) } })).toMatchObject({
      id: 1,
      error: { code: -32602 },
    });
    peer.ws.send(JSON.stringify({ ...ping(2), params: { pad: 'x'.repeat(5000) } }));
    expect((await peer.closed).code).toBe(1009);
    expect(await pingsOnNewConnection(daemon().url)).toBe(true);
  });

  it('refuses a batch over --max-batch with one -32600', async () => {
    const peer = await openPeer(daemon().url);
    const reply = await peer.ask(Array.from({ length: 9 }, (_, i) => ping(i)));
    expect(reply).toMatchObject({ id: null, error: { code: -32600, message: expect.stringMatching(/limit of 8/) } });
    peer.ws.close();
  });

  it('answers every request of a batch over --max-in-flight with -32000 Server busy and its id, notifications with nothing', async () => {
    const peer = await openPeer(daemon().url);
    const reply = (await peer.ask([
      ping(1),
      ping(2),
      { jsonrpc: '2.0', method: 'Host.ping2' },
      ping(3),
      ping('four'),
      ping(5),
    ])) as unknown[];
    expect(reply).toEqual(
      [1, 2, 3, 'four', 5].map((id) => ({
        jsonrpc: '2.0',
        id,
        error: { code: -32000, message: 'Server busy: more than 4 requests in flight on this connection' },
      })),
    );
    expect(await peer.ask([ping(1), ping(2), ping(3), ping(4)])).toHaveLength(4);
    peer.ws.close();
  });

  it('answers pipelined requests past --max-in-flight, each exactly once and none refused (backpressure)', async () => {
    const peer = await openPeer(daemon().url);
    // Corked: all twelve frames leave in one write, so the daemon reads them in one go and the
    // first four are still unanswered when the others are parsed.
    const socket = (peer.ws as unknown as { _socket: Socket })._socket;
    socket.cork();
    for (let i = 1; i <= 12; i++) peer.ws.send(JSON.stringify(ping(i)));
    socket.uncork();
    const replies = (await Promise.all(Array.from({ length: 12 }, () => peer.next()))) as {
      id: number;
      result?: true;
      error?: { code: number };
    }[];
    expect(replies.map((r) => r.id).sort((a, b) => a - b)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    // At the limit the daemon stops reading until answers have gone out: nothing is "Server busy".
    for (const r of replies) expect(r.result).toBe(true);
    expect(await peer.ask(ping(13))).toMatchObject({ id: 13, result: true });
    peer.ws.close();
  });
});

/** Opens a TCP connection that never sends a byte; resolves once connected. */
function silentSocket(url: string): Promise<{ socket: Socket; closed: Promise<void> }> {
  const { hostname, port } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  socket.on('error', () => {});
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve({ socket, closed }));
    socket.once('close', () => reject(new Error('closed before connecting')));
  });
}

describe('silent peer', () => {
  // A short --handshake-timeout (default 10 s), so the silent peer's drop is seen in seconds.
  const daemon = suiteDaemon([
    '--listen',
    '127.0.0.1:0',
    '--channels-dir',
    NO_CHANNELS,
    '--max-connections',
    '1',
    '--handshake-timeout',
    '2',
  ]);

  it('drops a peer that connects and never sends its upgrade request (after --handshake-timeout)', async () => {
    const { closed } = await silentSocket(daemon().url);
    await closed;
    await daemon().waitForLog(
      (l) => l.msg === 'connection closed: nothing recognisable sent within the detection timeout',
    );
    expect(await pingsOnNewConnection(daemon().url)).toBe(true);
  });
});

describe('idle sockets', () => {
  // The default 10 s handshake timeout: the held sockets must outlive the test's own set-up.
  const daemon = suiteDaemon(['--listen', '127.0.0.1:0', '--channels-dir', NO_CHANNELS, '--max-connections', '1']);

  it('bounds raw sockets at --max-connections plus 100: the next one is dropped while the others stay', async () => {
    const held = await Promise.all(Array.from({ length: 101 }, () => silentSocket(daemon().url)));
    let heldOpen = true;
    void Promise.race(held.map((h) => h.closed)).then(() => (heldOpen = false));
    const extra = net.connect(Number(new URL(daemon().url).port), '127.0.0.1');
    extra.on('error', () => {});
    await new Promise((r) => extra.once('close', r));
    expect(heldOpen).toBe(true);
    for (const h of held) h.socket.destroy();
    await Promise.all(held.map((h) => h.closed));
    // The daemon counts a socket gone once it has seen it close, which may come a moment later.
    await expect.poll(() => pingsOnNewConnection(daemon().url).catch(() => false)).toBe(true);
  });
});
