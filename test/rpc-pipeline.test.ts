// One request pipeline for every transport: each limit case runs over WebSocket, raw STOMP and
// STOMP over WebSocket against the same real daemon and must get the same replies. And
// backpressure: a client pipelining far more requests than the in-flight limit gets every one
// answered, none refused as "Server busy".
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { RpcClient } from '../src/client/rpcClient.js';
import { StompHeaders } from '@stomp/stompjs';
import { suiteDaemon } from './helpers/suiteDaemon.js';
import { openPeer } from './helpers/wsPeer.js';
import { frame, RawStomp } from './helpers/rawStomp.js';
import { STOMP_REQUESTS, STOMP_RESPONSES, WsStompPeer } from './helpers/stompOverWs.js';

const NO_CHANNELS = '/nonexistent-vdsm-agentd-channels';
const MAX_BATCH = 100;
const MAX_IN_FLIGHT = 4;
const ping = (id: unknown): object => ({ jsonrpc: '2.0', id, method: 'Host.ping2' });
const notification = { jsonrpc: '2.0', method: 'Host.ping2' };
const busy = `Server busy: more than ${MAX_IN_FLIGHT} requests in flight on this connection`;

/** A connection that sends JSON-RPC message texts and yields the parsed replies in arrival order. */
interface Conn {
  /** Sends the texts back to back (in one write where the transport allows it). */
  send(texts: string[]): void;
  next(): Promise<unknown>;
  /** Replies received and not yet taken by `next`. */
  unread(): unknown[];
  close(): Promise<void>;
}

async function overWebSocket(url: string): Promise<Conn> {
  const peer = await openPeer(url);
  const socket = (peer.ws as unknown as { _socket: Socket })._socket;
  let taken = 0;
  return {
    send(texts) {
      // Corked: every frame leaves in one write, so the daemon reads them in one go.
      socket.cork();
      for (const t of texts) peer.ws.send(t);
      socket.uncork();
    },
    next: async () => {
      const m = await peer.next(10_000);
      taken++;
      return m;
    },
    unread: () => peer.received.slice(taken),
    close: () => {
      peer.ws.close();
      return Promise.resolve();
    },
  };
}

async function overRawStomp(url: string): Promise<Conn> {
  const c = await RawStomp.connect(Number(new URL(url).port));
  c.write(
    'CONNECT\naccept-version:1.2\n\n\0' + frame('SUBSCRIBE', { destination: STOMP_RESPONSES, id: 'r', receipt: 'sub' }),
  );
  await c.nextFrames(2);
  let taken = 2;
  const bodies = (): unknown[] =>
    c
      .frames()
      .slice(2)
      .map((f) => JSON.parse(f.slice(f.indexOf('\n\n') + 2)) as unknown);
  return {
    send(texts) {
      c.write(
        texts.map((t) => frame('SEND', { destination: STOMP_REQUESTS, 'reply-to': STOMP_RESPONSES }, t)).join(''),
      );
    },
    async next() {
      const i = taken++; // taken at the call: several may wait at once
      const f = (await c.nextFrames(i + 1, 10_000))[i]!;
      expect(f).toMatch(/^MESSAGE\n/);
      return JSON.parse(f.slice(f.indexOf('\n\n') + 2)) as unknown;
    },
    unread: () => bodies().slice(taken - 2),
    close: () => {
      c.close();
      return Promise.resolve();
    },
  };
}

async function overStompWebSocket(url: string): Promise<Conn> {
  const peer = await WsStompPeer.connect(url);
  peer.subscribe(STOMP_RESPONSES);
  // The SUBSCRIBE is ordered before any SEND on the same socket: no wait needed.
  let taken = 0;
  return {
    send(texts) {
      const headers = new StompHeaders();
      headers['reply-to'] = STOMP_RESPONSES;
      for (const body of texts) peer.client.publish({ destination: STOMP_REQUESTS, headers, body });
    },
    async next() {
      const i = taken++; // taken at the call: several may wait at once
      const m = await peer.waitFor(() => peer.messages[i], 10_000);
      return JSON.parse(m.body) as unknown;
    },
    unread: () => peer.messages.slice(taken).map((m) => JSON.parse(m.body) as unknown),
    close: () => peer.close(),
  };
}

const transports: [string, (url: string) => Promise<Conn>][] = [
  ['WebSocket', overWebSocket],
  ['raw STOMP', overRawStomp],
  ['STOMP over WebSocket', overStompWebSocket],
];

interface Case {
  name: string;
  send: string[];
  /** The replies, in order; [] means nothing at all (checked with a ping sent after). */
  expect: unknown[];
}

