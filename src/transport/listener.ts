// The listen port: TCP, or TLS with a required client certificate, and then protocol
// detection on the first bytes (detect.ts). HTTP goes to the WebSocket endpoint, STOMP to the
// STOMP server, anything else is closed. Each connection is sorted on its own: a client that
// sends nothing (or stalls mid-handshake) is closed after the detection timeout and never
// holds up anyone else.
import net from 'node:net';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { detectProtocol } from './detect.js';

const DETECT_TIMEOUT_MS = 10_000;

export interface PortListenerOptions {
  listen: Config['listen'];
  tls: Config['tls'];
  log: Logger;
  /** The socket, with its first bytes put back, for the HTTP server. */
  onHttp: (socket: net.Socket) => void;
  /** The socket, paused, and the bytes read so far. */
  onStomp: (socket: net.Socket, opening: Buffer, peer: string) => void;
  detectTimeoutMs?: number;
  /** Most sockets open at once, sorted or not, so idle sockets cannot use up the descriptors. */
  maxSockets?: number;
}

export class PortListener {
  private readonly server: net.Server | tls.Server;
  private readonly undecided = new Set<net.Socket>();
  private readonly timeoutMs: number;

  constructor(private readonly opts: PortListenerOptions) {
    this.timeoutMs = opts.detectTimeoutMs ?? DETECT_TIMEOUT_MS;
    if (opts.tls) {
      // The client certificate is checked at secureConnection rather than by
      // `rejectUnauthorized`, which cuts the socket off before anyone can say which peer was
      // refused or why. Invariant: only sockets with a certificate signed by the CA are sorted.
      const server = tls.createServer({
        cert: opts.tls.cert,
        key: opts.tls.key,
        ca: opts.tls.ca,
        requestCert: true,
        rejectUnauthorized: false,
        handshakeTimeout: this.timeoutMs,
      });
      server.on('secureConnection', (socket: tls.TLSSocket) => {
        if (socket.authorized) return this.sort(socket);
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- null once the socket is destroyed (Node's documentation; its types leave that out)
        const given = Object.keys(socket.getPeerCertificate() ?? {}).length > 0;
        const reason = given
          ? `client certificate refused: ${String(socket.authorizationError)}`
          : 'no client certificate given';
        this.opts.log.info({ peer: `${socket.remoteAddress}:${socket.remotePort}`, reason }, 'TLS handshake refused');
        socket.destroy();
      });
      // Handshakes that fail outright (no common protocol or cipher, not TLS at all, too slow).
      // Node leaves the socket open once this event has a listener: close it here.
      server.on('tlsClientError', (err: Error & { reason?: string }, socket: tls.TLSSocket) => {
        this.opts.log.info(
          { peer: `${socket.remoteAddress}:${socket.remotePort}`, reason: err.reason ?? err.message },
          'TLS handshake failed',
        );
        socket.destroy();
      });
      this.server = server;
    } else {
      this.server = net.createServer((socket) => this.sort(socket));
    }
    if (opts.maxSockets !== undefined) this.server.maxConnections = opts.maxSockets;
  }

  /** Binds; rejects with the listen error (EADDRINUSE, EACCES, ...). */
  listen(): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.server.once('error', onError);
      this.server.listen(this.opts.listen.port, this.opts.listen.host, () => {
        this.server.off('error', onError);
        this.server.on('error', (err) => this.opts.log.error({ err }, 'listener error'));
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  /**
   * New TLS files (SIGHUP): handshakes from now on use them; connections already made keep
   * theirs, so a re-enrolled certificate needs no restart and drops no one.
   */
  setTls(files: NonNullable<Config['tls']>): void {
    if (!(this.server instanceof tls.Server)) throw new Error('the listener was started without TLS');
    this.server.setSecureContext({ cert: files.cert, key: files.key, ca: files.ca });
  }

  address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  /** Stops accepting and drops connections whose protocol is not known yet. */
  close(): Promise<void> {
    for (const s of this.undecided) s.destroy();
    this.undecided.clear();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private sort(socket: net.Socket): void {
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    const log = this.opts.log;
    this.undecided.add(socket);
    let opening: Buffer = Buffer.alloc(0);
    const done = (): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('end', onEnd);
      this.undecided.delete(socket);
    };
    const timer = setTimeout(() => {
      done();
      log.info(
        { peer, bytes: opening.length },
        'connection closed: nothing recognisable sent within the detection timeout',
      );
      socket.destroy();
    }, this.timeoutMs);
    timer.unref();
    const onError = (): void => {
      done();
      socket.destroy();
    };
    const onEnd = (): void => {
      done();
      socket.destroy();
    };
    const onData = (chunk: Buffer): void => {
      opening = opening.length ? Buffer.concat([opening, chunk]) : chunk;
      const kind = detectProtocol(opening);
      if (kind === 'undecided') return;
      done();
      socket.pause();
      if (kind === 'http') {
        socket.unshift(opening);
        this.opts.onHttp(socket);
        // The HTTP server reads later bytes straight from the handle; resuming lets the
        // put-back opening reach its parser first (on the next tick, before any new read).
        socket.resume();
      } else if (kind === 'stomp') {
        this.opts.onStomp(socket, opening, peer);
      } else {
        log.info(
          { peer, opening: opening.subarray(0, 32).toString('latin1') },
          'connection refused: neither HTTP nor STOMP',
        );
        socket.destroy();
      }
    };
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('end', onEnd);
  }
}
