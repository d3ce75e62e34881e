// vdsm-agent-client against the real daemon, run as a user runs it: indented JSON on success,
// exit 1 with the error's code and message on a JSON-RPC error, 2 on a usage error, 3 when it
// gets no answer (cannot connect, TLS refused, connection lost).
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLIENT, ROOT, startDaemon, type RunningDaemon } from './helpers/daemon.js';
import { hasCommand, missing } from './helpers/prereq.js';
import { suiteDaemon } from './helpers/suiteDaemon.js';
import { RpcClient } from '../src/client/rpcClient.js';
import { makePki, type Pki } from './helpers/throwawayPki.js';
import { tempDir } from './helpers/channelsDir.js';
import { methodTable } from '../src/rpc/methodTable.js';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function client(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    // No default TLS files from this host's /etc/pki unless a test names a directory.
    const base = { VDSM_AGENT_PKI_DIR: '/nonexistent-vdsm-agentd-pki' };
    execFile(
      process.execPath,
      [CLIENT, ...args],
      { env: { ...process.env, ...base, ...env }, timeout: 20_000 },
      (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr });
      },
    );
  });
}

const NO_CHANNELS = '/nonexistent-vdsm-agentd-channels';

describe('vdsm-agent-client', () => {
  let d: RunningDaemon;
  beforeAll(async () => {
    d = await startDaemon(['--listen', '127.0.0.1:0', '--channels-dir', NO_CHANNELS]);
  });
  afterAll(async () => {
    expect(await d.stop()).toBe(0);
  });

  it('Host ping2 prints true and exits 0', async () => {
    expect(await client(['--url', d.url, 'Host', 'ping2'])).toEqual({ code: 0, stdout: 'true\n', stderr: '' });
  });

  it('takes the URL from VDSM_AGENT_URL', async () => {
    expect(await client(['Host', 'ping2'], { VDSM_AGENT_URL: d.url })).toMatchObject({ code: 0, stdout: 'true\n' });
  });

  it('passes name=value params, JSON-looking values as JSON', async () => {
    expect(await client(['--url', d.url, 'Host', 'subscribeEvents', 'prefixes=["|virt|"]'])).toMatchObject({
      code: 0,
      stdout: 'true\n',
    });
  });

  it('exits 1 and prints the code and message of a JSON-RPC error', async () => {
    const bad = await client(['--url', d.url, 'Host', 'subscribeEvents', 'prefixes=5']);
    expect(bad).toEqual({
      code: 1,
      stdout: '',
      stderr: "vdsm-agent-client: error -32602: Invalid params: 'prefixes' must be an array of strings, got number\n",
    });
    const unknown = await client(['--url', d.url, 'Host', 'noSuchVerb']);
    expect(unknown).toMatchObject({
      code: 1,
      stdout: '',
      stderr: 'vdsm-agent-client: error -32601: Method not found: Host.noSuchVerb\n',
    });
  });

  it('exits 3 with one clear line when it cannot connect', async () => {
    const s = createServer();
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    const port = (s.address() as { port: number }).port;
    await new Promise((r) => s.close(r));
    const r = await client(['--url', `ws://127.0.0.1:${port}`, 'Host', 'ping2']);
    expect(r.code).toBe(3);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(
      new RegExp(`^vdsm-agent-client: cannot connect to ws://127.0.0.1:${port}: .*ECONNREFUSED[^\\n]*\\n$`),
    );
  });

  it('exits 2 on a usage error', async () => {
    expect(await client(['--url', d.url, 'ping2'])).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/expected NAMESPACE METHOD after 'ping2'/),
    });
    expect(await client(['--url', d.url, 'VM', 'getStats', 'vmID'])).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/param 'vmID' must be name=value/),
    });
    expect(await client(['--colour', 'Host', 'ping2'])).toEqual({
      code: 2,
      stdout: '',
      stderr: "vdsm-agent-client: Unknown option '--colour' (see vdsm-agent-client --help)\n",
    });
    expect(
      await client(['--url', d.url.replace('ws:', 'wss:'), '--tls-cert', '/x.pem', 'Host', 'ping2']),
    ).toMatchObject({ code: 2, stderr: expect.stringMatching(/go together/) });
    expect(await client(['--url', d.url, '--tls-ca', '/x.pem', 'Host', 'ping2'])).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/for wss:\/\/ URLs/),
    });
    expect(await client(['--url', d.url, '--timeout', 'soon', 'Host', 'ping2'])).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/--timeout needs a number/),
    });
    expect(await client(['--url', d.url, 'vms', 'extra'])).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/vms takes no arguments, got 'extra'/),
    });
  });

  it('takes --flag=value and --flag value alike, options before or after the method', async () => {
    expect(await client([`--url=${d.url}`, 'Host', 'ping2'])).toEqual({ code: 0, stdout: 'true\n', stderr: '' });
    expect(await client(['Host', 'ping2', '--url', d.url, '--timeout=5'])).toEqual({
      code: 0,
      stdout: 'true\n',
      stderr: '',
    });
  });

  it('the man page lists the same exit codes as --help', async () => {
    const help = (await client(['--help'])).stdout;
    const codes = [...help.slice(help.indexOf('Exit status:')).matchAll(/^ {2}(\d) {2}(.+)$/gm)].map((m) => [
      m[1],
      m[2],
    ]);
    expect(codes.map((c) => c[0])).toEqual(['0', '1', '2', '3']);
    // The packaged page, generated the way `npm run package` does.
    const out = tempDir('man');
    await promisify(execFile)('npx', ['tsx', 'packaging/man.ts', out, path.join(ROOT, 'dist')], { cwd: ROOT });
    const man = readFileSync(path.join(out, 'vdsm-agent-client.1'), 'utf8');
    const manCodes = [...man.slice(man.indexOf('.SH EXIT STATUS')).matchAll(/^\.B (\d)\n(.+)$/gm)].map((m) => m[1]);
    expect(manCodes).toEqual(['0', '1', '2', '3']);
  });

  it('prints its version with --version and -V', async () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(await client(['--version'])).toEqual({ code: 0, stdout: `vdsm-agent-client ${pkg.version}\n`, stderr: '' });
    expect(await client(['-V'])).toEqual({ code: 0, stdout: `vdsm-agent-client ${pkg.version}\n`, stderr: '' });
  });

  it("-h at each level: usage with exit codes, a namespace's methods, a method's params; no daemon needed", async () => {
    const top = await client(['-h']);
    expect(top.code).toBe(0);
    expect(top.stdout).toContain('Exit status:\n  0  success\n');
    expect(top.stdout).toContain('/etc/pki/vdsm-agentd');
    expect(top.stdout.split('\n').every((l) => l.length <= 80)).toBe(true);
    // Every method the daemon registers (its start-up log counts them) is listed under its namespace.
    const listed = (await client(['Host', '-h'])).stdout + (await client(['VM', '--help'])).stdout;
    const methods = methodTable();
    expect(d.logs().find((l) => typeof l.msg === 'string' && l.msg.startsWith('listening on'))?.methods).toBe(
      methods.reduce((n, m) => n + 1 + m.aliases.length, 0),
    );
    for (const m of methods) expect(listed).toContain(`\n  ${m.name.split('.')[1]}`);
    expect(await client(['Host', 'getRoute', '-h'])).toEqual({
      code: 0,
      stderr: '',
      stdout: [
        'usage: vdsm-agent-client [OPTIONS] Host getRoute ip=ADDR',
        '  the host device, gateway and source the kernel routes an address through',
        '',
        'Params:',
        '  ip         required  IPv4 or IPv6 address (fe80::1%eth0 for a zone)',
        '',
        'Also known to the daemon as: getRoute',
        '',
      ].join('\n'),
    });
    for (const m of methods) {
      const [ns = '', verb = ''] = m.name.split('.');
      const text = (await client([ns, verb, '-h'])).stdout;
      expect(
        text.split('\n').every((l) => l.length <= 80),
        text,
      ).toBe(true);
      for (const p of m.params) expect(text).not.toMatch(new RegExp(`${p.name} +(required|optional) +JSON value`));
    }
    expect(await client(['events', '-h'])).toMatchObject({
      code: 0,
      stdout: expect.stringMatching(/^usage: vdsm-agent-client \[OPTIONS\] events \[--prefix P\]/),
    });
    expect(await client(['Host', 'getRoutez', '-h'])).toEqual({
      code: 2,
      stdout: '',
      stderr: 'vdsm-agent-client: no method Host.getRoutez (Host -h lists them)\n',
    });
  });

  describe('at the connection limit', () => {
    const full = suiteDaemon(['--listen', '127.0.0.1:0', '--channels-dir', NO_CHANNELS, '--max-connections', '1']);

    it('exits 3 saying the daemon closed the connection and why', async () => {
      const holder = await RpcClient.connect(full().url);
      try {
        const r = await client(['--url', full().url, 'Host', 'ping2']);
        expect(r).toEqual({
          code: 3,
          stdout: '',
          stderr: `vdsm-agent-client: lost the connection to ${full().url}: connection closed (1013: connection limit of 1 reached)\n`,
        });
      } finally {
        await holder.close();
      }
    });
  });

  describe.skipIf(missing({ commands: ['openssl'] }))('over mutual TLS', () => {
    let pki: Pki;
    // Made while the suite is collected, so its removal hook is registered (not when skipped).
    const made = hasCommand('openssl') ? makePki() : null;
    let tlsDaemon: RunningDaemon;
    beforeAll(async () => {
      pki = made!;
      tlsDaemon = await startDaemon([
        '--listen',
        '127.0.0.1:0',
        '--channels-dir',
        NO_CHANNELS,
        '--tls-cert',
        pki.server.cert,
        '--tls-key',
        pki.server.key,
        '--tls-ca',
        pki.ca.cert,
      ]);
    });
    afterAll(async () => {
      expect(await tlsDaemon.stop()).toBe(0);
    });

    it('connects with a certificate the CA signed', async () => {
      const r = await client([
        '--url',
        tlsDaemon.url,
        '--tls-cert',
        pki.client.cert,
        '--tls-key',
        pki.client.key,
        '--tls-ca',
        pki.ca.cert,
        'Host',
        'ping2',
      ]);
      expect(r).toEqual({ code: 0, stdout: 'true\n', stderr: '' });
    });

    it('exits 3 saying the daemon refused the client certificate from another CA', async () => {
      const r = await client([
        '--url',
        tlsDaemon.url,
        '--tls-cert',
        pki.otherCaClient.cert,
        '--tls-key',
        pki.otherCaClient.key,
        '--tls-ca',
        pki.ca.cert,
        'Host',
        'ping2',
      ]);
      expect(r.code).toBe(3);
      expect(r.stderr).toMatch(
        new RegExp(
          `^vdsm-agent-client: cannot connect to ${tlsDaemon.url}: the daemon refused the client certificate ${pki.otherCaClient.cert}( \\([A-Z_]+\\))?: it must be signed by the CA the daemon trusts \\(its --tls-ca\\)\n$`,
        ),
      );
    });

    it("exits 3 saying the daemon's certificate is not trusted when --tls-ca is another CA", async () => {
      const r = await client([
        '--url',
        tlsDaemon.url,
        '--tls-cert',
        pki.client.cert,
        '--tls-key',
        pki.client.key,
        '--tls-ca',
        pki.otherCa.cert,
        'Host',
        'ping2',
      ]);
      expect(r).toMatchObject({ code: 3, stdout: '' });
      const text = `vdsm-agent-client: cannot connect to ${tlsDaemon.url}: the daemon's certificate is not trusted (CODE): it was not signed by the CA in ${pki.otherCa.cert}; give --tls-ca with the CA that signed it\n`;
      // OpenSSL's code depends on what the daemon sends along (its certificate alone, or the chain).
      expect(r.stderr.replace(/\((UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN)\)/, '(CODE)')).toBe(text);
    });

    it('exits 3 saying a client certificate is needed when none is given or found', async () => {
      const r = await client(['--url', tlsDaemon.url, '--tls-ca', pki.ca.cert, 'Host', 'ping2']);
      expect(r.code).toBe(3);
      expect(r.stderr).toBe(
        `vdsm-agent-client: cannot connect to ${tlsDaemon.url}: the daemon requires a client certificate and none was given: use --tls-cert and --tls-key (looked for /nonexistent-vdsm-agentd-pki/certs/client.pem, /nonexistent-vdsm-agentd-pki/certs/server.pem)\n`,
      );
    });

    it('says when a plain ws:// client meets the TLS port, and a wss:// client a plain port', async () => {
      const plainOnTls = tlsDaemon.url.replace('wss:', 'ws:');
      expect(await client(['--url', plainOnTls, 'Host', 'ping2'])).toEqual({
        code: 3,
        stdout: '',
        stderr: `vdsm-agent-client: cannot connect to ${plainOnTls}: the daemon at ${new URL(plainOnTls).host} speaks TLS: use ${tlsDaemon.url}\n`,
      });
      const tlsOnPlain = d.url.replace('ws:', 'wss:');
      expect(await client(['--url', tlsOnPlain, '--tls-ca', pki.ca.cert, 'Host', 'ping2'])).toEqual({
        code: 3,
        stdout: '',
        stderr: `vdsm-agent-client: cannot connect to ${tlsOnPlain}: the daemon at ${new URL(tlsOnPlain).host} does not speak TLS: use ${d.url}\n`,
      });
    });

    it('finds its TLS files under the PKI directory, so --url wss://… alone works', async () => {
      const pkiDir = tempDir('vat-pki-');
      mkdirSync(path.join(pkiDir, 'certs'));
      mkdirSync(path.join(pkiDir, 'keys'));
      copyFileSync(pki.client.cert, path.join(pkiDir, 'certs/client.pem'));
      copyFileSync(pki.client.key, path.join(pkiDir, 'keys/client.key'));
      copyFileSync(pki.ca.cert, path.join(pkiDir, 'certs/ca.pem'));
      expect(await client(['--url', tlsDaemon.url, 'Host', 'ping2'], { VDSM_AGENT_PKI_DIR: pkiDir })).toEqual({
        code: 0,
        stdout: 'true\n',
        stderr: '',
      });
    });

    it('exits 2 naming a TLS file it cannot read', async () => {
      const r = await client([
        '--url',
        tlsDaemon.url,
        '--tls-cert',
        '/nonexistent/client.pem',
        '--tls-key',
        pki.client.key,
        '--tls-ca',
        pki.ca.cert,
        'Host',
        'ping2',
      ]);
      expect(r).toMatchObject({
        code: 2,
        stderr: expect.stringMatching(/cannot read \/nonexistent\/client.pem: ENOENT/),
      });
    });
  });
});
