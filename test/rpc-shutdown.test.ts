// SIGTERM/SIGINT on the real daemon: it stops accepting, answers what it has read, closes every
// connection with 1001 and exits 0.
import { describe, expect, it } from 'vitest';
import { RpcClient } from '../src/client/rpcClient.js';
import { startDaemon } from './helpers/daemon.js';
import { openPeer } from './helpers/wsPeer.js';

const NO_CHANNELS = '/nonexistent-vdsm-agentd-channels';

describe('graceful shutdown', () => {
  it.each(['SIGTERM', 'SIGINT'] as const)('on %s closes connected clients with 1001 and exits 0', async (signal) => {
    const d = await startDaemon(['--listen', '127.0.0.1:0', '--channels-dir', NO_CHANNELS]);
    const a = await RpcClient.connect(d.url);
    const b = await openPeer(d.url);
    expect(await a.call('Host.ping2')).toBe(true);
    const code = await d.stop(signal);
    expect(code).toBe(0);
    expect(a.closed).toEqual({ code: 1001, reason: 'daemon shutting down' });
    expect(await b.closed).toEqual({ code: 1001, reason: 'daemon shutting down' });
    expect(d.logs().map((l) => l.msg)).toEqual(expect.arrayContaining(['shutting down', 'stopped']));
    expect(d.logs().find((l) => l.msg === 'shutting down')).toMatchObject({ signal });
    expect(d.stderr()).toBe('');
    // A call on the closed connection fails at once instead of waiting forever.
    await expect(a.call('Host.ping2')).rejects.toThrow(/connection closed/);
    // And nothing listens any more.
    await expect(RpcClient.connect(d.url)).rejects.toThrow(/ECONNREFUSED/);
  });

  it('exits 0 on a SIGTERM that comes the moment it starts listening', async () => {
    for (let i = 0; i < 5; i++) {
      const d = await startDaemon(['--listen', '127.0.0.1:0', '--channels-dir', NO_CHANNELS]);
      expect(await d.stop('SIGTERM')).toBe(0);
      expect(d.logs().at(-1)).toMatchObject({ msg: 'stopped' });
    }
  });

  it('exits 0 on SIGTERM even when whoever read its log has gone (EPIPE on stdout)', async () => {
    const d = await startDaemon(['--listen', '127.0.0.1:0', '--channels-dir', NO_CHANNELS]);
    // Its next log line ("shutting down") meets a closed pipe; the exit must not wait on it.
    d.proc.stdout!.destroy();
    expect(await d.stop('SIGTERM')).toBe(0);
  });

  it('answers every request it has read before closing, while a client is pipelining thousands', async () => {
    const d = await startDaemon(['--listen', '127.0.0.1:0', '--channels-dir', NO_CHANNELS, '--log-level', 'debug']);
    const peer = await openPeer(d.url);
    const frames = 300;
    for (let f = 0; f < frames; f++) {
      peer.ws.send(
        JSON.stringify(
          Array.from({ length: 100 }, (_, i) => ({ jsonrpc: '2.0', id: f * 100 + i, method: 'Host.ping2' })),
        ),
      );
    }
    // Signal while the daemon is working through them.
    await d.waitForLog((l) => l.msg === 'request');
    const code = await d.stop('SIGTERM');
    const closed = await peer.closed;
    expect(code).toBe(0);
    expect(closed.code).toBe(1001);

    const read = d.logs().filter((l) => l.msg === 'request').length;
    const answered = d.logs().filter((l) => l.msg === 'reply').length;
    // Every frame the daemon read got its reply, and the client received each before the close.
    expect(read).toBeGreaterThan(0);
    expect(answered).toBe(read);
    expect(peer.received).toHaveLength(read);
    // Each request of those frames answered once, and with true: past --max-in-flight (256) the
    // daemon stops reading rather than refusing (backpressure). Answers may overtake each other.
    const replies = (peer.received as { id: number; result?: boolean; error?: { code: number } }[][]).flat();
    expect(replies.map((r) => r.id).sort((x, y) => x - y)).toEqual(Array.from({ length: read * 100 }, (_, i) => i));
    for (const r of replies) expect(r.result).toBe(true);
    // Frames that crossed the daemon's Close frame are not answered (RFC 6455), and are said so.
    const ignored = d.logs().filter((l) => l.msg === 'message after close ignored').length;
    console.log(
      `shutdown while pipelining: ${read} of ${frames} frames read and answered, ${ignored} arrived after the Close frame`,
    );
    expect(read + ignored).toBeLessThanOrEqual(frames);
  });
});
