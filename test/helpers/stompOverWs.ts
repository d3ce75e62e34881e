// STOMP over WebSocket (subprotocol v12.stomp) with @stomp/stompjs, the client browsers use,
// on top of the ws package: connects, collects every MESSAGE and ERROR, and can call a
// JSON-RPC method the way the engine does (SEND to the request queue, answer on reply-to).
import { readFileSync } from 'node:fs';
import { Client, type IFrame, type IMessage } from '@stomp/stompjs';
import { WebSocket } from 'ws';

export const STOMP_REQUESTS = 'jms.topic.vdsm_requests';
export const STOMP_RESPONSES = 'jms.topic.vdsm_responses';
export const STOMP_EVENTS = 'jms.queue.events';

export interface WsStompOptions {
  tls?: { cert: string; key: string; ca: string };
  heartbeatMs?: number;
}

export class WsStompPeer {
  readonly messages: IMessage[] = [];
  readonly errors: IFrame[] = [];
  connected: IFrame | null = null;
  private waiters: (() => void)[] = [];
  private nextId = 1;

  private constructor(readonly client: Client) {}

  static async connect(url: string, opts: WsStompOptions = {}): Promise<WsStompPeer> {
    const tls = opts.tls
      ? { cert: readFileSync(opts.tls.cert), key: readFileSync(opts.tls.key), ca: readFileSync(opts.tls.ca) }
      : {};
    // stompjs declares its option bags (StompConfig, StompHeaders) as classes; literals are its API.
    // eslint-disable-next-line @typescript-eslint/no-unsafe-class-instance-assignment
    const client = new Client({
      webSocketFactory: () => new WebSocket(url, ['v12.stomp'], tls),
      reconnectDelay: 0,
      heartbeatIncoming: opts.heartbeatMs ?? 0,
      heartbeatOutgoing: opts.heartbeatMs ?? 0,
      debug: () => {},
    });
    const peer = new WsStompPeer(client);
    client.onStompError = (f) => peer.note(() => peer.errors.push(f));
    await new Promise<void>((resolve, reject) => {
      client.onConnect = (f) => {
        peer.connected = f;
        resolve();
      };
      client.onWebSocketError = () => reject(new Error('WebSocket error'));
      client.onWebSocketClose = (e: { code?: number }) => reject(new Error(`WebSocket closed (${e.code})`));
      client.activate();
    });
    client.onWebSocketClose = () => peer.note(() => {});
    return peer;
  }

  subscribe(destination: string): void {
    this.client.subscribe(destination, (m) => this.note(() => this.messages.push(m)));
  }

  /** Sends a JSON-RPC request and resolves with the parsed response body. */
  async call(
    method: string,
    params?: unknown,
  ): Promise<{ id: string; result?: unknown; error?: { code: number; message: string } }> {
    const id = `ws-${this.nextId++}`;
    this.client.publish({
      destination: STOMP_REQUESTS,
      // eslint-disable-next-line @typescript-eslint/no-unsafe-class-instance-assignment -- an option bag, as above
      headers: { 'reply-to': STOMP_RESPONSES },
      body: JSON.stringify({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) }),
    });
    const m = await this.waitFor(() =>
      this.messages.find((x) => x.headers.destination === STOMP_RESPONSES && JSON.parse(x.body).id === id),
    );
    return JSON.parse(m.body);
  }

  waitFor<T>(find: () => T | undefined, timeoutMs = 5000): Promise<T> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error('STOMP over WebSocket: expected message not received')),
        timeoutMs,
      );
      const check = (): void => {
        const v = find();
        if (v !== undefined) {
          clearTimeout(timer);
          resolve(v);
        } else this.waiters.push(check);
      };
      check();
    });
  }

  async close(): Promise<void> {
    await this.client.deactivate();
  }

  private note(fn: () => void): void {
    fn();
    for (const w of this.waiters.splice(0)) w();
  }
}
