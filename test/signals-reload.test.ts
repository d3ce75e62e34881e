// Signals on the real daemon. SIGHUP reloads: a certificate (and CA) rotated under a connected
// client takes effect for new connections while the old one keeps working; the log level
// changes at once; a setting that needs a restart is named; a broken config file is refused in
// one line and the daemon keeps serving as before. No other signal ends the daemon or opens a
// port (SIGUSR1 would open Node's inspector on 9229 by default).
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RpcClient } from '../src/client/rpcClient.js';
import { startDaemon, type RunningDaemon } from './helpers/daemon.js';
import { atFileEnd } from './helpers/fileCleanup.js';
import { hasCommand, missing } from './helpers/prereq.js';
import { makePki, type Pki } from './helpers/throwawayPki.js';
import { pingsOnNewConnection } from './helpers/wsPeer.js';

const NO_CHANNELS = '/nonexistent-vdsm-agentd-channels';
const dir = mkdtempSync(path.join(tmpdir(), 'vdsm-agentd-signals-'));
atFileEnd(() => rmSync(dir, { recursive: true, force: true }));

/** The fingerprint of the certificate the daemon presents to a new connection. */
function presentedCertificate(url: string, pki: Pki): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({
      host: '127.0.0.1',
      port: Number(new URL(url).port),
      ca: readFileSync(pki.ca.cert),
      cert: readFileSync(pki.client.cert),
      key: readFileSync(pki.client.key),
    });
    s.once('secureConnect', () => {
      resolve(s.getPeerCertificate().fingerprint256);
      s.destroy();
    });
    s.once('error', reject);
  });
}

const fingerprint = (file: string): string => new X509Certificate(readFileSync(file)).fingerprint256;

/** Listening TCP ports of a process, as ss shows them. */
function listeningPorts(pid: number): string[] {
  return execFileSync('ss', ['-Hltnp'], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l.includes(`pid=${pid},`))
    .map((l) => l.split(/\s+/)[3]!)
    .sort();
}

describe.skipIf(missing({ commands: ['openssl'] }))(
  'SIGHUP with TLS: a certificate and CA rotated while a client stays connected',
  () => {
    // Two unrelated CAs: the engine re-enrols the host under a new CA (the harder case).
    const before = hasCommand('openssl') ? makePki() : null;
    const after = hasCommand('openssl') ? makePki() : null;
    const files = {
      cert: path.join(dir, 'server.pem'),
      key: path.join(dir, 'server.key'),
      ca: path.join(dir, 'ca.pem'),
    };
    const install = (pki: Pki): void => {
      copyFileSync(pki.server.cert, files.cert);
      copyFileSync(pki.server.key, files.key);
      copyFileSync(pki.ca.cert, files.ca);
    };
    const asClient = (pki: Pki) => ({ tls: { ...pki.client, ca: pki.ca.cert } });
    let d: RunningDaemon;
    let old: RpcClient;

    beforeAll(async () => {
      install(before!);
      d = await startDaemon([
        '--listen',
        '127.0.0.1:0',
        '--channels-dir',
        NO_CHANNELS,
        '--tls-cert',
        files.cert,
        '--tls-key',
        files.key,
        '--tls-ca',
        files.ca,
      ]);
      old = await RpcClient.connect(d.url, asClient(before!));
    });
    afterAll(async () => {
      await old.close();
      expect(await d.stop()).toBe(0);
    });

    it('serves the new certificate to new connections; the old connection keeps working', async () => {
      expect(await presentedCertificate(d.url, before!)).toBe(fingerprint(before!.server.cert));
      install(after!);
      d.proc.kill('SIGHUP');
      const reloaded = await d.waitForLog((l) => l.msg === 'configuration reloaded');
      expect(reloaded.applied).toEqual(['tls-cert/tls-key/tls-ca']);
      expect(await old.call('Host.ping2')).toBe(true);
      expect(await presentedCertificate(d.url, after!)).toBe(fingerprint(after!.server.cert));
      expect(await pingsOnNewConnection(d.url, asClient(after!))).toBe(true);
      // A client certificate of the old CA is refused from now on (by the daemon: the client
      // trusts the new CA, so it has no reason of its own to give up).
      await expect(pingsOnNewConnection(d.url, { tls: { ...before!.client, ca: after!.ca.cert } })).rejects.toThrow();
      const refused = await d.waitForLog((l) => l.msg === 'TLS handshake refused');
      expect(refused.reason).toMatch(/^client certificate refused: /);
      expect(await old.call('Host.ping2')).toBe(true);
    });

    it('a key that does not match the certificate: the reload fails in one line, the running files stay', async () => {
      copyFileSync(before!.server.key, files.key);
      d.proc.kill('SIGHUP');
      const failed = await d.waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('reload failed'));
      expect(failed.msg).toBe(
        `reload failed, running settings kept: TLS key ${files.key} does not match certificate ${files.cert}`,
      );
      expect(await presentedCertificate(d.url, after!)).toBe(fingerprint(after!.server.cert));
      expect(await pingsOnNewConnection(d.url, asClient(after!))).toBe(true);
      expect(await old.call('Host.ping2')).toBe(true);
      expect(d.proc.exitCode).toBeNull();
    });
  },
);

