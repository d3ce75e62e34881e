// WebSocket transport: HTTP endpoint behind the port listener (TCP or mutual TLS, protocol
// detection: listener.ts), Origin and connection limits at the upgrade, frame/batch/in-flight
// limits per connection. It parses frames and hands messages to the MethodRegistry; it knows
// nothing about what the methods do. STOMP connections (raw, or WebSocket subprotocol
// v12.stomp) are handed to the StompServer, which shares the registry, hub and limits.
import http from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { AddressInfo, Socket } from 'node:net';
import { WebSocketServer, WebSocket, type RawData } from 'ws';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { ErrorCode } from '../wire.js';
import type { EventHub, EventSink } from '../events/hub.js';
import { errorReply, refuseAll, requestCount, type MethodRegistry, type Reply, type Session } from '../rpc/registry.js';
import { nextConnectionId } from '../transport/connectionId.js';
import { PortListener } from '../transport/listener.js';
import { StompServer } from '../stomp/server.js';
import { STOMP_WS_PROTOCOL } from '../stomp/transport.js';
import { replyText, ReplyBuffers } from '../rpc/jsonText.js';

export type ServerLimits = Pick<Config, 'maxFrameBytes' | 'maxBatch' | 'maxInFlight' | 'maxConnections' | 'allowedOrigins'>;

export interface ServerOptions {
  listen: Config['listen'];
  tls: Config['tls'];
  limits: ServerLimits;
  registry: MethodRegistry;
  hub: EventHub;
  log: Logger;
}

const SILENT_PEER_MS = 10_000;
/** Raw sockets allowed above the connection limit, so a client over the limit still hears why. */
const RAW_SOCKET_MARGIN = 100;

/** One client connection: the registry sees it as a Session, the event hub as an EventSink. */
class Connection implements Session, EventSink {
  readonly id = nextConnectionId();
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

