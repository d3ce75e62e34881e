// This build beside a reference build of the daemon (default: git ref `main`, built into a
// temporary directory), both with --qga-via direct, each serving its own copy of the same 1,000
// simulated guests, measured in one run: idle CPU over the same window, and Host.getAllVmStats in
// alternating blocks (so machine noise falls on both alike). It shows what a change costs the
// channel-only path (issue 11 item 6: libvirt as VM source must not make it worse).
// BENCH_REF (git ref, default main) or BENCH_REF_DIST (a built main.js); BENCH_VMS, BENCH_IDLE_SECONDS.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { GuestSimulator } from '../src/sim/simulator.js';
import { generateGuests } from '../src/sim/guest.js';
import { startDaemon, type BenchDaemon } from './daemonProcess.js';
import { RawCaller, cpuSeconds, sideBySide, waitAllReported } from './vms.bench.js';

const VMS = Number(process.env.BENCH_VMS ?? 1000);
const IDLE_SECONDS = Number(process.env.BENCH_IDLE_SECONDS ?? 60);
const REF = process.env.BENCH_REF ?? 'main';
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The reference build's main.js: given, or `git archive REF` compiled with this tree's node_modules. */
function referenceDaemon(): { main: string; cleanup: () => void } {
  if (process.env.BENCH_REF_DIST) return { main: process.env.BENCH_REF_DIST, cleanup: () => {} };
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vdsm-agentd-ref-'));
  execFileSync('sh', ['-c', 'git -C "$1" archive "$2" | tar -x -C "$3"', 'sh', root, REF, dir]);
  symlinkSync(path.join(root, 'node_modules'), path.join(dir, 'node_modules'));
  execFileSync(process.execPath, [
    path.join(root, 'node_modules/typescript/bin/tsc'),
    '-p',
    path.join(dir, 'tsconfig.json'),
  ]);
  const main = path.join(dir, 'dist/main.js');
  if (!existsSync(main)) throw new Error(`building ${REF} gave no dist/main.js`);
  return { main, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export async function run(): Promise<void> {
  const ref = referenceDaemon();
  const sims: GuestSimulator[] = [];
  const daemons: BenchDaemon[] = [];
  const callers: RawCaller[] = [];
  const dirs: string[] = [];
  try {
    const guests = generateGuests(VMS);
    const ours = await (async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'vdsm-agentd-bench-ours-'));
      dirs.push(dir);
      const sim = new GuestSimulator({ dir });
      sims.push(sim);
      await sim.addAll(guests);
      const d = await startDaemon(['--listen', '127.0.0.1:0', '--channels-dir', dir, '--qga-via', 'direct']);
      daemons.push(d);
      return d;
    })();
    const theirs = await (async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'vdsm-agentd-bench-ref-'));
      dirs.push(dir);
      const sim = new GuestSimulator({ dir });
      sims.push(sim);
      await sim.addAll(guests);
      const d = await startDaemon(
        ['--listen', '127.0.0.1:0', '--channels-dir', dir, '--qga-via', 'direct'],
        {},
        [],
        ref.main,
      );
      daemons.push(d);
      return d;
    })();
    await waitAllReported(ours.url, VMS, performance.now());
    await waitAllReported(theirs.url, VMS, performance.now());
    // Idle: both over the same wall-clock window.
    const o0 = cpuSeconds(ours.pid);
    const r0 = cpuSeconds(theirs.pid);
    await new Promise((r) => setTimeout(r, IDLE_SECONDS * 1000));
    const idleOurs = ((cpuSeconds(ours.pid) - o0) / IDLE_SECONDS) * 100;
    const idleRef = ((cpuSeconds(theirs.pid) - r0) / IDLE_SECONDS) * 100;
    const co = await RawCaller.open(ours.url);
    const cr = await RawCaller.open(theirs.url);
    callers.push(co, cr);
    const [a, b] = await sideBySide(co, cr, 20, 15, 'Host.getAllVmStats', () => undefined);
    const ms = (x: number): string => x.toFixed(2);
    console.log(
      `${VMS} simulated VMs, --qga-via direct, this build beside ${process.env.BENCH_REF_DIST ?? REF}; idle window ${IDLE_SECONDS} s`,
    );
    console.table([
      {
        what: 'idle CPU % of a core',
        ours: idleOurs.toFixed(2),
        ref: idleRef.toFixed(2),
        'ours/ref': (idleOurs / idleRef).toFixed(2),
      },
      {
        what: 'Host.getAllVmStats calls/s',
        ours: Math.round(a.rate),
        ref: Math.round(b.rate),
        'ours/ref': (a.rate / b.rate).toFixed(2),
      },
      { what: 'Host.getAllVmStats p50 ms', ours: ms(a.p50), ref: ms(b.p50), 'ours/ref': (a.p50 / b.p50).toFixed(2) },
      { what: 'Host.getAllVmStats p99 ms', ours: ms(a.p99), ref: ms(b.p99), 'ours/ref': (a.p99 / b.p99).toFixed(2) },
      {
        what: 'Host.getAllVmStats response KiB',
        ours: (a.bytes / 1024).toFixed(0),
        ref: (b.bytes / 1024).toFixed(0),
        'ours/ref': (a.bytes / b.bytes).toFixed(3),
      },
    ]);
    console.log('response size: each VM now carries "network":{} (13 bytes; libvirt fills it)');
  } finally {
    for (const c of callers) c.close();
    for (const d of daemons) await d.stop();
    for (const s of sims) await s.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
    ref.cleanup();
  }
}
