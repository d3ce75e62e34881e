// WebSocket transport: HTTP(S) listener, mutual TLS, Origin and connection limits at the
// upgrade, frame/batch/in-flight limits per connection. It parses frames and hands messages to
// the MethodRegistry; it knows nothing about what the methods do.
import http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, WebSocket, type RawData } from 'ws';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { ErrorCode } from '../wire.js';
import type { EventHub, EventSink } from '../events/hub.js';
import { errorReply, requestCount, type MethodRegistry, type Reply, type Session } from './registry.js';
import { replyText, ReplyBuffers } from './jsonText.js';

export type ServerLimits = Pick<Config, 'maxFrameBytes' | 'maxBatch' | 'maxInFlight' | 'maxConnections' | 'allowedOrigins'>;

export interface ServerOptions {
  listen: Config['listen'];
  tls: Config['tls'];
  limits: ServerLimits;
  registry: MethodRegistry;
  hub: EventHub;
  log: Logger;
}

let nextConnectionId = 1;

/** One client connection: the registry sees it as a Session, the event hub as an EventSink. */
class Connection implements Session, EventSink {
  readonly id = nextConnectionId++;
  inFlight = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(
    readonly ws: WebSocket,
    readonly peer: string,
    private readonly server: RpcServer,
  ) {}

  subscribeEvents(prefixes: string[] | null): void {
    this.server.hub.subscribe(this, prefixes);
  }

  unsubscribeEvents(): void {
    this.server.hub.unsubscribe(this);
  }

  bufferedBytes(): number {
    return this.ws.bufferedAmount;
  }

