// WebSocket transport: HTTP endpoint behind the port listener (TCP or mutual TLS, protocol
// detection: listener.ts), Origin and connection limits at the upgrade, the frame size limit.
// It frames bytes and delivers: each text frame goes to the connection's RequestPipeline
// (rpc/pipeline.ts: batches, in-flight limit, backpressure), which calls the MethodRegistry. STOMP connections (raw, or WebSocket subprotocol
// v12.stomp) are handed to the StompServer, which shares the registry, hub and limits.
import http from 'node:http';
import type { Duplex } from 'node:stream';
import { TLSSocket, type PeerCertificate } from 'node:tls';
import type { AddressInfo, Socket } from 'node:net';
// Grace-period timers (ref: false) never keep a stopping process alive.
import { setTimeout as delay } from 'node:timers/promises';
import { WebSocketServer, WebSocket, type RawData } from 'ws';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { ErrorCode } from '../wire.js';
import type { EventHub, EventSink } from '../events/hub.js';
import { errorReply, type MethodRegistry, type Reply, type Session } from '../rpc/registry.js';
import { RequestPipeline, type Deliver } from '../rpc/pipeline.js';
import { nextConnectionId } from '../transport/connectionId.js';
import { PortListener } from '../transport/listener.js';
import { StompServer } from '../stomp/server.js';
import { STOMP_WS_PROTOCOL } from '../stomp/transport.js';
import { replyText, ReplyBuffers } from '../rpc/jsonText.js';
import { metrics } from '../metrics/metrics.js';
import { serveMetricsHttp } from '../metrics/http.js';

type ServerLimits = Pick<
  Config,
  'maxFrameBytes' | 'maxBatch' | 'maxInFlight' | 'maxConnections' | 'allowedOrigins' | 'handshakeTimeoutMs'
>;

export interface ServerOptions {
  listen: Config['listen'];
  tls: Config['tls'];
  limits: ServerLimits;
  registry: MethodRegistry;
  hub: EventHub;
  log: Logger;
}

/** Raw sockets allowed above the connection limit, so a client over the limit still hears why. */
const RAW_SOCKET_MARGIN = 100;

/** One client connection: the registry sees it as a Session, the event hub as an EventSink. */
class Connection implements Session, EventSink {
  readonly id = nextConnectionId();
  readonly pipeline: RequestPipeline;

  constructor(
    readonly ws: WebSocket,
    readonly peer: string,
    private readonly server: RpcServer,
    deps: { registry: MethodRegistry; limits: ServerLimits; log: Logger },
  ) {
    this.pipeline = new RequestPipeline({
      registry: deps.registry,
      limits: deps.limits,
      session: this,
      input: { pause: () => ws.pause(), resume: () => ws.resume() },
      log: deps.log,
      notJson: 'the frame',
    });
  }

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

  /**
   * Sends a reply and calls `written` once it is out (or cannot go out); returns what was sent
   * (for the debug log), or null when nothing was.
   */
  send(reply: NonNullable<Reply>, written: () => void): string | Buffer | null {
    if (this.ws.readyState !== WebSocket.OPEN) {
      written();
      return null;
    }
    const pool = this.server.replyBuffers;
    const data = replyText(reply, pool.alloc);
    // A text frame even when the reply was assembled as bytes; a pooled buffer returns once written.
    const done =
      typeof data !== 'string' && pool.pooled(data)
        ? (): void => {
            pool.release(data);
            written();
          }
        : written;
    this.ws.send(data, { binary: false }, done);
    return data;
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
      if (serveMetricsHttp(metrics, req, res)) return;
      res.writeHead(426, { 'content-type': 'text/plain', connection: 'close', upgrade: 'websocket' });
      res.end('vdsm-agentd speaks JSON-RPC 2.0 over WebSocket: connect with a WebSocket client\n');
    };
    // TLS (when configured) is done by the listener; this server only ever sees sockets the
    // listener handed over as HTTP. A peer that never completes its upgrade request is dropped
    // after the handshake timeout (--handshake-timeout).
    const silentMs = opts.limits.handshakeTimeoutMs;
    const timing = {
      connectionsCheckingInterval: Math.min(1000, silentMs),
      headersTimeout: silentMs,
      requestTimeout: silentMs,
    };
    this.http = http.createServer(timing, onRequest);
    this.http.on('clientError', (_err, socket) => socket.destroy());
    this.stomp = new StompServer({ registry: opts.registry, hub: opts.hub, limits: opts.limits, log: opts.log });
    this.listener = new PortListener({
      listen: opts.listen,
      tls: opts.tls,
      log: opts.log,
      maxSockets: opts.limits.maxConnections + RAW_SOCKET_MARGIN,
      detectTimeoutMs: opts.limits.handshakeTimeoutMs,
      onHttp: (socket) => this.http.emit('connection', socket),
      onStomp: (socket, opening, peer) => this.onStomp(socket, opening, peer),
    });
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: opts.limits.maxFrameBytes,
      clientTracking: false,
      // STOMP over WebSocket when asked for; otherwise what ws picks by default (the first offered).
      handleProtocols: (offered) =>
        offered.has(STOMP_WS_PROTOCOL) ? STOMP_WS_PROTOCOL : (offered.values().next().value ?? false),
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

