// Accepts STOMP connections handed over by the port listener (raw STOMP after protocol
// detection) or by the WebSocket endpoint (subprotocol v12.stomp), and keeps track of their
// sessions for the connection limit and for shutdown.
import type { Socket } from 'node:net';
// Grace-period timers (ref: false) never keep a stopping process alive.
import { setTimeout as delay } from 'node:timers/promises';
import type { WebSocket } from 'ws';
import type { Logger } from 'pino';
import { StompSession, type StompSessionDeps } from './session.js';
import { SocketTransport, WebSocketTransport } from './transport.js';
import { encodeFrame } from './frame.js';
import { metrics } from '../metrics/metrics.js';

export class StompServer {
  private readonly sessions = new Set<StompSession>();
  private readonly log: Logger;

  constructor(private readonly deps: StompSessionDeps) {
    this.log = deps.log;
  }

  count(): number {
    return this.sessions.size;
  }

  /** A socket whose first bytes (`opening`, already read) were a STOMP command. */
  acceptSocket(socket: Socket, opening: Buffer, peer: string, client: string | string[] | undefined): void {
    const session = new StompSession(new SocketTransport(socket, peer), this.deps);
    this.opened(session, 'tcp', client);
    socket.on('data', (chunk: Buffer) => session.receive(chunk));
    socket.on('error', (err) => this.log.debug({ peer, conn: session.id, err: err.message }, 'connection error'));
    socket.on('end', () => socket.end());
    socket.on('close', () => this.closed(session));
    // Flowing from the next tick; the opening goes first, and may already pause reading.
    socket.resume();
    session.receive(opening);
  }

  acceptWebSocket(ws: WebSocket, peer: string, client: string | string[] | undefined): void {
    const session = new StompSession(new WebSocketTransport(ws, peer), this.deps);
    this.opened(session, 'websocket', client);
    ws.on('message', (data) =>
      session.receive(Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data)),
    );
    ws.on('error', (err) => this.log.debug({ peer, conn: session.id, err: err.message }, 'connection error'));
    ws.on('close', () => this.closed(session));
  }

  /** Refuses a raw STOMP connection beyond the limit with an ERROR the client can show. */
  refuseSocket(socket: Socket, peer: string, why: string): void {
    this.log.info({ peer, reason: why }, 'connection refused');
    socket.end(encodeFrame({ command: 'ERROR', headers: [], body: why }));
    setTimeout(() => socket.destroy(), 2000).unref();
  }

  /** Lets in-flight requests finish (up to `graceMs`), then closes every session. */
  async stop(graceMs: number): Promise<void> {
    await Promise.race([
      Promise.all([...this.sessions].map((s) => s.pipeline.whenIdle())),
      delay(graceMs, undefined, { ref: false }),
    ]);
    for (const s of this.sessions) s.shutdown('daemon shutting down');
  }

  private opened(session: StompSession, transport: string, client: string | string[] | undefined): void {
    this.sessions.add(session);
    metrics.connectionOpened(session, transport === 'tcp' ? 'stomp' : 'stomp-websocket');
    this.log.info({ peer: session.peer, conn: session.id, protocol: 'stomp', transport, client }, 'connection opened');
  }

  private closed(session: StompSession): void {
    if (!this.sessions.delete(session)) return;
    metrics.connectionClosed(session);
    session.closed();
    this.log.info({ peer: session.peer, conn: session.id, protocol: 'stomp' }, 'connection closed');
  }
}
