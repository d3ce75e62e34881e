// A bare WebSocket peer for transport tests: sends exactly the frames a test gives it (text,
// binary, oversized, malformed) and collects every message and the close code, unlike RpcClient
// which only speaks well-formed JSON-RPC.
import { WebSocket, type ClientOptions } from 'ws';
import { RpcClient } from '../../src/client/rpcClient.js';

export interface WsPeer {
  ws: WebSocket;
  /** Every message received so far, parsed as JSON. */
  received: unknown[];
  /** Resolves with the next message not yet taken by `next`. */
  next: (timeoutMs?: number) => Promise<unknown>;
  /** Sends `payload` (a string is one text frame; a Buffer one binary frame) and waits for one reply. */
  ask: (payload: string | Buffer | object) => Promise<unknown>;
  closed: Promise<{ code: number; reason: string }>;
}

export function openPeer(url: string, opts: ClientOptions = {}): Promise<WsPeer> {
  const ws = new WebSocket(url, { handshakeTimeout: 5000, maxPayload: 64 * 1024 * 1024, ...opts });
  const received: unknown[] = [];
  let taken = 0;
  const waiters: (() => void)[] = [];
  ws.on('message', (data) => {
    received.push(JSON.parse((data as Buffer).toString())); // binaryType nodebuffer
    for (const w of waiters.splice(0)) w();
  });
  ws.on('error', () => {});
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.on('close', (code, reason) => {
      for (const w of waiters.splice(0)) w();
      resolve({ code, reason: reason.toString() });
    }),
  );
  const next = (timeoutMs = 5000): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no message within ${timeoutMs} ms`)), timeoutMs);
      const check = (): void => {
        if (taken < received.length) {
          clearTimeout(timer);
          resolve(received[taken++]);
        } else if (ws.readyState === WebSocket.CLOSED) {
          clearTimeout(timer);
          reject(new Error('connection closed before a message came'));
        } else waiters.push(check);
      };
      check();
    });
  const ask = (payload: string | Buffer | object): Promise<unknown> => {
    ws.send(typeof payload === 'string' || Buffer.isBuffer(payload) ? payload : JSON.stringify(payload));
    return next();
  };
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve({ ws, received, next, ask, closed }));
    ws.once('unexpected-response', (_req, res) => {
      reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode }));
      ws.terminate();
    });
    ws.once('error', reject);
  });
}

/** A fresh connection's Host.ping2: what "the daemon still answers" means in these tests. */
export async function pingsOnNewConnection(
  url: string,
  opts: Parameters<typeof RpcClient.connect>[1] = {},
): Promise<boolean> {
  const c = await RpcClient.connect(url, opts);
  try {
    return (await c.call('Host.ping2')) === true;
  } finally {
    await c.close();
  }
}
