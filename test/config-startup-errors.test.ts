// Every start-up error of the real daemon: one line on stderr naming the problem, nothing on
// stdout, exit status 2.
import { mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDaemonExpectingExit, startDaemon } from './helpers/daemon.js';
import { makePki, type Pki } from './helpers/throwawayPki.js';
import { hasCommand, missing } from './helpers/prereq.js';

const dir = mkdtempSync(path.join(tmpdir(), 'vdsm-agentd-startup-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, content: string): string => {
  const p = path.join(dir, name);
  writeFileSync(p, content);
  return p;
};
const BASE = ['--listen', '127.0.0.1:0', '--channels-dir', '/nonexistent-vdsm-agentd'];

async function expectStartupError(args: string[], problem: RegExp, env: Record<string, string> = {}): Promise<void> {
  const { code, stderr, stdout } = await runDaemonExpectingExit(args, env);
  expect(code).toBe(2);
  expect(stdout).toBe('');
  expect(stderr).toMatch(/^vdsm-agentd: error: [^\n]+\n$/);
  expect(stderr).toMatch(problem);
}

describe('start-up errors exit 2 with one line naming the problem', () => {
  it.each([
    ['an unknown flag', ['--listen-on', '127.0.0.1:0'], /unknown flag '--listen-on'/],
    ['a flag without its value', ['--channels-dir'], /flag '--channels-dir' needs a value/],
    ['a stray argument', ['start'], /unexpected argument 'start'/],
    ['a bad listen address', ['--listen', 'localhost'], /--listen: expected HOST:PORT/],
    ['an out-of-range port', ['--listen', '127.0.0.1:65536'], /port 65536 is out of range/],
    ['a non-number', ['--max-batch', 'many'], /--max-batch: expected a whole number, got 'many'/],
    [
      'a zero limit',
      ['--max-connections', '0'],
      /--max-connections: expected a whole number between 1 and 10000, got 0/,
    ],
    // Each of these would silently turn its protection off: the range is named instead.
    [
      'a frame limit past its ceiling',
      ['--max-frame-bytes', '9999999999'],
      /--max-frame-bytes: expected a whole number between 4096 and 67108864, got 9999999999$/m,
    ],
    [
      'an in-flight limit past its ceiling',
      ['--max-in-flight', '1000000000'],
      /--max-in-flight: expected a whole number between 1 and 10000, got 1000000000$/m,
    ],
    [
      'a timeout past its ceiling',
      ['--qga-timeout', '1e9'],
      /--qga-timeout: expected seconds between 0.05 and 600, got 1000000000$/m,
    ],
    ['a bad choice', ['--qga-via', 'carrier-pigeon'], /--qga-via: expected auto, direct or libvirt/],
    ['a bad log level', ['--log-level', 'loud'], /--log-level: expected one of/],
    ['a bad boolean', ['--insecure=perhaps'], /--insecure: expected true or false/],
    ['a poll interval out of range', ['--qga-poll-interval', '0'], /--qga-poll-interval/],
    [
      'plain ws on a non-loopback address',
      ['--listen', '0.0.0.0:0'],
      /refusing plain ws:\/\/ on non-loopback address 0.0.0.0.*--insecure/,
    ],
    ['plain ws on the IPv6 any address', ['--listen', '[::]:0'], /refusing plain ws:\/\/ on non-loopback address ::/],
    [
      'an address this host does not have',
      ['--listen', '192.0.2.1:0', '--insecure'],
      /cannot listen on 192.0.2.1:0: address not available/,
    ],
  ])('%s', async (_what, args, problem) => {
    await expectStartupError([...BASE, ...args], problem);
  });

  it.each([
    ['a bad value', { VDSM_AGENTD_MAX_BATCH: 'lots' }, /VDSM_AGENTD_MAX_BATCH: expected a whole number/],
    [
      'an in-flight limit past its ceiling',
      { VDSM_AGENTD_MAX_IN_FLIGHT: '1000000000' },
      /--max-in-flight: expected a whole number between 1 and 10000, got 1000000000$/m,
    ],
    [
      'an unknown variable',
      { VDSM_AGENTD_LISTEN_ADDRESS: '127.0.0.1:0' },
      /unknown environment variable VDSM_AGENTD_LISTEN_ADDRESS/,
    ],
    [
      'a config file that does not exist',
      { VDSM_AGENTD_CONFIG: '/nonexistent/vdsm-agentd.json' },
      /cannot read config file \/nonexistent\/vdsm-agentd.json: ENOENT/,
    ],
  ])('from the environment: %s', async (_what, env, problem) => {
    await expectStartupError(BASE, problem, env);
  });

  it.each([
    ['an unknown key', '{"listen": "127.0.0.1:0", "colour": "blue"}', /unknown key 'colour'/],
    ['a value of the wrong type', '{"max-batch": "10"}', /key 'max-batch': expected a whole number, got "10"/],
    [
      'a connection limit past its ceiling',
      '{"max-connections": 1e9}',
      /--max-connections: expected a whole number between 1 and 10000, got 1000000000$/m,
    ],
    [
      'a buffer limit past its ceiling',
      '{"max-subscriber-buffer-bytes": 1e300}',
      /--max-subscriber-buffer-bytes: expected a whole number between 65536 and 268435456, got 1e\+300$/m,
    ],
    [
      'a list of the wrong type',
      '{"allowed-origins": "https://a.example"}',
      /key 'allowed-origins': expected an array of strings/,
    ],
    ['text that is not JSON', '{"listen": ', /is not valid JSON/],
    ['JSON that is not an object', '["--listen", "127.0.0.1:0"]', /must hold a JSON object/],
  ])('in the config file: %s', async (what, content, problem) => {
    const f = file(`${what.replace(/\W+/g, '-')}.json`, content);
    await expectStartupError([...BASE, '--config', f], problem);
  });

  it('an unreadable config file', async () => {
    if (process.getuid?.() === 0) {
      // root reads any file: a directory is what root cannot read as a file.
      await expectStartupError([...BASE, '--config', dir], /cannot read config file .*: EISDIR/);
    } else {
      const f = file('unreadable.json', '{}');
      chmodSync(f, 0);
      await expectStartupError([...BASE, '--config', f], /cannot read config file .*: EACCES/);
    }
  });

  describe('the port already in use', () => {
    let holder: Server;
    let port: number;
    beforeAll(async () => {
      holder = createServer();
      await new Promise<void>((r) => holder.listen(0, '127.0.0.1', r));
      port = (holder.address() as { port: number }).port;
    });
    afterAll(() => new Promise<void>((r) => holder.close(() => r())));

    it('by another program', async () => {
      await expectStartupError(
        ['--listen', `127.0.0.1:${port}`, '--channels-dir', '/nonexistent'],
        new RegExp(`cannot listen on 127.0.0.1:${port}: address already in use`),
      );
    });

    it.skipIf(!hasCommand('ss'))('names the process holding it when ss can tell', async () => {
      // This test process holds the port: ss sees its own user's processes without root.
      await expectStartupError(
        ['--listen', `127.0.0.1:${port}`, '--channels-dir', '/nonexistent'],
        new RegExp(`address already in use \\(by [^,]+, pid ${process.pid}\\)\\n`),
      );
    });

    it('by another vdsm-agentd', async () => {
      const first = await startDaemon(BASE);
      const taken = new URL(first.url).port;
      await expectStartupError(['--listen', `127.0.0.1:${taken}`], /address already in use/);
      expect(await first.stop()).toBe(0);
    });
  });

  describe.skipIf(missing({ commands: ['openssl'] }))('TLS files', () => {
    let pki: Pki;
    // Made while the suite is collected, so its removal hook is registered (not when skipped).
    const made = hasCommand('openssl') ? makePki() : null;
    beforeAll(() => {
      pki = made!;
    });
    const tls = (cert: string, key: string, ca: string) => [
      ...BASE,
      '--tls-cert',
      cert,
      '--tls-key',
      key,
      '--tls-ca',
      ca,
    ];

    it('only some of the three', async () => {
      await expectStartupError(
        [...BASE, '--tls-cert', pki.server.cert, '--tls-key', pki.server.key],
        /--tls-cert, --tls-key and --tls-ca must be given together/,
      );
    });
    it('a certificate that does not exist', async () => {
      await expectStartupError(
        tls('/nonexistent/server.pem', pki.server.key, pki.ca.cert),
        /cannot read TLS certificate \/nonexistent\/server.pem: ENOENT/,
      );
    });
    it('a key that cannot be read', async () => {
      await expectStartupError(tls(pki.server.cert, pki.dir, pki.ca.cert), /cannot read TLS key .*: EISDIR/);
    });
    it('a CA file that is not PEM', async () => {
      const bad = file('not-a-ca.pem', 'hello\n');
      await expectStartupError(
        tls(pki.server.cert, pki.server.key, bad),
        /TLS CA .*not-a-ca.pem does not hold a PEM CA/,
      );
    });
    it('a key given as the certificate', async () => {
      await expectStartupError(
        tls(pki.server.key, pki.server.key, pki.ca.cert),
        /TLS certificate .*server.key does not hold a PEM certificate/,
      );
    });
    it('a key that belongs to another certificate', async () => {
      await expectStartupError(
        tls(pki.server.cert, pki.client.key, pki.ca.cert),
        /TLS key .*client.key does not match certificate .*server.pem/,
      );
    });
  });
});
