// Focused A/B harness for the daemon's idle CPU on the qemu-ga path (not part of `npm run bench`):
// two builds of the daemon run AT THE SAME TIME, each against its own simulated fleet of qemu-ga
// guests (default 1,000), so the shared machine's noise falls on both alike; their CPU time
// (utime+stime from /proc) is read over several windows.
//   npx tsx bench/qgaIdleCpu.ts DIST_A DIST_B [VMS] [WINDOW_S] [WINDOWS]
// DIST_* are directories holding a built main.js (e.g. dist and a saved copy of an older dist), or
// a script taking the daemon's arguments: bench/bareReader.mjs is the floor (the same I/O, no work).
// QGA_IDLE_VMS_A / _B and QGA_IDLE_DAEMON_ARGS_A / _B give one side its own fleet size and daemon
// flags: 1,000 VMs polled every 5 s against 100 every 0.5 s is the same event rate over a tenth
// of the per-VM objects (what a cold working set costs). QGA_IDLE_SIM_TICK_MS_A / _B set that
// side's simulator tick (default 250 ms): oVirt heartbeats are sent from the tick, so a short one
// spreads them out as real guests' own clocks do.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GuestSimulator } from '../src/sim/simulator.js';
import { generateGuests } from '../src/sim/guest.js';

const distA = process.argv[2] ?? '';
const distB = process.argv[3] ?? '';
if (!distA || !distB) throw new Error('usage: qgaIdleCpu.ts DIST_A DIST_B [VMS] [WINDOW_S] [WINDOWS]');
const VMS = Number(process.argv[4] ?? 1000);
const WINDOW_S = Number(process.argv[5] ?? 30);
const WINDOWS = Number(process.argv[6] ?? 4);
const CLK_TCK = 100;

function cpu(pid: number): { user: number; sys: number } {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return { user: Number(f[11]) / CLK_TCK, sys: Number(f[12]) / CLK_TCK };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function startDaemon(dist: string, dir: string, k: number): Promise<ChildProcess> {
  const proc = spawn(
    process.execPath,
    [
      // QGA_IDLE_NODE_ARGS for both, QGA_IDLE_NODE_ARGS_A / _B for one (a V8 flag's effect side by side)
      ...`${process.env.QGA_IDLE_NODE_ARGS ?? ''} ${process.env[`QGA_IDLE_NODE_ARGS_${'AB'[k]!}`] ?? ''}`
        .split(' ')
        .filter(Boolean),
      /\.m?js$/.test(dist) ? path.resolve(dist) : path.resolve(dist, 'main.js'),
      '--listen',
      '127.0.0.1:0',
      '--channels-dir',
      dir,
      '--qga-via',
      'direct',
      ...(process.env[`QGA_IDLE_DAEMON_ARGS_${'AB'[k]!}`] ?? '').split(' ').filter(Boolean),
    ],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (c: Buffer): void => {
      buf += c.toString();
      if (/"url":"/.test(buf)) {
        proc.stdout.off('data', onData);
        if (process.env.QGA_IDLE_STDOUT) proc.stdout.on('data', (d: Buffer) => process.stdout.write(d));
        proc.stdout.resume();
        resolve(proc);
      }
    };
    proc.stdout.on('data', onData);
    proc.once('exit', (code) => reject(new Error(`daemon exited with ${code}`)));
  });
}

async function main(): Promise<void> {
  const setups = [distA, distB].map((dist, k) => ({
    dist,
    dir: mkdtempSync(path.join(os.tmpdir(), `qga-idle-${k}-`)),
    sim: null as GuestSimulator | null,
    proc: null as ChildProcess | null,
  }));
  try {
    for (const [k, s] of setups.entries()) {
      const tick = process.env[`QGA_IDLE_SIM_TICK_MS_${'AB'[k]!}`];
      s.sim = new GuestSimulator({ dir: s.dir, ...(tick ? { tickMs: Number(tick) } : {}) });
      await s.sim.addAll(
        generateGuests(Number(process.env[`QGA_IDLE_VMS_${'AB'[k]!}`] ?? VMS), {
          qemuShare: Number(process.env.QGA_IDLE_QEMU_SHARE ?? 1),
          idPrefix: k ? 'b0b00000' : 'a0a00000',
        }),
      );
      s.proc = await startDaemon(s.dist, s.dir, k);
    }
    await sleep(15_000); // every VM connected, synced and spread over the interval
    const totals = setups.map(() => ({ user: 0, sys: 0, wall: 0 }));
    for (let w = 0; w < WINDOWS; w++) {
      const c0 = setups.map((s) => cpu(s.proc!.pid!));
      const t0 = performance.now();
      const r0 = setups.map((s) => s.sim!.counters.qgaRequests);
      await sleep(WINDOW_S * 1000);
      const wall = (performance.now() - t0) / 1000;
      const line = setups.map((s, k) => {
        const c1 = cpu(s.proc!.pid!);
        const user = c1.user - c0[k]!.user;
        const sys = c1.sys - c0[k]!.sys;
        totals[k]!.user += user;
        totals[k]!.sys += sys;
        totals[k]!.wall += wall;
        const reqs = s.sim!.counters.qgaRequests - r0[k]!;
        return `${path.basename(path.resolve(s.dist))}: ${(((user + sys) / wall) * 100).toFixed(2)} % (user ${user.toFixed(2)} s, sys ${sys.toFixed(2)} s, ${reqs} req, ${(((user + sys) / reqs) * 1e6).toFixed(1)} us/req)`;
      });
      console.log(`window ${w + 1}: ${line.join(' | ')}`);
    }
    for (const [k, t] of totals.entries()) {
      console.log(
        `TOTAL ${path.basename(path.resolve(setups[k]!.dist))}: ${(((t.user + t.sys) / t.wall) * 100).toFixed(2)} % of a core (user ${((t.user / t.wall) * 100).toFixed(2)} %, sys ${((t.sys / t.wall) * 100).toFixed(2)} %)`,
      );
    }
  } finally {
    for (const s of setups) {
      s.proc?.kill('SIGTERM');
      if (s.proc && s.proc.exitCode === null) await new Promise((r) => s.proc!.once('exit', r));
      await s.sim?.close();
      rmSync(s.dir, { recursive: true, force: true });
    }
  }
}

await main();
