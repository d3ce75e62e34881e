// Throwaway certificate authorities made with the openssl command, as an admin would: a CA that
// signs the daemon's and a client's certificate, a second unrelated CA with its own client, and
// a self-signed client. Everything lives in a temporary directory removed after the test file.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll } from 'vitest';

interface KeyPair {
  cert: string;
  key: string;
}

export interface Pki {
  dir: string;
  ca: KeyPair;
  server: KeyPair;
  client: KeyPair;
  otherCa: KeyPair;
  otherCaClient: KeyPair;
  selfSigned: KeyPair;
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

function selfSignedPair(dir: string, name: string, subject: string, ca: boolean): KeyPair {
  const pair = { cert: path.join(dir, `${name}.pem`), key: path.join(dir, `${name}.key`) };
  openssl(dir, [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    pair.key,
    '-out',
    pair.cert,
    '-days',
    '2',
    '-subj',
    subject,
    ...(ca ? ['-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'] : []),
  ]);
  return pair;
}

function signedPair(dir: string, name: string, subject: string, ca: KeyPair, extensions: string): KeyPair {
  const pair = { cert: path.join(dir, `${name}.pem`), key: path.join(dir, `${name}.key`) };
  const csr = path.join(dir, `${name}.csr`);
  const ext = path.join(dir, `${name}.ext`);
  writeFileSync(ext, extensions);
  openssl(dir, [
    'req',
    '-new',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    pair.key,
    '-out',
    csr,
    '-subj',
    subject,
  ]);
  openssl(dir, [
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    ca.cert,
    '-CAkey',
    ca.key,
    '-CAcreateserial',
    '-out',
    pair.cert,
    '-days',
    '2',
    '-extfile',
    ext,
  ]);
  return pair;
}

/** Creates the whole set; the directory is removed when the test file ends. */
export function makePki(): Pki {
  const dir = mkdtempSync(path.join(tmpdir(), 'vdsm-agentd-pki-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const ca = selfSignedPair(dir, 'ca', '/O=vdsm-agentd test/CN=Test Engine CA', true);
  const otherCa = selfSignedPair(dir, 'other-ca', '/O=elsewhere/CN=Other CA', true);
  return {
    dir,
    ca,
    otherCa,
    server: signedPair(
      dir,
      'server',
      '/CN=hypervisor.test',
      ca,
      'subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\nextendedKeyUsage=serverAuth\n',
    ),
    client: signedPair(dir, 'client', '/CN=engine.test', ca, 'extendedKeyUsage=clientAuth\n'),
    otherCaClient: signedPair(dir, 'other-client', '/CN=intruder.test', otherCa, 'extendedKeyUsage=clientAuth\n'),
    selfSigned: selfSignedPair(dir, 'self-signed', '/CN=engine.test', false),
  };
}