  /** New TLS files for new connections (SIGHUP reload). */
  setTls(files: NonNullable<Config['tls']>): void {
    this.listener.setTls(files);
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
    // {} when the client gave no certificate: Partial, whatever Node's types say.
    const cert: Partial<PeerCertificate> | null = socket instanceof TLSSocket ? socket.getPeerCertificate() : null;
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
    const cert: Partial<PeerCertificate> | null =
      req.socket instanceof TLSSocket ? req.socket.getPeerCertificate() : null;
    if (ws.protocol === STOMP_WS_PROTOCOL) return this.stomp.acceptWebSocket(ws, peer, cert?.subject?.CN);
    const { registry, limits } = this.opts;
    const conn = new Connection(ws, peer, this, { registry, limits, log: this.log });
    this.connections.add(conn);
    metrics.connectionOpened(conn, 'websocket');
    this.log.info({ peer, conn: conn.id, client: cert?.subject?.CN }, 'connection opened');
    ws.on('message', (data, isBinary) => this.onMessage(conn, data, isBinary));
    ws.on('error', (err) => this.log.debug({ peer, conn: conn.id, err: err.message }, 'connection error'));
    ws.on('close', (code, reason) => {
      this.connections.delete(conn);
      metrics.connectionClosed(conn);
      conn.pipeline.close();
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
    const deliver: Deliver = (reply, written) => {
      const sent = conn.send(reply, written);
      if (debug)
        this.log.debug(
          { conn: conn.id, reply: sent === null ? null : clip(sent.toString()) },
          sent === null ? 'no reply' : 'reply',
        );
    };
    if (isBinary) {
      if (debug) this.log.debug({ conn: conn.id, bytes: byteLength(data) }, 'binary frame refused');
      const why = 'Invalid Request: binary frames are not accepted; send JSON-RPC as a UTF-8 text frame';
      conn.pipeline.answerWith(errorReply(null, ErrorCode.invalidRequest, why), deliver);
      return;
    }
    const text = Array.isArray(data) ? Buffer.concat(data).toString('utf8') : (data as Buffer).toString('utf8'); // binaryType nodebuffer: never an ArrayBuffer
    if (debug) this.log.debug({ conn: conn.id, request: clip(text) }, 'request');
    conn.pipeline.submitText(text, deliver);
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
    await Promise.race([
      Promise.all(conns.map((c) => c.pipeline.whenIdle())),
      delay(graceMs, undefined, { ref: false }),
    ]);
    const busy = conns.filter((c) => c.pipeline.inFlight > 0).length;
    if (busy)
      this.log.warn(
        { connections: busy },
        'closing connections with requests still unanswered after the shutdown timeout',
      );
    const gone = conns.map(
      (c) => new Promise<void>((r) => (c.ws.readyState === WebSocket.CLOSED ? r() : c.ws.once('close', () => r()))),
    );
    for (const c of conns) c.ws.close(1001, 'daemon shutting down');
    await Promise.race([Promise.all(gone), delay(Math.max(deadline - Date.now(), 500), undefined, { ref: false })]);
    for (const c of this.connections) c.ws.terminate();
    this.http.closeAllConnections();
    await stompStopped;
    await Promise.race([closed, delay(500, undefined, { ref: false })]);
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
