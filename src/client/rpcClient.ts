// A small JSON-RPC 2.0 client over WebSocket, used by vdsm-agent-client and by the tests.
// Notifications (events) are passed to `onNotification`.
import { WebSocket } from 'ws';
import { readTlsFile } from '../config.js';
import type { RpcErrorObject } from '../wire.js';

export class RpcCallError extends Error {
  constructor(readonly error: RpcErrorObject) {
    super(`${error.code}: ${error.message}`);
    this.name = 'RpcCallError';
  }
}

export interface ClientTls {
  cert: string;
  key: string;
  ca: string;
}

/** TLS files for a wss:// connection; any may be absent (no client certificate, system CAs). */
export interface ClientTlsFiles {
  cert?: string;
  key?: string;
  ca?: string;
}

export interface Notification {
  method: string;
  params: unknown;
}

export class RpcClient {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  readonly notifications: Notification[] = [];
  onNotification: ((n: Notification) => void) | null = null;
  closed: { code: number; reason: string } | null = null;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) =>
      this.onMessage((Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer)).toString('utf8')),
    );
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      for (const p of this.pending.values()) p.reject(new Error(this.closedText()));
      this.pending.clear();
    });
  }

  static connect(
    url: string,
    opts: { tls?: ClientTls; tlsFiles?: ClientTlsFiles; timeoutMs?: number; headers?: Record<string, string> } = {},
  ): Promise<RpcClient> {
    const tls: { cert?: Buffer; key?: Buffer; ca?: Buffer } = {};
    let ws: WebSocket;
    try {
      const files = opts.tls ?? opts.tlsFiles ?? {};
      if (files.cert) tls.cert = readTlsFile(files.cert);
      if (files.key) tls.key = readTlsFile(files.key);
      if (files.ca) tls.ca = readTlsFile(files.ca);
      ws = new WebSocket(url, { ...tls, headers: opts.headers, handshakeTimeout: opts.timeoutMs ?? 5000 });
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    return new Promise((resolve, reject) => {
      ws.once('open', () => {
        ws.off('error', reject);
        ws.on('error', () => {});
        resolve(new RpcClient(ws));
      });
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => {
        reject(new Error(`server refused the connection: HTTP ${res.statusCode}`));
        ws.terminate();
      });
    });
  }

  private onMessage(text: string): void {
    let msg: unknown;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    for (const m of Array.isArray(msg) ? msg : [msg]) {
      if (!m || typeof m !== 'object') continue;
      const r = m as { id?: unknown; method?: string; params?: unknown; result?: unknown; error?: RpcErrorObject };
      if (typeof r.method === 'string' && r.id === undefined) {
        const n = { method: r.method, params: r.params };
        this.notifications.push(n);
        this.onNotification?.(n);
        continue;
      }
      const p = typeof r.id === 'number' ? this.pending.get(r.id) : undefined;
      if (!p) continue;
      this.pending.delete(r.id as number);
      if (r.error) p.reject(new RpcCallError(r.error));
      else p.resolve(r.result);
    }
  }

  call<T = unknown>(method: string, params?: unknown): Promise<T> {
    const id = this.nextId++;
    if (this.ws.readyState !== WebSocket.OPEN) {
      // While closing, the peer's code and reason are known only once the close completes.
      if (this.ws.readyState === WebSocket.CLOSED) return Promise.reject(new Error(this.closedText()));
      return new Promise((_resolve, reject) => this.ws.once('close', () => reject(new Error(this.closedText()))));
    }
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) }));
    });
  }

  private closedText(): string {
    if (!this.closed) return 'connection closed';
    return `connection closed (${this.closed.code}${this.closed.reason ? `: ${this.closed.reason}` : ''})`;
  }

  close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      this.ws.once('close', () => resolve());
      this.ws.close();
    });
  }
}
