// The HTTPS listener for mutual TLS: serves only clients whose certificate the configured CA
// signed. The check is made at 'secureConnection' instead of by `rejectUnauthorized`, which cuts
// the socket off before anyone can log which peer was refused or why. Invariant: a socket that
// reaches any other listener of this server carries a certificate signed by the CA.
import https from 'node:https';
import type http from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { TlsFiles } from '../config.js';

export function mutualTlsServer(
  tls: TlsFiles,
  onRequest: http.RequestListener,
  log: Logger,
  timing: Pick<http.ServerOptions, 'connectionsCheckingInterval' | 'headersTimeout' | 'requestTimeout'>,
): https.Server {
  const server = https.createServer(
    { ...timing, handshakeTimeout: timing.headersTimeout, cert: tls.cert, key: tls.key, ca: tls.ca, requestCert: true, rejectUnauthorized: false },
    onRequest,
  );
  server.prependListener('secureConnection', (socket: TLSSocket) => {
    if (socket.authorized) return;
    const given = Object.keys(socket.getPeerCertificate() ?? {}).length > 0;
    const reason = given ? `client certificate refused: ${String(socket.authorizationError)}` : 'no client certificate given';
    log.info({ peer: `${socket.remoteAddress}:${socket.remotePort}`, reason }, 'TLS handshake refused');
    socket.destroy();
  });
  // Handshakes that fail outright (no common protocol or cipher, not TLS at all).
  server.on('tlsClientError', (err: Error & { reason?: string }) => {
    log.info({ reason: err.reason ?? err.message }, 'TLS handshake failed');
  });
  return server;
}

/** Whether a request's socket passed the client-certificate check (always true without TLS). */
export function clientCertified(req: http.IncomingMessage, tls: boolean): boolean {
  return !tls || (req.socket as TLSSocket).authorized === true;
}