  sendEvent(json: string): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(json);
  }

  dropSlow(reason: string): void {
    // 1008 policy violation: the peer did not read its events; terminate frees the buffer now.
    this.ws.close(1008, reason);
    setTimeout(() => this.ws.terminate(), 1000).unref();
  }

  send(reply: Reply): void {
    if (reply === null || this.ws.readyState !== WebSocket.OPEN) return;
    const pool = this.server.replyBuffers;
    const data = replyText(reply, pool.alloc);
    // A text frame even when the reply was assembled as bytes; a pooled buffer returns once written.
    if (typeof data === 'string') this.ws.send(data);
    else if (pool.pooled(data)) this.ws.send(data, { binary: false }, () => pool.release(data));
    else this.ws.send(data, { binary: false });
  }

  settled(n: number): void {
    this.inFlight -= n;
    if (this.inFlight === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  whenIdle(): Promise<void> {
    return this.inFlight === 0 ? Promise.resolve() : new Promise((resolve) => this.idleWaiters.push(resolve));
  }
}

export class RpcServer {
  readonly hub: EventHub;
  readonly replyBuffers = new ReplyBuffers();
  private readonly http: http.Server | https.Server;
  private readonly wss: WebSocketServer;
  private readonly connections = new Set<Connection>();
  private readonly log: Logger;
  private stopping = false;

  constructor(private readonly opts: ServerOptions) {
    this.hub = opts.hub;
    this.log = opts.log;
    const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
      res.writeHead(426, { 'content-type': 'text/plain', connection: 'close', upgrade: 'websocket' });
      res.end('vdsm-agentd speaks JSON-RPC 2.0 over WebSocket: connect with a WebSocket client\n');
    };
    if (opts.tls) {
      this.http = https.createServer(
        { cert: opts.tls.cert, key: opts.tls.key, ca: opts.tls.ca, requestCert: true, rejectUnauthorized: true },
        onRequest,
      );
      this.http.on('tlsClientError', (err, socket) => {
        this.log.info({ peer: `${socket.remoteAddress}:${socket.remotePort}`, reason: err.message }, 'TLS handshake refused');
      });
    } else {
      this.http = http.createServer(onRequest);
    }
    this.http.on('clientError', (_err, socket) => socket.destroy());
    this.wss = new WebSocketServer({ noServer: true, maxPayload: opts.limits.maxFrameBytes, clientTracking: false });
    this.http.on('upgrade', (req, socket, head) => this.onUpgrade(req, socket, head));
  }

  /** Binds; rejects with the listen error (EADDRINUSE, EACCES, ...). */
  listen(): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.http.once('error', onError);
      this.http.listen(this.opts.listen.port, this.opts.listen.host, () => {
        this.http.off('error', onError);
        this.http.on('error', (err) => this.log.error({ err }, 'listener error'));
        resolve(this.http.address() as AddressInfo);
      });
    });
  }

  url(): string {
    const a = this.http.address() as AddressInfo;
    const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
    return `${this.opts.tls ? 'wss' : 'ws'}://${host}:${a.port}`;
  }

  connectionCount(): number {
    return this.connections.size;
  }

  private onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    const peer = `${req.socket.remoteAddress}:${req.socket.remotePort}`;
    const refuse = (status: number, text: string, why: string): void => {
      this.log.info({ peer, reason: why }, 'connection refused');
      socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\n${why}\n`);
    };
    if (this.stopping) return refuse(503, 'Service Unavailable', 'daemon is shutting down');
    const origin = req.headers.origin;
    if (origin !== undefined && !this.opts.limits.allowedOrigins.includes(origin)) {
      return refuse(403, 'Forbidden', `origin ${JSON.stringify(origin).slice(0, 200)} is not allowed`);
    }
    if (this.connections.size >= this.opts.limits.maxConnections) {
      return refuse(503, 'Service Unavailable', `connection limit of ${this.opts.limits.maxConnections} reached`);
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws, req, peer));
  }

  private onConnection(ws: WebSocket, req: http.IncomingMessage, peer: string): void {
    const conn = new Connection(ws, peer, this);
    this.connections.add(conn);
    const cert = this.opts.tls ? (req.socket as TLSSocket).getPeerCertificate() : null;
    this.log.info({ peer, conn: conn.id, client: cert?.subject?.CN }, 'connection opened');
    ws.on('message', (data, isBinary) => this.onMessage(conn, data, isBinary));
    ws.on('error', (err) => this.log.debug({ peer, conn: conn.id, err: err.message }, 'connection error'));
    ws.on('close', (code, reason) => {
      this.connections.delete(conn);
      this.hub.unsubscribe(conn);
      this.log.info({ peer, conn: conn.id, code, reason: reason.toString() || undefined }, 'connection closed');
    });
  }

  private onMessage(conn: Connection, data: RawData, isBinary: boolean): void {
    if (isBinary) {
      conn.send(errorReply(null, ErrorCode.invalidRequest, 'Invalid Request: binary frames are not accepted; send JSON-RPC as a UTF-8 text frame'));
      return;
    }
    const text = Array.isArray(data) ? Buffer.concat(data).toString('utf8') : data.toString('utf8');
    let message: unknown;
    try {
      message = JSON.parse(text);
    } catch {
      conn.send(errorReply(null, ErrorCode.parseError, 'Parse error: the frame is not valid JSON'));
      return;
    }
    const n = requestCount(message);
    if (conn.inFlight + n > this.opts.limits.maxInFlight) {
      const id = !Array.isArray(message) && message && typeof message === 'object' ? (message as { id?: unknown }).id : null;
      const safeId = typeof id === 'string' || typeof id === 'number' ? id : null;
      conn.send(errorReply(safeId, ErrorCode.serverBusy, `Server busy: more than ${this.opts.limits.maxInFlight} requests in flight on this connection`));
      return;
    }
    conn.inFlight += n;
    this.log.debug({ conn: conn.id, bytes: text.length }, 'request');
    this.opts.registry
      .handle(message, conn, { maxBatch: this.opts.limits.maxBatch })
      .then(
        (reply) => conn.send(reply),
        (err: unknown) => {
          this.log.error({ err }, 'request handling failed');
          conn.send(errorReply(null, ErrorCode.internalError, 'Internal error'));
        },
      )
      .finally(() => conn.settled(n));
  }

  /** Stops accepting, lets in-flight requests finish (up to `graceMs`), then closes every connection. */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    const closed = new Promise<void>((resolve) => this.http.close(() => resolve()));
    const idle = Promise.all([...this.connections].map((c) => c.whenIdle()));
    await Promise.race([idle, delay(graceMs)]);
    for (const c of this.connections) c.ws.close(1001, 'daemon shutting down');
    await Promise.race([
      Promise.all([...this.connections].map((c) => new Promise((r) => c.ws.once('close', r)))),
      delay(1000),
    ]);
    for (const c of this.connections) c.ws.terminate();
    this.http.closeAllConnections?.();
    await Promise.race([closed, delay(500)]);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
