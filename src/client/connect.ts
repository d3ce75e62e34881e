// Connecting as an operator expects: TLS files found where the package installs them, and a
// failure said as what it is — the daemon's certificate not trusted, our certificate refused,
// or a plain ws:// client on a TLS port (and the reverse) — instead of "socket hang up".
import { existsSync } from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { RpcClient, type ClientTlsFiles } from './rpcClient.js';

/** Where the package's TLS files live; VDSM_AGENT_PKI_DIR overrides it (another host's copy, tests). */
export const DEFAULT_PKI_DIR = '/etc/pki/vdsm-agentd';

/** Default files under the PKI dir, in order of preference (the client pair first, then the host's own). */
export const DEFAULT_TLS_FILES = {
  cert: ['certs/client.pem', 'certs/server.pem'],
  key: ['keys/client.key', 'keys/server.key'],
  ca: ['certs/ca.pem'],
} as const;

export class ConnectError extends Error {}

/** A mistake in the flags, found before connecting. */
export class UsageError extends Error {}

interface TlsChoice {
  files: ClientTlsFiles;
  /** Where each file came from, for messages: 'flag' or 'default'. */
  looked: string[];
}

/**
 * The TLS files for a wss:// URL: each flag given wins; the others are looked up under the PKI
 * dir. The certificate and key are taken as a pair (never client.pem with server.key).
 */
function chooseTlsFiles(given: Partial<ClientTlsFiles>, pkiDir: string): TlsChoice {
  const files: ClientTlsFiles = { ...given };
  const looked: string[] = [];
  if (!files.cert && !files.key) {
    for (const [i, certFile] of DEFAULT_TLS_FILES.cert.entries()) {
      const cert = path.join(pkiDir, certFile);
      const key = path.join(pkiDir, DEFAULT_TLS_FILES.key[i] ?? '');
      looked.push(cert);
      if (existsSync(cert) && existsSync(key)) {
        files.cert = cert;
        files.key = key;
        break;
      }
    }
  } else if (!files.cert || !files.key) {
    throw new UsageError('--tls-cert and --tls-key go together (a certificate needs its key)');
  }
  if (!files.ca) {
    const ca = path.join(pkiDir, DEFAULT_TLS_FILES.ca[0]);
    looked.push(ca);
    if (existsSync(ca)) files.ca = ca;
  }
  return { files, looked };
}

const SERVER_NOT_TRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

const CLIENT_CERT_REFUSED =
  /ALERT_CERTIFICATE_REQUIRED|ALERT_BAD_CERTIFICATE|ALERT_UNKNOWN_CA|ALERT_CERTIFICATE_UNKNOWN|ALERT_DECRYPT_ERROR|ALERT_ACCESS_DENIED|ALERT_CERTIFICATE_EXPIRED|ALERT_UNSUPPORTED_CERTIFICATE/;

/** Does something speaking TLS listen at host:port? (A TLS ServerHello, or a TLS alert, says yes.) */
function speaksTls(host: string, port: number, timeoutMs = 3000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tls.connect({
      host,
      port,
      rejectUnauthorized: false,
      servername: net_isIp(host) ? undefined : host,
    });
    const done = (yes: boolean): void => {
      socket.destroy();
      resolve(yes);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('secureConnect', () => done(true));
    socket.once('error', (err: NodeJS.ErrnoException) => done(/^ERR_SSL_.*ALERT/.test(err.code ?? '')));
  });
}

function net_isIp(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(':');
}

function hostPort(url: URL): { host: string; port: number } {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const port = Number(url.port || (url.protocol === 'wss:' ? 443 : 80));
  return { host, port };
}

/** Turns a failed connection into one line that says what is wrong and what to do. */
async function explainConnectFailure(
  urlText: string,
  err: Error & { code?: string },
  tlsChoice: TlsChoice | null,
): Promise<string> {
  const code = err.code ?? '';
  const why = err.message;
  let url: URL;
  try {
    url = new URL(urlText);
  } catch {
    return `not a URL: ${urlText}`;
  }
  const { host, port } = hostPort(url);
  const at = `cannot connect to ${urlText}`;
  if (url.protocol === 'wss:') {
    if (SERVER_NOT_TRUSTED.has(code)) {
      const ca = tlsChoice?.files.ca
        ? `the CA in ${tlsChoice.files.ca}`
        : 'the system CAs (no --tls-ca, none found by default)';
      return `${at}: the daemon's certificate is not trusted (${code}): it was not signed by ${ca}; give --tls-ca with the CA that signed it`;
    }
    if (
      code === 'ERR_SSL_WRONG_VERSION_NUMBER' ||
      code === 'ERR_SSL_PACKET_LENGTH_TOO_LONG' ||
      /wrong version number|packet length too long/i.test(why)
    ) {
      return `${at}: the daemon at ${host}:${port} does not speak TLS: use ws://${url.host}${url.pathname === '/' ? '' : url.pathname}`;
    }
    const hungUp = /socket hang up|ECONNRESET/.test(why) || code === 'ECONNRESET';
    // A plain port closes on our ClientHello: probe before blaming the certificate.
    if (hungUp && !CLIENT_CERT_REFUSED.test(code) && !(await speaksTls(host, port))) {
      return `${at}: the daemon at ${host}:${port} does not speak TLS: use ws://${url.host}${url.pathname === '/' ? '' : url.pathname}`;
    }
    if (CLIENT_CERT_REFUSED.test(code) || hungUp) {
      if (!tlsChoice?.files.cert) {
        const looked = tlsChoice
          ? ` (looked for ${tlsChoice.looked.filter((f) => !f.endsWith('ca.pem')).join(', ')})`
          : '';
        return `${at}: the daemon requires a client certificate and none was given: use --tls-cert and --tls-key${looked}`;
      }
      return `${at}: the daemon refused the client certificate ${tlsChoice.files.cert}${code ? ` (${code})` : ''}: it must be signed by the CA the daemon trusts (its --tls-ca)`;
    }
  } else if (
    url.protocol === 'ws:' &&
    (/socket hang up|ECONNRESET|Unexpected server response|Invalid WebSocket frame/i.test(why) || code === 'ECONNRESET')
  ) {
    if (await speaksTls(host, port))
      return `${at}: the daemon at ${host}:${port} speaks TLS: use wss://${url.host}${url.pathname === '/' ? '' : url.pathname}`;
  }
  return `${at}: ${why}`;
}

export interface ConnectOptions {
  url: string;
  tls: Partial<ClientTlsFiles>;
  timeoutMs: number;
  pkiDir: string;
}

/** Connects, with default TLS files for wss://; throws ConnectError with the explained reason. */
export async function connectClient(opts: ConnectOptions): Promise<RpcClient> {
  let choice: TlsChoice | null = null;
  if (opts.url.startsWith('wss:')) choice = chooseTlsFiles(opts.tls, opts.pkiDir);
  else if (opts.tls.cert || opts.tls.key || opts.tls.ca)
    throw new UsageError(`--tls-* files are for wss:// URLs; ${opts.url} is plain ws://`);
  try {
    return await RpcClient.connect(opts.url, { tlsFiles: choice?.files, timeoutMs: opts.timeoutMs });
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err));
    // A TLS file the flags (or defaults) name that cannot be read: fix the command line.
    if (/^cannot read /.test(e.message)) throw new UsageError(e.message);
    throw new ConnectError(await explainConnectFailure(opts.url, e, choice));
  }
}
