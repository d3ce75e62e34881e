// The STOMP port byte for byte, against the real daemon, over plain TCP and over mutual TLS:
// what goes on the wire for CONNECTED, MESSAGE, RECEIPT and ERROR, VDSM's ERROR cases, and what
// the port does with garbage, a frame fed one byte at a time, an oversized frame, a silent
// client and a stalled one.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RpcClient, type ClientTls } from '../src/client/rpcClient.js';
import { startDaemon, type RunningDaemon } from './helpers/daemon.js';
import { missing } from './helpers/prereq.js';
import { frame, RawStomp } from './helpers/rawStomp.js';
import { makePki } from './helpers/throwawayPki.js';

const REQ = 'jms.topic.vdsm_requests';
const RESP = 'jms.topic.vdsm_responses';
const PING = '{"jsonrpc":"2.0","id":"1","method":"Host.ping2"}';
const PONG = '{"jsonrpc":"2.0","id":"1","result":true}';
const MAX_FRAME = 4096;
/** --handshake-timeout, shorter than the default 10 s so the silent client's drop is seen in seconds. */
const HANDSHAKE_S = 3;

const noOpenssl = missing({ commands: ['openssl'] });
const pki = noOpenssl ? null : makePki();
const variants = [
  { name: 'plain TCP', tls: (): ClientTls | undefined => undefined, args: (): string[] => [] },
  {
    name: 'mutual TLS',
    tls: (): ClientTls | undefined => ({ cert: pki!.client.cert, key: pki!.client.key, ca: pki!.ca.cert }),
    args: (): string[] => ['--tls-cert', pki!.server.cert, '--tls-key', pki!.server.key, '--tls-ca', pki!.ca.cert],
  },
].filter((v) => v.name === 'plain TCP' || !noOpenssl);

