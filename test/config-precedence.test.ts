// Flag > environment > config file > default, for every kind of option, through loadConfig and
// through the real daemon process (its bound address says which source won).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig, OPTIONS, envName } from '../src/config.js';
import { ROOT, runDaemonExpectingExit, startDaemon } from './helpers/daemon.js';
import { pingsOnNewConnection } from './helpers/wsPeer.js';

const dir = mkdtempSync(path.join(tmpdir(), 'vdsm-agentd-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
function configFile(content: unknown): string {
  const file = path.join(dir, `config-${files++}.json`);
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
  return file;
}
const NO_DEFAULT_FILE = path.join(dir, 'absent.json');

describe('loadConfig', () => {
  it('uses the SPEC defaults when nothing is given', () => {
    const c = loadConfig([], {}, NO_DEFAULT_FILE);
    expect(c).toMatchObject({
      listen: { host: '127.0.0.1', port: 54325 },
      channelsDir: '/var/lib/libvirt/qemu/channels',
      configFile: null,
      tls: null,
      insecure: false,
      qgaPollIntervalMs: 5000,
      qgaVia: 'auto',
      libvirtUri: 'qemu:///system',
      logLevel: 'info',
      maxFrameBytes: 1_048_576,
      maxBatch: 100,
      maxConnections: 1000,
      allowedOrigins: [],
    });
  });

  it.each([
    [
      'a string',
      'channels-dir',
      '/from/file',
      '/from/env',
      '/from/flag',
      (c: ReturnType<typeof loadConfig>) => c.channelsDir,
    ],
    ['an integer', 'max-batch', 10, '20', '30', (c: ReturnType<typeof loadConfig>) => c.maxBatch],
    [
      'a number',
      'qga-poll-interval',
      1.5,
      '2.5',
      '3.5',
      (c: ReturnType<typeof loadConfig>) => c.qgaPollIntervalMs / 1000,
    ],
    [
      'a list',
      'allowed-origins',
      ['https://file.example'],
      'https://env.example',
      'https://flag.example,https://two.example',
      (c: ReturnType<typeof loadConfig>) => c.allowedOrigins,
    ],
    ['a choice', 'log-level', 'warn', 'error', 'debug', (c: ReturnType<typeof loadConfig>) => c.logLevel],
  ])('for %s (%s): flag beats env beats file beats default', (_kind, flag, fileValue, envValue, flagValue, read) => {
    const file = configFile({ [flag]: fileValue });
    const env = { [envName(flag)]: envValue };
    const parsed = (v: unknown) =>
      flag === 'allowed-origins'
        ? String(v).split(',')
        : flag === 'max-batch' || flag === 'qga-poll-interval'
          ? Number(v)
          : v;
    const def = OPTIONS.find((o) => o.flag === flag)!.default;
    expect(read(loadConfig([], {}, NO_DEFAULT_FILE))).toEqual(def);
    expect(read(loadConfig(['--config', file], {}, NO_DEFAULT_FILE))).toEqual(fileValue);
    expect(read(loadConfig(['--config', file], env, NO_DEFAULT_FILE))).toEqual(parsed(envValue));
    expect(read(loadConfig(['--config', file, `--${flag}`, flagValue], env, NO_DEFAULT_FILE))).toEqual(
      parsed(flagValue),
    );
    expect(read(loadConfig([`--${flag}=${flagValue}`], env, NO_DEFAULT_FILE))).toEqual(parsed(flagValue));
  });

  it('treats a boolean flag without a value as true, and env/file booleans by value', () => {
    const lan = ['--listen', '0.0.0.0:0'];
    expect(loadConfig([...lan, '--insecure'], {}, NO_DEFAULT_FILE).insecure).toBe(true);
    expect(loadConfig([...lan], { VDSM_AGENTD_INSECURE: 'yes' }, NO_DEFAULT_FILE).insecure).toBe(true);
    expect(loadConfig([...lan, '--config', configFile({ insecure: true })], {}, NO_DEFAULT_FILE).insecure).toBe(true);
    expect(loadConfig(['--insecure=false'], { VDSM_AGENTD_INSECURE: 'true' }, NO_DEFAULT_FILE).insecure).toBe(false);
  });

  it('reads the default config file when present, and an explicit --config or VDSM_AGENTD_CONFIG instead of it', () => {
    const defaultFile = configFile({ 'max-batch': 11 });
    const other = configFile({ 'max-batch': 12 });
    expect(loadConfig([], {}, defaultFile)).toMatchObject({ maxBatch: 11, configFile: defaultFile });
    expect(loadConfig(['--config', other], {}, defaultFile)).toMatchObject({ maxBatch: 12, configFile: other });
    expect(loadConfig([], { VDSM_AGENTD_CONFIG: other }, defaultFile)).toMatchObject({
      maxBatch: 12,
      configFile: other,
    });
  });

  it('accepts every option as a config-file key except config itself', () => {
    const all: Record<string, unknown> = {};
    for (const o of OPTIONS) if (o.flag !== 'config' && !o.flag.startsWith('tls-')) all[o.flag] = o.default;
    expect(() => loadConfig(['--config', configFile(all)], {}, NO_DEFAULT_FILE)).not.toThrow();
    expect(() => loadConfig(['--config', configFile({ config: '/x' })], {}, NO_DEFAULT_FILE)).toThrow(
      /unknown key 'config'/,
    );
  });

  it('knows loopback addresses: plain ws is allowed there without --insecure', () => {
    for (const listen of ['127.0.0.1:0', '127.1.2.3:0', '[::1]:0', 'localhost:0', '[::ffff:127.0.0.1]:0']) {
      expect(() => loadConfig(['--listen', listen], {}, NO_DEFAULT_FILE)).not.toThrow();
    }
    for (const listen of ['0.0.0.0:0', '[::]:0', '192.0.2.1:0', '[::ffff:192.0.2.1]:0']) {
      expect(() => loadConfig(['--listen', listen], {}, NO_DEFAULT_FILE)).toThrow(
        /refusing plain ws:\/\/ on non-loopback/,
      );
    }
  });
});

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

describe('the daemon process', () => {
  it('prints its version (from package.json) and a usage naming every flag, exit 0', async () => {
    const version = await runDaemonExpectingExit(['--version']);
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(version).toEqual({ code: 0, stdout: `vdsm-agentd ${pkg.version}\n`, stderr: '' });
    const help = await runDaemonExpectingExit(['--help']);
    expect(help.code).toBe(0);
    for (const o of OPTIONS) expect(help.stdout).toContain(`--${o.flag}`);
  });

  it('listens on IPv6 loopback with --listen [::1]:0', async () => {
    const d = await startDaemon(['--listen', '[::1]:0', '--channels-dir', '/nonexistent-vdsm-agentd']);
    expect(d.url).toMatch(/^ws:\/\/\[::1\]:\d+$/);
    expect(await pingsOnNewConnection(d.url)).toBe(true);
    expect(await d.stop()).toBe(0);
  });

  it('listens where the flag says, else the environment, else the config file', async () => {
    const [p1, p2, p3] = [await freePort(), await freePort(), await freePort()];
    const file = configFile({ listen: `127.0.0.1:${p1}`, 'channels-dir': '/nonexistent-vdsm-agentd' });
    const env = { VDSM_AGENTD_LISTEN: `127.0.0.1:${p2}` };
    for (const [args, envv, port] of [
      [['--config', file], {}, p1],
      [['--config', file], env, p2],
      [['--config', file, '--listen', `127.0.0.1:${p3}`], env, p3],
    ] as const) {
      const d = await startDaemon([...args], { env: envv });
      expect(d.url).toBe(`ws://127.0.0.1:${port}`);
      expect(await d.stop()).toBe(0);
    }
  });
});
