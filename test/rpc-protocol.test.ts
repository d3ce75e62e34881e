// JSON-RPC 2.0 over WebSocket against the real daemon process: every kind of well- and
// ill-formed message a client can send, and after each one the daemon still answers Host.ping2.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startDaemon, type RunningDaemon } from './helpers/daemon.js';
import { openPeer, pingsOnNewConnection, type WsPeer } from './helpers/wsPeer.js';

const NO_CHANNELS = '/nonexistent-vdsm-agentd-channels';
const ping = (id: unknown) => ({ jsonrpc: '2.0', id, method: 'Host.ping2' });

describe('JSON-RPC 2.0 over WebSocket', () => {
  let d: RunningDaemon;
  let peer: WsPeer;
  beforeAll(async () => {
    d = await startDaemon(['--listen', '127.0.0.1:0', '--channels-dir', NO_CHANNELS]);
  });
  afterEach(async () => {
    peer?.ws.terminate();
    expect(await pingsOnNewConnection(d.url)).toBe(true);
  });
  afterAll(async () => {
    // Nothing a client sent here is a daemon failure: no error-level log line, and a clean exit.
    expect(d.logs().filter((l) => l.level === 'error' || l.level === 'fatal')).toEqual([]);
    expect(await d.stop()).toBe(0);
  });

  it('answers Host.ping2 and its alias ping with true, with or without empty params', async () => {
    peer = await openPeer(d.url);
    expect(await peer.ask(ping(1))).toEqual({ jsonrpc: '2.0', id: 1, result: true });
    expect(await peer.ask({ jsonrpc: '2.0', id: 2, method: 'ping' })).toEqual({ jsonrpc: '2.0', id: 2, result: true });
    expect(await peer.ask({ jsonrpc: '2.0', id: 3, method: 'ping', params: [] })).toMatchObject({
      id: 3,
      result: true,
    });
    expect(await peer.ask({ jsonrpc: '2.0', id: 4, method: 'Host.ping2', params: {} })).toMatchObject({
      id: 4,
      result: true,
    });
  });

  it('echoes string, fractional and null ids', async () => {
    peer = await openPeer(d.url);
    expect(await peer.ask(ping('a-string'))).toMatchObject({ id: 'a-string', result: true });
    expect(await peer.ask(ping(1.5))).toMatchObject({ id: 1.5, result: true });
    expect(await peer.ask(ping(null))).toMatchObject({ id: null, result: true });
  });

  it('subscribes and unsubscribes events, with and without prefixes', async () => {
    peer = await openPeer(d.url);
    expect(await peer.ask({ jsonrpc: '2.0', id: 1, method: 'Host.subscribeEvents' })).toMatchObject({
      id: 1,
      result: true,
    });
    expect(
      await peer.ask({ jsonrpc: '2.0', id: 2, method: 'Host.subscribeEvents', params: { prefixes: ['|virt|'] } }),
    ).toMatchObject({ result: true });
    expect(
      await peer.ask({ jsonrpc: '2.0', id: 3, method: 'Host.subscribeEvents', params: [['|virt|VM_status|']] }),
    ).toMatchObject({ result: true });
    expect(await peer.ask({ jsonrpc: '2.0', id: 4, method: 'Host.unsubscribeEvents' })).toMatchObject({
      id: 4,
      result: true,
    });
  });

  it('answers an unknown method with -32601 and an unknown-method notification with nothing', async () => {
    peer = await openPeer(d.url);
    expect(await peer.ask({ jsonrpc: '2.0', id: 7, method: 'Host.noSuchVerb' })).toEqual({
      jsonrpc: '2.0',
      id: 7,
      error: { code: -32601, message: 'Method not found: Host.noSuchVerb' },
    });
    peer.ws.send(JSON.stringify({ jsonrpc: '2.0', method: 'Host.noSuchVerb' }));
    // The next thing on the wire is the answer to the ping sent after it: the notification got none.
    expect(await peer.ask(ping(8))).toMatchObject({ id: 8, result: true });
  });

  it('answers a frame that is not JSON with -32700 and id null, and keeps the connection', async () => {
    peer = await openPeer(d.url);
    const reply = (await peer.ask('{"jsonrpc": "2.0", "method": "Host.ping2", "id": 1')) as {
      id: unknown;
      error: { code: number; message: string };
    };
    expect(reply).toMatchObject({ jsonrpc: '2.0', id: null, error: { code: -32700 } });
    expect(reply.error.message).toMatch(/^Parse error/);
    expect(await peer.ask(ping(2))).toMatchObject({ id: 2, result: true });
  });

  it.each([
    ['jsonrpc "1.0"', { jsonrpc: '1.0', id: 1, method: 'Host.ping2' }, 1, /'jsonrpc' must be exactly "2.0"/],
    ['no jsonrpc member', { id: 2, method: 'Host.ping2' }, 2, /'jsonrpc'/],
    ['jsonrpc as a number', { jsonrpc: 2.0, id: 3, method: 'Host.ping2' }, 3, /'jsonrpc'/],
    ['method not a string', { jsonrpc: '2.0', id: 4, method: 42 }, 4, /'method' must be a string/],
    ['id an object', { jsonrpc: '2.0', id: { a: 1 }, method: 'Host.ping2' }, null, /'id'/],
    ['params a string', { jsonrpc: '2.0', id: 6, method: 'Host.ping2', params: 'x' }, 6, /'params'/],
    ['a bare number', 17, null, /JSON object/],
    ['a string', 'Host.ping2', null, /JSON object/],
    ['null', null, null, /JSON object/],
  ])('answers an invalid request (%s) with -32600 saying why', async (_what, message, id, why) => {
    peer = await openPeer(d.url);
    const reply = (await peer.ask(JSON.stringify(message))) as {
      id: unknown;
      error: { code: number; message: string };
    };
    expect(reply).toMatchObject({ jsonrpc: '2.0', id, error: { code: -32600 } });
    expect(reply.error.message).toMatch(why);
  });

  it.each([
    [
      'a param of the wrong type',
      'Host.subscribeEvents',
      { prefixes: '|virt|' },
      /'prefixes' must be an array of strings, got string/,
    ],
    [
      'a wrong element type',
      'Host.subscribeEvents',
      { prefixes: ['|virt|', 7] },
      /'prefixes\[1\]' must be a string, got number/,
    ],
    [
      'a positional param of the wrong type',
      'Host.subscribeEvents',
      [{}],
      /'prefixes' must be an array of strings, got an object/,
    ],
    [
      'an unknown named param',
      'Host.subscribeEvents',
      { prefix: ['|virt|'] },
      /unknown param 'prefix'; expected 'prefixes'/,
    ],
    [
      'a param to a method that takes none',
      'Host.ping2',
      { verbose: true },
      /unknown param 'verbose'; this method takes none/,
    ],
    ['too many positional params', 'ping', [1], /at most 0 positional/],
  ])('answers %s with -32602 naming the param and the reason', async (_what, method, params, why) => {
    peer = await openPeer(d.url);
    const reply = (await peer.ask({ jsonrpc: '2.0', id: 9, method, params })) as {
      error: { code: number; message: string };
    };
    expect(reply).toMatchObject({ id: 9, error: { code: -32602 } });
    expect(reply.error.message).toMatch(why);
  });

  it('answers a batch of requests, notifications and invalid entries with one array, notifications left out', async () => {
    peer = await openPeer(d.url);
    const reply = await peer.ask([
      ping(1),
      { jsonrpc: '2.0', method: 'Host.ping2' },
      { jsonrpc: '2.0', id: 'two', method: 'Host.noSuchVerb' },
      5,
      { jsonrpc: '2.0', method: 'Host.subscribeEvents' },
      { jsonrpc: '2.0', id: 3, method: 'Host.subscribeEvents', params: { prefixes: 1 } },
      { jsonrpc: '2.0', id: 4, method: 'ping' },
    ]);
    expect(Array.isArray(reply)).toBe(true);
    expect(reply).toHaveLength(5);
    expect(reply).toEqual(
      expect.arrayContaining([
        { jsonrpc: '2.0', id: 1, result: true },
        expect.objectContaining({ id: 'two', error: expect.objectContaining({ code: -32601 }) }),
        expect.objectContaining({ id: null, error: expect.objectContaining({ code: -32600 }) }),
        expect.objectContaining({ id: 3, error: expect.objectContaining({ code: -32602 }) }),
        { jsonrpc: '2.0', id: 4, result: true },
      ]),
    );
  });

  it('sends nothing back for a batch of notifications only', async () => {
    peer = await openPeer(d.url);
    peer.ws.send(
      JSON.stringify([
        { jsonrpc: '2.0', method: 'Host.ping2' },
        { jsonrpc: '2.0', method: 'ping' },
      ]),
    );
    expect(await peer.ask(ping(5))).toEqual({ jsonrpc: '2.0', id: 5, result: true });
  });

  it('answers an empty batch with a single -32600 error object', async () => {
    peer = await openPeer(d.url);
    const reply = await peer.ask('[]');
    expect(Array.isArray(reply)).toBe(false);
    expect(reply).toMatchObject({
      jsonrpc: '2.0',
      id: null,
      error: { code: -32600, message: expect.stringMatching(/empty batch/) },
    });
  });

  it('answers a batch at the limit (100) in full, and one over it with a single -32600 naming the limit', async () => {
    peer = await openPeer(d.url);
    const full = (await peer.ask(Array.from({ length: 100 }, (_, i) => ping(i)))) as { id: number; result: boolean }[];
    expect(full).toHaveLength(100);
    expect(full.map((r) => r.id).sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(new Set(full.map((r) => r.result))).toEqual(new Set([true]));
    const over = await peer.ask(Array.from({ length: 101 }, (_, i) => ping(i)));
    expect(over).toMatchObject({
      id: null,
      error: { code: -32600, message: expect.stringMatching(/101 requests exceeds the limit of 100/) },
    });
  });

  it('answers a binary frame with a -32600 error that says to send text, and keeps the connection', async () => {
    peer = await openPeer(d.url);
    const reply = await peer.ask(Buffer.from(JSON.stringify(ping(1))));
    expect(reply).toMatchObject({
      id: null,
      error: { code: -32600, message: expect.stringMatching(/binary frames are not accepted.*text frame/) },
    });
    expect(await peer.ask(ping(2))).toMatchObject({ id: 2, result: true });
  });

  it('closes the connection with 1009 on a 2 MiB frame', async () => {
    peer = await openPeer(d.url);
    const big = JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'Host.ping2',
      params: { pad: 'x'.repeat(2 * 1024 * 1024) },
    });
    peer.ws.send(big);
    expect((await peer.closed).code).toBe(1009);
    expect(peer.received).toEqual([]);
  });

  it('still reads a frame just under 1 MiB', async () => {
    peer = await openPeer(d.url);
    const frame = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'Host.ping2', params: { pad: '' } });
    const padded = frame.replace('"pad":""', `"pad":"${'x'.repeat(1024 * 1024 - frame.length - 16)}"`);
    expect(Buffer.byteLength(padded)).toBeLessThan(1024 * 1024);
    expect(await peer.ask(padded)).toMatchObject({
      id: 1,
      error: { code: -32602, message: expect.stringMatching(/unknown param 'pad'/) },
    });
  });

  it('closes the connection with 1007 on a text frame that is not UTF-8', async () => {
    peer = await openPeer(d.url);
    // ws refuses to send invalid UTF-8 as text, so write the frame ourselves: FIN+text, masked.
    const payload = Buffer.from([0x22, 0xff, 0xfe, 0x22]);
    const mask = Buffer.from([1, 2, 3, 4]);
    const masked = payload.map((b, i) => b ^ mask[i % 4]!);
    const socket = (peer.ws as unknown as { _socket: import('node:net').Socket })._socket;
    socket.write(Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]));
    expect((await peer.closed).code).toBe(1007);
  });

  it('never puts a stack trace or a source path in an error', async () => {
    peer = await openPeer(d.url);
    const replies = [
      await peer.ask('{'),
      await peer.ask({ jsonrpc: '2.0', id: 1, method: 'Host.subscribeEvents', params: { prefixes: [{}] } }),
      await peer.ask({ jsonrpc: '2.0', id: 2, method: 'nope' }),
      await peer.ask({ jsonrpc: '2.0', id: 3, method: 'ping', params: [1, 2] }),
      await peer.ask(Buffer.from('x')),
    ];
    for (const r of replies) {
      const text = JSON.stringify(r);
      expect(text).toMatch(/"error":/);
      expect(text).not.toMatch(/stack|\bat .*:\d+|\.(js|ts)\b|node_modules/);
    }
  });

  it('survives a client that disconnects with thousands of requests unanswered', async () => {
    peer = await openPeer(d.url);
    const port = (peer.ws as unknown as { _socket: import('node:net').Socket })._socket.localPort;
    const batch = JSON.stringify(Array.from({ length: 100 }, (_, i) => ping(i)));
    for (let i = 0; i < 50; i++) peer.ws.send(batch);
    peer.ws.terminate();
    await d.waitForLog((l) => l.msg === 'connection closed' && l.peer === `127.0.0.1:${port}`);
  });

  it('answers a plain HTTP request with 426 and a hint instead of hanging', async () => {
    const res = await fetch(d.url.replace(/^ws/, 'http'));
    expect(res.status).toBe(426);
    expect(await res.text()).toMatch(/JSON-RPC 2.0 over WebSocket/);
  });
});