for (const variant of variants)
  describe(`STOMP on the wire (${variant.name})`, () => {
    let d: RunningDaemon;
    let port: number;
    const open: RawStomp[] = [];
    const connect = async (): Promise<RawStomp> => {
      const c = await RawStomp.connect(port, { tls: variant.tls() });
      open.push(c);
      return c;
    };
    const wsClient = (): Promise<RpcClient> => RpcClient.connect(d.url, { tls: variant.tls() });

    beforeAll(async () => {
      d = await startDaemon([
        '--listen',
        '127.0.0.1:0',
        '--channels-dir',
        '/nonexistent-vdsm-agentd',
        '--max-frame-bytes',
        String(MAX_FRAME),
        '--handshake-timeout',
        String(HANDSHAKE_S),
        ...variant.args(),
      ]);
      port = Number(new URL(d.url).port);
    });
    afterAll(async () => {
      for (const c of open) c.close();
      await d?.stop();
    });

    it("answers the engine's own frames with exactly VDSM's bytes, one frame per write", async () => {
      const c = await connect();
      // The engine's order over TCP: SUBSCRIBEs may overtake CONNECT.
      c.write(frame('SUBSCRIBE', { destination: RESP, ack: 'auto', id: 'sub-r' }));
      c.write('CONNECT\naccept-version:1.2\nheart-beat:0,15000\nhost:null\n\n\0');
      c.write(frame('SEND', { destination: REQ, 'reply-to': RESP, ovirtCorrelationId: 'flow-1' }, PING));
      const [connected, message] = await c.nextFrames(2);
      expect(connected).toBe('CONNECTED\nversion:1.2\nheart-beat:15000,0\n\n');
      const id = /\nmessage-id:([^\n]+)\n/.exec(message!)![1];
      expect(message).toBe(
        `MESSAGE\ndestination:${RESP}\ncontent-type:application/json\nsubscription:sub-r\nmessage-id:${id}\ncontent-length:${PONG.length}\n\n${PONG}`,
      );
      // Nothing after a frame's NUL: the received bytes end exactly at it.
      expect(c.text().endsWith('\0')).toBe(true);
    });

    it('raises heart-beats to 1000 ms, swaps them, and sends bare newlines', async () => {
      const c = await connect();
      c.write('CONNECT\naccept-version:1.1,1.2\nheart-beat:0,10\n\n\0');
      await c.nextFrames(1);
      expect(c.frames()[0]).toBe('CONNECTED\nversion:1.2\nheart-beat:1000,0\n\n');
      await c.until(() => /\0\n\n$/.test(c.text()), 5000, 'two heart-beats');
      expect(c.isClosed).toBe(false);
    });

    it('drops a client that promised heart-beats and went silent', async () => {
      const c = await connect();
      c.write('CONNECT\naccept-version:1.2\nheart-beat:1000,0\n\n\0');
      await c.closed;
      expect(c.frames()[0]).toBe('CONNECTED\nversion:1.2\nheart-beat:0,1000\n\n');
      await d.waitForLog((l) => l.msg === 'STOMP peer silent past its heart-beat, closing');
    });

    it('sends a RECEIPT for DISCONNECT with receipt, then closes', async () => {
      const c = await connect();
      c.write('CONNECT\naccept-version:1.2\n\n\0');
      c.write(frame('DISCONNECT', { receipt: 'r-77' }));
      await c.closed;
      expect(c.frames()).toEqual(['CONNECTED\nversion:1.2\nheart-beat:0,0\n\n', 'RECEIPT\nreceipt-id:r-77\n\n']);
    });

    const errorCases: [string, string, string][] = [
      ['accept-version without 1.2', 'CONNECT\naccept-version:1.0,1.1\n\n\0', 'Version unsupported'],
      ['no accept-version at all', 'STOMP\nhost:x\n\n\0', 'Version unsupported'],
      [
        'SUBSCRIBE without id',
        frame('SUBSCRIBE', { destination: RESP }),
        'Missing destination or subscription id header',
      ],
      [
        'SUBSCRIBE without destination',
        frame('SUBSCRIBE', { id: 'a' }),
        'Missing destination or subscription id header',
      ],
      [
        'SUBSCRIBE with a taken id',
        frame('SUBSCRIBE', { destination: RESP, id: 'dup' }) + frame('SUBSCRIBE', { destination: 'x', id: 'dup' }),
        'Subscription id already exists',
      ],
      ['UNSUBSCRIBE without id', frame('UNSUBSCRIBE'), 'Missing id header'],
      ['SEND without destination', frame('SEND', {}, 'x'), 'Missing destination header'],
      [
        'SEND to a destination nobody subscribed',
        frame('SEND', { destination: 'jms.topic.elsewhere' }, 'x'),
        'Subscription not available',
      ],
      [
        'ACK',
        frame('ACK', { id: '1' }),
        'ACK is not supported: subscriptions are ack:auto and there are no transactions',
      ],
      [
        'BEGIN',
        frame('BEGIN', { transaction: 't' }),
        'BEGIN is not supported: subscriptions are ack:auto and there are no transactions',
      ],
    ];
    for (const [name, bytes, text] of errorCases) {
      it(`ERROR "${text}" for ${name}, and the connection stays usable`, async () => {
        const c = await connect();
        c.write(bytes);
        c.write(frame('SUBSCRIBE', { destination: RESP, id: 'after' }));
        c.write(frame('SEND', { destination: REQ, 'reply-to': RESP }, PING));
        const frames = await c.nextFrames(2);
        expect(frames[0]).toBe(`ERROR\ncontent-length:${text.length}\n\n${text}`);
        expect(frames[1]).toMatch(/^MESSAGE\n[^]*\n\n\{"jsonrpc":"2.0","id":"1","result":true\}$/);
      });
    }

    it('UNSUBSCRIBE stops the responses of that subscription; an unknown id is no error', async () => {
      const c = await connect();
      c.write(frame('SUBSCRIBE', { destination: RESP, id: 's1' }));
      c.write(frame('UNSUBSCRIBE', { id: 'nope', receipt: 'u0' }));
      c.write(frame('UNSUBSCRIBE', { id: 's1', receipt: 'u1' }));
      c.write(frame('SEND', { destination: REQ, 'reply-to': RESP, receipt: 'sent' }, PING));
      const frames = await c.nextFrames(3);
      expect(frames).toEqual([
        'RECEIPT\nreceipt-id:u0\n\n',
        'RECEIPT\nreceipt-id:u1\n\n',
        'RECEIPT\nreceipt-id:sent\n\n',
      ]);
    });

    it('a SEND without reply-to is executed but not answered', async () => {
      const c = await connect();
      c.write(frame('SUBSCRIBE', { destination: RESP, id: 's' }));
      c.write(frame('SEND', { destination: REQ }, PING));
      c.write(
        frame('SEND', { destination: REQ, 'reply-to': RESP }, '{"jsonrpc":"2.0","id":"2","method":"Host.ping2"}'),
      );
      const frames = await c.nextFrames(1);
      expect(frames).toHaveLength(1);
      expect(frames[0]).toContain('"id":"2"');
    });

    it('answers a SEND body that is not JSON with a JSON-RPC parse error to reply-to', async () => {
      const c = await connect();
      c.write(frame('SUBSCRIBE', { destination: RESP, id: 's' }));
      c.write(frame('SEND', { destination: `${REQ}.sub`, 'reply-to': RESP }, '{not json'));
      const [m] = await c.nextFrames(1);
      expect(JSON.parse(m!.slice(m!.indexOf('\n\n') + 2))).toMatchObject({ id: null, error: { code: -32700 } });
    });

    it('closes the connection on an unknown command', async () => {
      const c = await connect();
      c.write('CONNECT\naccept-version:1.2\n\n\0');
      c.write('FROBNICATE\n\n\0');
      await c.closed;
      expect(c.frames()).toEqual(['CONNECTED\nversion:1.2\nheart-beat:0,0\n\n']);
    });

    it('closes a connection whose first bytes are neither HTTP nor STOMP', async () => {
      const c = await connect();
      c.write('\x16\x03\x01garbage that is not a protocol\r\n');
      await c.closed;
      expect(c.text()).toBe('');
      await d.waitForLog((l) => l.msg === 'connection refused: neither HTTP nor STOMP');
    });

    it('parses a frame fed one byte at a time, with CRLF line ends and heart-beats before it', async () => {
      const c = await connect();
      await c.writeBytewise('\r\n\n' + frame('SUBSCRIBE', { destination: RESP, id: 'b' }).replace(/\n/g, '\r\n'));
      await c.writeBytewise(`SEND\r\ndestination:${REQ}\r\nreply-to:${RESP}\r\n\r\n${PING}\0`);
      const [m] = await c.nextFrames(1);
      expect(m).toMatch(/^MESSAGE\ndestination:jms.topic.vdsm_responses\n/);
      expect(m!.endsWith(PONG)).toBe(true);
    });

    it('refuses a frame over the size limit as soon as its content-length says so', async () => {
      const c = await connect();
      // Only the header block is sent: the verdict must not wait for the body.
      c.write(`SEND\ndestination:${REQ}\ncontent-length:${MAX_FRAME + 1}\n\n`);
      await c.closed;
      const [err] = c.frames();
      expect(err).toMatch(/^ERROR\ncontent-length:\d+\n\nframe exceeds the limit of 4096 bytes/);
    });

    it('refuses a frame without content-length once it passes the size limit', async () => {
      const c = await connect();
      c.write(`SEND\ndestination:${REQ}\n\n` + 'x'.repeat(MAX_FRAME + 10));
      await c.closed;
      expect(c.frames()[0]).toMatch(/^ERROR\n[^]*frame exceeds the limit of 4096 bytes$/);
    });

    it('closes a connection that sends nothing within --handshake-timeout, while others are served meanwhile', async () => {
      const silent = await connect();
      const stalled = await connect();
      stalled.write('CONN'); // a prefix of a command, then nothing
      const t0 = Date.now();
      // Meanwhile a WebSocket client and a STOMP client are served without waiting.
      const ws = await wsClient();
      expect(await ws.call('Host.ping2')).toBe(true);
      await ws.close();
      const c = await connect();
      c.write(
        frame('SUBSCRIBE', { destination: RESP, id: 's' }) +
          frame('SEND', { destination: REQ, 'reply-to': RESP }, PING),
      );
      await c.nextFrames(1);
      await Promise.all([silent.closed, stalled.closed]);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(HANDSHAKE_S * 900);
      expect(silent.text() + stalled.text()).toBe('');
    });

    it('loses no answer when a client reads late: the daemon stops reading from it meanwhile', async () => {
      const c = await connect();
      c.socket.pause(); // reads nothing while it sends
      c.write(frame('SUBSCRIBE', { destination: RESP, id: 's' }));
      // Long ids make long answers: far more than the kernel's socket buffers hold.
      const n = 8000;
      const pad = 'p'.repeat(3000);
      for (let i = 0; i < n; i++)
        c.write(
          frame(
            'SEND',
            { destination: REQ, 'reply-to': RESP },
            `{"jsonrpc":"2.0","id":"${i}-${pad}","method":"Host.ping2"}`,
          ),
        );
      await new Promise((r) => setTimeout(r, 500));
      // The daemon stopped taking requests: they wait in this client's own send buffer.
      expect(c.socket.writableLength).toBeGreaterThan(0);
      c.socket.resume();
      await c.until(() => c.nulCount >= n, 60_000, `${n} answers`);
      const ids = c.frames().map((f) => Number(/"id":"(\d+)-/.exec(f)![1]));
      expect(new Set(ids).size).toBe(n);
    }, 90_000);

    it('still speaks WebSocket on the same port, including a plain HTTP request', async () => {
      if (!variant.tls()) {
        const res = await fetch(d.url.replace('ws://', 'http://') + '/');
        expect(res.status).toBe(426);
      }
      const ws = await wsClient();
      expect(await ws.call('ping')).toBe(true);
      await ws.close();
    });
  });

describe('STOMP at shutdown', () => {
  it('answers what is in flight, then sends ERROR "daemon shutting down" and closes', async () => {
    const d = await startDaemon(['--listen', '127.0.0.1:0', '--channels-dir', '/nonexistent-vdsm-agentd']);
    const c = await RawStomp.connect(Number(new URL(d.url).port));
    c.write(frame('SUBSCRIBE', { destination: RESP, id: 's', receipt: 'r' }));
    await c.nextFrames(1);
    expect(await d.stop()).toBe(0);
    await c.closed;
    expect(c.frames().at(-1)).toBe('ERROR\ncontent-length:20\n\ndaemon shutting down');
  });
});

describe('STOMP and the connection limit', () => {
  it('counts STOMP and WebSocket connections together against --max-connections', async () => {
    const d = await startDaemon([
      '--listen',
      '127.0.0.1:0',
      '--channels-dir',
      '/nonexistent-vdsm-agentd',
      '--max-connections',
      '2',
    ]);
    const port = Number(new URL(d.url).port);
    const first = await RawStomp.connect(port);
    first.write(frame('SUBSCRIBE', { destination: RESP, id: 's', receipt: 'r' }));
    await first.nextFrames(1);
    const ws = await RpcClient.connect(d.url);
    const third = await RawStomp.connect(port);
    third.write('CONNECT\naccept-version:1.2\n\n\0');
    await third.closed;
    expect(third.frames()).toEqual(['ERROR\ncontent-length:29\n\nconnection limit of 2 reached']);
    // A WebSocket client beyond the limit is refused too (HTTP 503, or close 1013 once accepted).
    const refused = await RpcClient.connect(d.url).then(
      async (c) => {
        if (!c.closed) await new Promise((r) => c.ws.once('close', r));
        return `close ${c.closed?.code}`;
      },
      (err: unknown) => (err as Error).message,
    );
    expect(refused).toMatch(/HTTP 503|close 1013/);
    first.close();
    await ws.close();
    await d.stop();
  });
});