describe('SIGHUP re-reads the config file', () => {
  const config = path.join(dir, 'config.json');
  const write = (o: object | string): void => writeFileSync(config, typeof o === 'string' ? o : JSON.stringify(o));
  let d: RunningDaemon;
  const isOutcome = (l: Record<string, unknown>): boolean =>
    typeof l.msg === 'string' && /^(configuration reloaded|reload failed)/.test(l.msg);
  /** SIGHUP, then the line that says how this reload went (the next outcome line). */
  const reload = async (): Promise<Record<string, unknown>> => {
    const seen = d.logs().filter(isOutcome).length;
    d.proc.kill('SIGHUP');
    await expect.poll(() => d.logs().filter(isOutcome).length).toBe(seen + 1);
    return d.logs().filter(isOutcome).at(-1)!;
  };

  beforeAll(async () => {
    write({ 'channels-dir': NO_CHANNELS, 'log-level': 'info', 'qga-via': 'direct' });
    d = await startDaemon(['--listen', '127.0.0.1:0', '--config', config]);
  });
  afterAll(async () => {
    expect(await d.stop()).toBe(0);
  });

  it('applies a new log level at once (debug lines appear)', async () => {
    write({ 'channels-dir': NO_CHANNELS, 'log-level': 'debug', 'qga-via': 'direct' });
    expect((await reload()).applied).toEqual(['log-level']);
    expect(await pingsOnNewConnection(d.url)).toBe(true);
    await d.waitForLog((l) => l.level === 'debug' && typeof l.request === 'string' && l.request.includes('Host.ping2'));
  });

  it('names a changed setting that needs a restart, and keeps running as before', async () => {
    // listen in the file changes nothing: the flag given at start-up still wins.
    write({
      'channels-dir': '/elsewhere',
      'log-level': 'debug',
      'qga-via': 'direct',
      listen: '127.0.0.1:1',
      'max-batch': 10,
    });
    const line = await reload();
    expect(line.applied).toEqual([]);
    const warned = d
      .logs()
      .filter((l) => l.level === 'warn' && l.signal === 'SIGHUP')
      .at(-1)!;
    expect(warned.msg).toBe('changed settings need a restart to take effect: channels-dir, max-batch');
    expect(await pingsOnNewConnection(d.url)).toBe(true);
  });

  it.each([
    [
      'broken JSON',
      () => write('{"log-level": "warn",'),
      /^reload failed, running settings kept: config file .*config\.json is not valid JSON: /,
    ],
    [
      'an unknown key',
      () => write({ 'log-levle': 'warn' }),
      /^reload failed, running settings kept: config file .*config\.json: unknown key 'log-levle'$/,
    ],
    [
      'a bad value',
      () => write({ 'log-level': 'loud' }),
      /^reload failed, running settings kept: --log-level: expected one of fatal, error, warn, info, debug, trace, silent, got 'loud'$/,
    ],
    [
      'the file gone',
      () => rmSync(config),
      /^reload failed, running settings kept: cannot read config file .*config\.json: ENOENT$/,
    ],
  ])('refuses %s in one line and keeps serving with the running settings', async (_what, breakIt, message) => {
    breakIt();
    const line = await reload();
    expect(line.level).toBe('error');
    expect(line.msg).toMatch(message);
    expect(await pingsOnNewConnection(d.url)).toBe(true);
    // Still at debug: the level of the last good reload.
    const requests = (): number => d.logs().filter((l) => l.level === 'debug' && typeof l.request === 'string').length;
    const n = requests();
    expect(await pingsOnNewConnection(d.url)).toBe(true);
    await expect.poll(requests).toBeGreaterThan(n);
  });
});

describe.skipIf(missing({ commands: ['ss'] }))('SIGUSR1, SIGUSR2 and the other signals', () => {
  let d: RunningDaemon;
  beforeAll(async () => {
    d = await startDaemon(['--listen', '127.0.0.1:0', '--channels-dir', NO_CHANNELS, '--qga-via', 'direct']);
  });
  afterAll(async () => {
    expect(await d.stop()).toBe(0);
  });

  it.each(['SIGUSR1', 'SIGUSR2', 'SIGALRM', 'SIGVTALRM', 'SIGPWR', 'SIGXCPU'] as const)(
    '%s opens no port, is logged, and the daemon still answers',
    async (signal) => {
      const ports = listeningPorts(d.proc.pid!);
      expect(ports).toEqual([`127.0.0.1:${new URL(d.url).port}`]);
      d.proc.kill(signal);
      const line = await d.waitForLog((l) => l.signal === signal);
      expect(line.msg).toBe(`${signal} ignored: SIGHUP reloads, SIGTERM or SIGINT stops the daemon`);
      expect(await pingsOnNewConnection(d.url)).toBe(true);
      expect(listeningPorts(d.proc.pid!)).toEqual(ports);
      expect(d.proc.exitCode).toBeNull();
    },
  );
});