const cases: Case[] = [
  {
    name: `a batch of 300 requests (over --max-batch ${MAX_BATCH}): one -32600`,
    send: [JSON.stringify(Array.from({ length: 300 }, (_, i) => ping(i)))],
    expect: [
      {
        jsonrpc: '2.0',
        id: null,
        error: { code: -32600, message: `Invalid Request: batch of 300 requests exceeds the limit of ${MAX_BATCH}` },
      },
    ],
  },
  {
    name: 'a batch longer than --max-in-flight: -32000 for each request with its id, nothing for its notification',
    send: [JSON.stringify([ping(1), ping(2), notification, ping(3), ping('four'), ping(5)])],
    expect: [[1, 2, 3, 'four', 5].map((id) => ({ jsonrpc: '2.0', id, error: { code: -32000, message: busy } }))],
  },
  {
    name: 'a batch of notifications only, longer than --max-in-flight: nothing',
    send: [JSON.stringify(Array(MAX_IN_FLIGHT + 2).fill(notification))],
    expect: [],
  },
  {
    name: 'notifications pipelined past --max-in-flight: nothing',
    send: Array<string>(MAX_IN_FLIGHT * 3).fill(JSON.stringify(notification)),
    expect: [],
  },
  {
    name: 'an empty batch: -32600',
    send: ['[]'],
    expect: [{ jsonrpc: '2.0', id: null, error: { code: -32600, message: 'Invalid Request: empty batch' } }],
  },
  {
    name: 'a request with a bad envelope: -32600 with its id',
    send: [JSON.stringify({ jsonrpc: '1.0', id: 7, method: 'Host.ping2' })],
    expect: [
      { jsonrpc: '2.0', id: 7, error: { code: -32600, message: `Invalid Request: 'jsonrpc' must be exactly "2.0"` } },
    ],
  },
  {
    name: 'a batch of exactly --max-in-flight requests: all answered',
    send: [JSON.stringify(Array.from({ length: MAX_IN_FLIGHT }, (_, i) => ping(i)))],
    expect: [Array.from({ length: MAX_IN_FLIGHT }, (_, i) => ({ jsonrpc: '2.0', id: i, result: true }))],
  },
];

describe('the same limits on every transport', () => {
  const daemon = suiteDaemon([
    '--listen',
    '127.0.0.1:0',
    '--channels-dir',
    NO_CHANNELS,
    '--max-batch',
    String(MAX_BATCH),
    '--max-in-flight',
    String(MAX_IN_FLIGHT),
  ]);

  for (const [transport, open] of transports) {
    describe(transport, () => {
      for (const c of cases) {
        it(c.name, async () => {
          const conn = await open(daemon().url);
          try {
            conn.send(c.send);
            // A ping after: it is answered after whatever the case's message got, so "nothing" is seen.
            conn.send([JSON.stringify(ping('probe'))]);
            const got: unknown[] = [];
            for (;;) {
              const m = await conn.next();
              if ((m as { id?: unknown }).id === 'probe') {
                expect(m).toEqual({ jsonrpc: '2.0', id: 'probe', result: true });
                break;
              }
              got.push(m);
            }
            expect(got).toEqual(c.expect);
          } finally {
            await conn.close();
          }
        });
      }

      it('answers requests pipelined past --max-in-flight, each exactly once (backpressure, no Server busy)', async () => {
        const conn = await open(daemon().url);
        try {
          conn.send(Array.from({ length: 12 }, (_, i) => JSON.stringify(ping(i + 1))));
          const replies = (await Promise.all(Array.from({ length: 12 }, () => conn.next()))) as { id: number }[];
          expect(replies.sort((a, b) => a.id - b.id)).toEqual(
            Array.from({ length: 12 }, (_, i) => ({ jsonrpc: '2.0', id: i + 1, result: true })),
          );
          conn.send([JSON.stringify(ping('probe'))]);
          expect(await conn.next()).toEqual({ jsonrpc: '2.0', id: 'probe', result: true });
          expect(conn.unread()).toEqual([]);
        } finally {
          await conn.close();
        }
      });
    });
  }
});

describe('a client pipelining 20,000 requests (default limits)', () => {
  const daemon = suiteDaemon(['--listen', '127.0.0.1:0', '--channels-dir', NO_CHANNELS]);
  const N = 20_000;

  it('over WebSocket (RpcClient, all calls sent at once): every one answered correctly, none busy', async () => {
    const c = await RpcClient.connect(daemon().url);
    try {
      const answers = await Promise.allSettled(Array.from({ length: N }, () => c.call('Host.ping2')));
      const failed = answers.filter((a) => a.status === 'rejected');
      expect(failed.slice(0, 3)).toEqual([]);
      expect(answers.every((a) => a.status === 'fulfilled' && a.value === true)).toBe(true);
    } finally {
      await c.close();
    }
  });

  it('over raw STOMP (one write of 20,000 SEND frames): every one answered with its id, none busy', async () => {
    const c = await RawStomp.connect(Number(new URL(daemon().url).port));
    try {
      c.write('CONNECT\naccept-version:1.2\n\n\0' + frame('SUBSCRIBE', { destination: STOMP_RESPONSES, id: 'r' }));
      c.write(
        Array.from({ length: N }, (_, i) =>
          frame('SEND', { destination: STOMP_REQUESTS, 'reply-to': STOMP_RESPONSES }, JSON.stringify(ping(i))),
        ).join(''),
      );
      await c.nextFrames(N + 1, 120_000);
      const bodies = c
        .frames()
        .slice(1)
        .map((f) => JSON.parse(f.slice(f.indexOf('\n\n') + 2)) as { id: number; result?: unknown });
      expect(bodies.filter((b) => b.result !== true).slice(0, 3)).toEqual([]);
      expect(bodies.map((b) => b.id).sort((a, b) => a - b)).toEqual(Array.from({ length: N }, (_, i) => i));
    } finally {
      c.close();
    }
  }, 180_000);
});
