// `npm run demo` as a newcomer runs it: the daemon on simulated guests from fixtures/demo shows
// real-looking netIfaces (Windows adapter names, IPv6 without zones, several NICs) within
// seconds, and SIGTERM stops everything and removes the temporary channels directory. The
// banner comes whatever the log level, and its one-shot commands work without a terminal.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RpcClient } from '../src/client/rpcClient.js';
import type { VmStats } from '../src/wire.js';
import { ROOT } from './helpers/daemon.js';
import { eventually, withTimeout } from './helpers/scriptedGuest.js';
import { hasCommand } from './helpers/prereq.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('npm run demo', () => {
  const proc = spawn(process.execPath, [path.join(ROOT, 'dist/demo.js'), '--listen', '127.0.0.1:0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  afterAll(() => {
    if (proc.exitCode === null) proc.kill('SIGKILL');
  });

  it('serves the fixture guests with their agents data, prints how to try it, and cleans up on SIGTERM', async () => {
    await eventually(
      () => out,
      (o) => /listening on ws:\/\/127\.0\.0\.1:\d+\n/.test(o),
      15_000,
      'the demo banner',
    );
    const url = /listening on (ws:\/\/127\.0\.0\.1:\d+)\n/.exec(out)![1]!;
    const dir = /simulated guests in (\S+)/.exec(out)![1]!;
    expect(out).toContain(`npx wscat -c ${url}`);
    expect(existsSync(dir)).toBe(true);

    const c = await RpcClient.connect(url);
    const all = await eventually(
      () => c.call<VmStats[]>('Host.getAllVmStats'),
      (vms) => vms.length === 5 && vms.every((v) => v.netIfaces.length > 0 && v.guestName !== ''),
      15_000,
      'every demo guest reported',
    );
    await c.close();
    const names = all.flatMap((v) => v.netIfaces.map((i) => i.name));
    expect(names).toEqual(expect.arrayContaining(['Red Hat VirtIO Ethernet Adapter #2', 'Ethernet 2', 'ens3', 'eth0']));
    const inet6 = all.flatMap((v) => v.netIfaces.flatMap((i) => i.inet6));
    expect(inet6).toContain('fe80::b1c4:2a9e:77d0:6f12'); // the guest said ...%12
    expect(inet6.every((a) => !a.includes('%'))).toBe(true);
    expect(all.every((v) => v.netIfaces.length >= 2)).toBe(true);

    proc.kill('SIGTERM');
    expect(await withTimeout(exited, 15_000, 'the demo to exit')).toBe(0);
    expect(existsSync(dir)).toBe(false);
  });
});

describe('npm run demo -- --log-level warn', () => {
  // Through npm as a newcomer types it: npm forwards SIGTERM to the demo, which stops its daemon.
  const proc = spawn('npm', ['run', '--silent', 'demo', '--', '--listen', '127.0.0.1:0', '--log-level', 'warn'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  afterAll(async () => {
    // SIGTERM first: a SIGKILLed npm would leave the demo and its daemon behind.
    if (proc.exitCode === null) proc.kill('SIGTERM');
    await withTimeout(exited, 20_000, 'npm to exit').catch(() => proc.kill('SIGKILL'));
  });

  it('prints the banner and no info line; its one-shot commands answer without a terminal; SIGTERM to npm stops the daemon too', async () => {
    await eventually(
      () => out,
      (o) => /Ctrl-C stops/.test(o),
      90_000,
      'the demo banner',
    );
    const url = /listening on (ws:\/\/127\.0\.0\.1:\d+)\n/.exec(out)![1]!;
    const dir = /simulated guests in (\S+)/.exec(out)![1]!;
    expect(out).not.toMatch(/"level":"info"/);
    const oneShots = out
      .split('\n')
      .filter((l) => l.startsWith('  node dist/client/cli.js'))
      .map((l) => l.trim());
    expect(oneShots).toHaveLength(2);
    const answers = oneShots.map(
      (cmd) =>
        JSON.parse(
          execFileSync('sh', ['-c', cmd], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }),
        ) as unknown,
    );
    expect(Array.isArray(answers[0])).toBe(true);
    expect(answers[1]).toEqual([expect.objectContaining({ vmId: expect.any(String) as unknown })]);

    const port = new URL(url).port;
    const holder = hasCommand('ss')
      ? /pid=(\d+)/.exec(execFileSync('ss', ['-Hltnp', `sport = :${port}`], { encoding: 'utf8' }))?.[1]
      : undefined;
    proc.kill('SIGTERM');
    await withTimeout(exited, 30_000, 'npm to exit');
    if (holder) expect(alive(Number(holder))).toBe(false);
    expect(existsSync(dir)).toBe(false);
    await expect(RpcClient.connect(url)).rejects.toThrow();
  }, 120_000);
});
