// What an operator sees when the service user may not read the channels directory or connect to
// a channel socket: the daemon runs as `nobody` (setpriv) against a `chmod 000` directory. Each
// cause is one warning naming the path and the errno (shown at the default log level), however
// often the daemon retries, and its recovery one info line. The daemon runs from a mode-0755 copy
// of dist/ and node_modules/, so `nobody` can read it wherever the checkout lives.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { RpcClient } from '../src/client/rpcClient.js';
import { GuestSimulator } from '../src/sim/simulator.js';
import { generateGuests } from '../src/sim/guest.js';
import { tempDir } from './helpers/channelsDir.js';
import { ROOT } from './helpers/daemon.js';
import { atFileEnd } from './helpers/fileCleanup.js';
import { missing } from './helpers/prereq.js';
import { withTimeout } from './helpers/scriptedGuest.js';

type Line = Record<string, unknown>;
const skip = missing({ root: true, commands: ['setpriv', 'cp'] });

const cleanups: (() => unknown)[] = [];
atFileEnd(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** The built daemon, readable by anyone: hard links (same file system) or copies of dist/ and node_modules/. */
function readableCopy(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vat-nobody-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  chmodSync(dir, 0o755);
  for (const part of ['dist', 'node_modules', 'package.json']) {
    try {
      execFileSync('cp', ['-al', path.join(ROOT, part), dir]);
    } catch {
      execFileSync('cp', ['-a', path.join(ROOT, part), dir]);
    }
  }
  execFileSync('chmod', ['-R', 'a+rX', dir]);
  return dir;
}

/** Runs the daemon as nobody; collects its log lines and lets a test wait for one. */
function daemonAsNobody(
  copy: string,
  args: string[],
): { lines: Line[]; waitFor: (pred: (l: Line) => boolean, what: string) => Promise<Line>; proc: ChildProcess } {
  const proc = spawn(
    'setpriv',
    [
      '--reuid',
      'nobody',
      '--regid',
      'nogroup',
      '--clear-groups',
      process.execPath,
      path.join(copy, 'dist/main.js'),
      ...args,
    ],
    {
      cwd: copy,
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  cleanups.push(() => proc.kill('SIGKILL'));
  const lines: Line[] = [];
  const waiters: { pred: (l: Line) => boolean; resolve: (l: Line) => void }[] = [];
  let buf = '';
  proc.stdout.on('data', (chunk: Buffer) => {
    buf += chunk.toString();
    let nl;
    while ((nl = buf.indexOf('\n')) !== -1) {
      const l = JSON.parse(buf.slice(0, nl)) as Line;
      buf = buf.slice(nl + 1);
      lines.push(l);
      for (const w of [...waiters]) {
        if (!w.pred(l)) continue;
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(l);
      }
    }
  });
  const waitFor = (pred: (l: Line) => boolean, what: string): Promise<Line> => {
    const found = lines.find(pred);
    if (found) return Promise.resolve(found);
    return withTimeout(new Promise<Line>((resolve) => waiters.push({ pred, resolve })), 60_000, what);
  };
  return { lines, waitFor, proc };
}

describe.skipIf(skip)('channels directory and sockets the service user may not use', () => {
  it('says each cause once at warning level with path and errno, and its recovery at info', async () => {
    const copy = readableCopy();
    const channels = tempDir('vat-eacces-');
    const sim = new GuestSimulator({ dir: channels });
    cleanups.push(() => sim.close());
    const [guest] = generateGuests(1, { qemuShare: 0, idPrefix: 'eacce550' });
    await sim.add(guest!);
    const socket = path.join(channels, `${guest!.vmId}.ovirt-guest-agent.0`);
    chmodSync(socket, 0o755); // root's socket: others may not connect (no write permission)
    chmodSync(channels, 0o000);

    // debug: the retries show as debug lines, so the test can tell it waited through several.
    const d = daemonAsNobody(copy, [
      '--listen',
      '127.0.0.1:0',
      '--channels-dir',
      channels,
      '--qga-via',
      'direct',
      '--log-level',
      'debug',
    ]);
    const listening = await d.waitFor((l) => String(l.msg).startsWith('listening on'), 'daemon listening');
    const unreadable = (l: Line): boolean => String(l.msg).startsWith('cannot read channels directory');
    const warn = await d.waitFor(unreadable, 'the unreadable-directory warning');
    expect(warn).toMatchObject({ level: 'warn', dir: channels, errno: 'EACCES' });
    expect(String(warn.msg)).toContain(channels);
    const c = await RpcClient.connect(String(listening.url));
    expect(await c.call('Host.getAllVmStats')).toEqual([]);
    // Two more failed checks, still one warning.
    await d.waitFor(
      (l) =>
        l.msg === 'channels directory still unavailable' &&
        d.lines.filter((x) => x.msg === 'channels directory still unavailable').length >= 2,
      'retries',
    );
    expect(d.lines.filter(unreadable)).toHaveLength(1);

    chmodSync(channels, 0o755);
    expect(await d.waitFor((l) => l.msg === 'channels directory can be read again', 'recovery line')).toMatchObject({
      level: 'info',
      dir: channels,
      was: 'EACCES',
    });

    // Now the socket: found, but nobody may not connect to it.
    const mayNot = (l: Line): boolean => String(l.msg).startsWith('may not connect to channel socket');
    expect(await d.waitFor(mayNot, 'the socket warning')).toMatchObject({
      level: 'warn',
      path: socket,
      errno: 'EACCES',
    });
    await d.waitFor(
      (l) =>
        l.msg === 'channel connect failed' &&
        d.lines.filter((x) => x.msg === 'channel connect failed' && x.path === socket).length >= 3,
      'connect retries',
    );
    expect(d.lines.filter(mayNot)).toHaveLength(1);
    chmodSync(socket, 0o777);
    await d.waitFor((l) => l.msg === 'channel connected' && l.path === socket, 'the channel connects');
    const all = await c.call<{ vmId: string }[]>('Host.getAllVmStats');
    expect(all.map((s) => s.vmId)).toEqual([guest!.vmId]);

    // What an operator would see at the default level (info): exactly these problem lines.
    const shown = d.lines
      .filter((l) => ['warn', 'error', 'fatal'].includes(String(l.level)))
      .map((l) => `${String(l.msg)} [${String(l.errno)}]`);
    console.log(shown.join('\n'));
    expect(shown).toEqual([
      `cannot read channels directory ${channels} (EACCES); no VMs are found until it can be read [EACCES]`,
      `may not connect to channel socket ${socket} (EACCES): the service user needs the socket's group [EACCES]`,
    ]);
    await c.close();
    d.proc.kill('SIGTERM');
  }, 120_000);
});