  sendEvent(_json: string, _method: string, utf8: Buffer): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(utf8, { binary: false }); // shared bytes: no copy per subscriber
  }

  dropSlow(reason: string): void {
    // 1008 policy violation: the peer did not read its events; terminate frees the buffer now.
    this.ws.close(1008, reason);
    setTimeout(() => this.ws.terminate(), 1000).unref();
  }

  probe(acked: () => void): void {
    this.ws.ping(); // the pong comes back once the peer has read every event sent before it
    this.ws.once('pong', acked);
  }

  /** Sends a reply; returns what went out (for the debug log), or null when nothing was sent. */
  send(reply: Reply): string | Buffer | null {
    if (reply === null || this.ws.readyState !== WebSocket.OPEN) return null;
    const pool = this.server.replyBuffers;
    const data = replyText(reply, pool.alloc);
    // A text frame even when the reply was assembled as bytes; a pooled buffer returns once written.
    if (typeof data === 'string') this.ws.send(data);
    else if (pool.pooled(data)) this.ws.send(data, { binary: false }, () => pool.release(data));
    else this.ws.send(data, { binary: false });
    return data;
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
  private readonly http: http.Server;
  private readonly listener: PortListener;
  private readonly stomp: StompServer;
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
    // TLS (when configured) is done by the listener; this server only ever sees sockets the
    // listener handed over as HTTP. A peer that never completes its upgrade request is dropped
    // after SILENT_PEER_MS.
    const timing = { connectionsCheckingInterval: 1000, headersTimeout: SILENT_PEER_MS, requestTimeout: SILENT_PEER_MS };
    this.http = http.createServer(timing, onRequest);
    this.http.on('clientError', (_err, socket) => socket.destroy());
    this.stomp = new StompServer({ registry: opts.registry, hub: opts.hub, limits: opts.limits, log: opts.log });
    this.listener = new PortListener({
      listen: opts.listen,
      tls: opts.tls,
      log: opts.log,
      maxSockets: opts.limits.maxConnections + RAW_SOCKET_MARGIN,
      onHttp: (socket) => this.http.emit('connection', socket),
      onStomp: (socket, opening, peer) => this.onStomp(socket, opening, peer),
    });
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: opts.limits.maxFrameBytes,
      clientTracking: false,
      // STOMP over WebSocket when asked for; otherwise what ws picks by default (the first offered).
      handleProtocols: (offered) => (offered.has(STOMP_WS_PROTOCOL) ? STOMP_WS_PROTOCOL : (offered.values().next().value ?? false)),
    });
    this.http.on('upgrade', (req, socket, head) => this.onUpgrade(req, socket, head));
  }

  /** Binds; rejects with the listen error (EADDRINUSE, EACCES, ...). */
  async listen(): Promise<AddressInfo> {
    const address = await this.listener.listen();
    // The HTTP server never listens itself; this starts its header/request timeout checks.
    this.http.emit('listening');
    return address;
  }

  url(): string {
    const a = this.listener.address();
    const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
    return `${this.opts.tls ? 'wss' : 'ws'}://${host}:${a.port}`;
  }

  connectionCount(): number {
    return this.connections.size + this.stomp.count();
  }

  private onStomp(socket: Socket, opening: Buffer, peer: string): void {
    if (this.stopping) return this.stomp.refuseSocket(socket, peer, 'daemon is shutting down');
    if (this.connectionCount() >= this.opts.limits.maxConnections) {
      return this.stomp.refuseSocket(socket, peer, `connection limit of ${this.opts.limits.maxConnections} reached`);
    }
    const cert = this.opts.tls ? (socket as TLSSocket).getPeerCertificate() : null;
    this.stomp.acceptSocket(socket, opening, peer, cert?.subject?.CN);
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
    if (this.connectionCount() >= this.opts.limits.maxConnections) {
      // Said with a WebSocket close code (1013, try again later), as SPEC section 2 asks of limits.
      const why = `connection limit of ${this.opts.limits.maxConnections} reached`;
      this.log.info({ peer, reason: why }, 'connection refused');
      this.wss.handleUpgrade(req, socket, head, (ws) => {
        ws.close(1013, why);
        setTimeout(() => ws.terminate(), 1000).unref();
      });
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws, req, peer));
  }

  private onConnection(ws: WebSocket, req: http.IncomingMessage, peer: string): void {
    const cert = this.opts.tls ? (req.socket as TLSSocket).getPeerCertificate() : null;
    if (ws.protocol === STOMP_WS_PROTOCOL) return this.stomp.acceptWebSocket(ws, peer, cert?.subject?.CN);
    const conn = new Connection(ws, peer, this);
    this.connections.add(conn);
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
    const debug = this.log.isLevelEnabled('debug');
    if (conn.ws.readyState !== WebSocket.OPEN) {
      // We already sent our Close frame (shutdown): RFC 6455 forbids answering any more.
      if (debug) this.log.debug({ conn: conn.id }, 'message after close ignored');
      return;
    }
    if (isBinary) {
      conn.send(errorReply(null, ErrorCode.invalidRequest, 'Invalid Request: binary frames are not accepted; send JSON-RPC as a UTF-8 text frame'));
      if (debug) this.log.debug({ conn: conn.id, bytes: byteLength(data) }, 'binary frame refused');
      return;
    }
    const text = Array.isArray(data) ? Buffer.concat(data).toString('utf8') : data.toString('utf8');
    if (debug) this.log.debug({ conn: conn.id, request: clip(text) }, 'request');
    let message: unknown;
    try {
      message = JSON.parse(text);
    } catch {
      this.reply(conn, errorReply(null, ErrorCode.parseError, 'Parse error: the frame is not valid JSON'), debug);
      return;
    }
    // An over-long batch is refused by the registry at once; it must not count as that many requests.
    const n = Array.isArray(message) && message.length > this.opts.limits.maxBatch ? 1 : requestCount(message);
    if (conn.inFlight + n > this.opts.limits.maxInFlight) {
      const why = `Server busy: more than ${this.opts.limits.maxInFlight} requests in flight on this connection`;
      this.reply(conn, refuseAll(message, ErrorCode.serverBusy, why), debug);
      return;
    }
    conn.inFlight += n;
    this.opts.registry
      .handle(message, conn, { maxBatch: this.opts.limits.maxBatch })
      .then(
        (reply) => this.reply(conn, reply, debug),
        (err: unknown) => {
          this.log.error({ err }, 'request handling failed');
          this.reply(conn, errorReply(null, ErrorCode.internalError, 'Internal error'), debug);
        },
      )
      .finally(() => conn.settled(n));
  }

  private reply(conn: Connection, reply: Reply, debug: boolean): void {
    const sent = conn.send(reply);
    if (debug) this.log.debug({ conn: conn.id, reply: sent === null ? null : clip(sent.toString()) }, sent === null ? 'no reply' : 'reply');
  }

  /**
   * Stops accepting, lets every connection's in-flight requests be answered, then closes each
   * connection with 1001. The whole sequence is bounded by `graceMs` (plus a moment to cut the
   * connections whose peers do not finish the closing handshake).
   */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    const deadline = Date.now() + graceMs;
    const closed = this.listener.close();
    this.http.close(); // no listening socket of its own: this only stops its timeout checks
    const stompStopped = this.stomp.stop(graceMs);
    const conns = [...this.connections];
    await Promise.race([Promise.all(conns.map((c) => c.whenIdle())), delay(graceMs)]);
    const busy = conns.filter((c) => c.inFlight > 0).length;
    if (busy) this.log.warn({ connections: busy }, 'closing connections with requests still unanswered after the shutdown timeout');
    const gone = conns.map((c) => new Promise<void>((r) => (c.ws.readyState === WebSocket.CLOSED ? r() : c.ws.once('close', () => r()))));
    for (const c of conns) c.ws.close(1001, 'daemon shutting down');
    await Promise.race([Promise.all(gone), delay(Math.max(deadline - Date.now(), 500))]);
    for (const c of this.connections) c.ws.terminate();
    this.http.closeAllConnections?.();
    await stompStopped;
    await Promise.race([closed, delay(500)]);
  }
}

function byteLength(data: RawData): number {
  if (Array.isArray(data)) return data.reduce((n, b) => n + b.length, 0);
  return data instanceof ArrayBuffer ? data.byteLength : data.length;
}

/** At debug the log shows what went over the wire, cut short so one frame cannot flood it. */
function clip(text: string): string {
  return text.length > 2048 ? `${text.slice(0, 2048)}... (${text.length} chars)` : text;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
