// 1,000 simulated VMs (half oVirt agent, half qemu-ga, 4 NICs x 4 addresses each) against the
// daemon started as a separate process, in one run:
// - Host.getAllVmStats over one connection: calls/s, p50/p99, response size, side by side with
//   the naive baseline (every VM's stats rebuilt and the whole reply re-serialised per call:
//   the bench-only daemon entry bench/naiveStats.ts) -> measured ratio. Both
//   daemons run at once on identical guests and are called in alternating blocks, so a busy
//   machine weighs on both alike;
// - VM.getStats calls/s;
// - idle cost: daemon CPU seconds per minute of wall time (/proc) while guests only heartbeat
//   and answer polls; RSS peak and steady; memory per VM (vs. the same daemon with no VMs);
// - time from start to serving with the 1,000 sockets already present;
// - time for a changed guest address to reach an event subscriber (per protocol).
// BENCH_VMS (default 1000) and BENCH_IDLE_SECONDS (default 60) shorten a trial run;
// BENCH_CPU_PROF=DIR runs the daemons under `node --cpu-prof --cpu-prof-dir DIR`.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { WebSocket } from 'ws';
import { RpcClient } from '../src/client/rpcClient.js';
import { GuestSimulator } from '../src/sim/simulator.js';
import { generateGuests, type SimGuest } from '../src/sim/guest.js';
import type { VmStats } from '../src/wire.js';
import { NAIVE_DAEMON, startDaemon, type BenchDaemon } from './daemonProcess.js';

const VMS = Number(process.env.BENCH_VMS ?? 1000);
const IDLE_SECONDS = Number(process.env.BENCH_IDLE_SECONDS ?? 60);
const PROF_DIR = process.env.BENCH_CPU_PROF;
const CLK_TCK = 100;

function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK; // utime + stime
}

function memMiB(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  return Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const pct = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;

/** One WebSocket, one request at a time, replies kept as bytes: the client's own decoding stays out of the figures. */
class RawCaller {
  private waiting: ((reply: Buffer) => void) | null = null;
  private id = 0;
  private constructor(private readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      const w = this.waiting;
      this.waiting = null;
      w?.(data);
    });
  }
  static open(url: string): Promise<RawCaller> {
    const ws = new WebSocket(url, { maxPayload: 256 * 1024 * 1024 });
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(new RawCaller(ws)));
      ws.once('error', reject);
    });
  }
  call(method: string, params?: unknown): Promise<Buffer> {
    const id = ++this.id;
    return new Promise((resolve, reject) => {
      this.waiting = (reply) => {
        // The id and "result" sit in the first bytes of the reply; checking them keeps the loop honest.
        const head = reply.subarray(0, 64).toString();
        const m = /"id":(\d+),"result":/.exec(head);
        if (!m || Number(m[1]) !== id) reject(new Error(`bad reply to ${method}: ${head}`));
        else resolve(reply);
      };
      this.ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) }));
    });
  }
  close(): void {
    this.ws.close();
  }
}

interface CallFigures {
  rate: number;
  p50: number;
  p99: number;
  bytes: number;
  lat: number[];
  seconds: number;
}

async function measureCalls(c: RawCaller, n: number, method: string, params: () => unknown): Promise<CallFigures> {
  for (let i = 0; i < Math.min(10, n); i++) await c.call(method, params()); // warm-up
  const lat: number[] = [];
  let bytes = 0;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const s = performance.now();
    const reply = await c.call(method, params());
    lat.push(performance.now() - s);
    bytes = reply.length;
  }
  const seconds = (performance.now() - t0) / 1000;
  const sorted = [...lat].sort((a, b) => a - b);
  return { rate: n / seconds, p50: pct(sorted, 0.5), p99: pct(sorted, 0.99), bytes, lat, seconds };
}

async function start(dir: string, script?: string): Promise<{ d: BenchDaemon; listeningMs: number }> {
  const t0 = performance.now();
  const nodeArgs = PROF_DIR ? ['--cpu-prof', '--cpu-prof-dir', PROF_DIR] : [];
  const d = await startDaemon(['--listen', '127.0.0.1:0', '--channels-dir', dir], {}, nodeArgs, script);
  return { d, listeningMs: performance.now() - t0 };
}

/** Polls until every VM has netIfaces from its agent; returns when (ms since `t0`). */
async function waitAllReported(url: string, count: number, t0: number): Promise<number> {
  const c = await RpcClient.connect(url);
  try {
    for (;;) {
      const all = await c.call<VmStats[]>('Host.getAllVmStats');
      if (all.length === count && all.every((v) => v.netIfaces !== null && v.guestAgentStatus === 'responsive')) return performance.now() - t0;
      await sleep(20);
    }
  } finally {
    await c.close();
  }
}

/** Changes one address in each of `guests` at once; returns each change's latency to its event (ms). */
async function changeLatencies(url: string, sim: GuestSimulator, guests: SimGuest[]): Promise<number[]> {
  const sub = await RpcClient.connect(url);
  await sub.call('Host.subscribeEvents', { prefixes: ['|virt|VM_status|'] });
  const waits = guests.map((g) => {
    const t0 = performance.now();
    const address = sim.changeAddress(g.vmId)!;
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no event for ${g.vmId} within 30 s`)), 30_000);
      const check = (): void => {
        const hit = sub.notifications.some((n) => n.method.endsWith(g.vmId) && JSON.stringify(n.params).includes(`"${address}"`));
        if (hit) {
          clearTimeout(timer);
          resolve(performance.now() - t0);
        } else setTimeout(check, 1);
      };
      check();
    });
  });
  try {
    return await Promise.all(waits);
  } finally {
    await sub.close();
  }
}

/** Checks that both serialisations return the same VMs and data (time stamps aside). */
function sameStats(a: Buffer, b: Buffer): boolean {
  const norm = (bytes: Buffer): string =>
    JSON.stringify(
      (JSON.parse(bytes.toString()) as { result: VmStats[] }).result
        .map(({ statusTime: _s, elapsedTime: _e, ...rest }) => rest)
        .sort((x, y) => x.vmId.localeCompare(y.vmId)),
    );
  return norm(a) === norm(b);
}

/** Calls `method` on both daemons in alternating blocks, so machine noise falls on both alike. */
async function sideBySide(a: RawCaller, b: RawCaller, blocks: number, perBlock: number, method: string, params: () => unknown): Promise<[CallFigures, CallFigures]> {
  const fa: CallFigures[] = [];
  const fb: CallFigures[] = [];
  for (let i = 0; i < blocks; i++) {
    fa.push(await measureCalls(a, perBlock, method, params));
    fb.push(await measureCalls(b, perBlock, method, params));
  }
  return [merge(fa), merge(fb)];
}

function merge(parts: CallFigures[]): CallFigures {
  const lat = parts.flatMap((p) => p.lat).sort((x, y) => x - y);
  const seconds = parts.reduce((s, p) => s + p.seconds, 0);
  return { rate: lat.length / seconds, p50: pct(lat, 0.5), p99: pct(lat, 0.99), bytes: parts[0]!.bytes, lat, seconds };
}

export async function run(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vdsm-agentd-bench-'));
  const naiveDir = mkdtempSync(path.join(os.tmpdir(), 'vdsm-agentd-bench-naive-'));
  const emptyDir = mkdtempSync(path.join(os.tmpdir(), 'vdsm-agentd-bench-empty-'));
  const sim = new GuestSimulator({ dir });
  const naiveSim = new GuestSimulator({ dir: naiveDir });
  const daemons: BenchDaemon[] = [];
  try {
    const guests = generateGuests(VMS);
    await sim.addAll(guests);
    // The baseline daemon gets its own, identical guests: a channel serves one client at a time.
    await naiveSim.addAll(generateGuests(VMS));
    const ids = guests.map((g) => g.vmId);

    // A daemon with no VMs: the memory the VMs are measured against.
    const empty = await start(emptyDir);
    daemons.push(empty.d);
    await sleep(3000);
    const emptyRss = memMiB(empty.d.pid, 'VmRSS');
    await empty.d.stop();

    const t0 = performance.now();
    const ours = await start(dir);
    daemons.push(ours.d);
    const allReportedMs = await waitAllReported(ours.d.url, VMS, t0);
    const naive = await start(naiveDir, NAIVE_DAEMON);
    daemons.push(naive.d);
    await waitAllReported(naive.d.url, VMS, performance.now());

    const c = await RawCaller.open(ours.d.url);
    const cn = await RawCaller.open(naive.d.url);
    const [oursAll, naiveAll] = await sideBySide(c, cn, 6, 50, 'Host.getAllVmStats', () => undefined);
    let k = 0;
    const nextId = (): unknown => ({ vmID: ids[(k = (k * 7919 + 13) % VMS)] });
    const [oursOne, naiveOne] = await sideBySide(c, cn, 10, 300, 'VM.getStats', nextId);
    const same = sameStats(await c.call('Host.getAllVmStats'), await cn.call('Host.getAllVmStats'));
    c.close();
    cn.close();
    await naive.d.stop();
    await naiveSim.close();

    const qemuGuests = guests.filter((g) => g.agents[0] === 'qemu').slice(0, 10);
    const ovirtGuests = guests.filter((g) => g.agents[0] === 'ovirt').slice(0, 10);
    const [qemuLat, ovirtLat] = await Promise.all([changeLatencies(ours.d.url, sim, qemuGuests), changeLatencies(ours.d.url, sim, ovirtGuests)]);

    // Idle: nobody calls; guests heartbeat and qemu-ga is polled every 5 s.
    await sleep(2000);
    const cpu0 = cpuSeconds(ours.d.pid);
    const w0 = performance.now();
    await sleep(IDLE_SECONDS * 1000);
    const idleCpuPerMin = ((cpuSeconds(ours.d.pid) - cpu0) / ((performance.now() - w0) / 1000)) * 60;
    const steadyRss = memMiB(ours.d.pid, 'VmRSS');
    const peakRss = memMiB(ours.d.pid, 'VmHWM');
    await ours.d.stop();

    const ms = (v: number): string => v.toFixed(2);
    const sorted = (v: number[]): number[] => [...v].sort((a, b) => a - b);
    const q = sorted(qemuLat);
    const o = sorted(ovirtLat);
    console.log(`${VMS} VMs (${VMS / 2} oVirt agent, ${VMS / 2} qemu-ga), 4 NICs x 4 addresses each; qemu-ga poll interval 5 s; idle window ${IDLE_SECONDS} s`);
    console.table([
      { what: 'Host.getAllVmStats calls/s', ours: Math.round(oursAll.rate), naive: Math.round(naiveAll.rate), 'ours/naive': (oursAll.rate / naiveAll.rate).toFixed(1) + 'x', goal: '' },
      { what: 'Host.getAllVmStats p50 ms', ours: ms(oursAll.p50), naive: ms(naiveAll.p50), 'ours/naive': (naiveAll.p50 / oursAll.p50).toFixed(1) + 'x faster', goal: '< 5 ms, >= 5x' },
      { what: 'Host.getAllVmStats p99 ms', ours: ms(oursAll.p99), naive: ms(naiveAll.p99), 'ours/naive': (naiveAll.p99 / oursAll.p99).toFixed(1) + 'x faster', goal: '' },
      { what: 'Host.getAllVmStats response KiB', ours: (oursAll.bytes / 1024).toFixed(0), naive: (naiveAll.bytes / 1024).toFixed(0), 'ours/naive': same ? 'same data' : 'DATA DIFFERS', goal: '' },
      { what: 'VM.getStats calls/s', ours: Math.round(oursOne.rate), naive: Math.round(naiveOne.rate), 'ours/naive': (oursOne.rate / naiveOne.rate).toFixed(1) + 'x', goal: '' },
      { what: 'VM.getStats p50 ms', ours: ms(oursOne.p50), naive: ms(naiveOne.p50), 'ours/naive': '', goal: '' },
      { what: 'idle CPU s per min (% of a core)', ours: `${idleCpuPerMin.toFixed(2)} (${((idleCpuPerMin / 60) * 100).toFixed(2)} %)`, naive: '', 'ours/naive': '', goal: '< 3 %' },
      { what: 'RSS MiB peak / steady', ours: `${peakRss.toFixed(0)} / ${steadyRss.toFixed(0)}`, naive: '', 'ours/naive': '', goal: '< 150 MiB' },
      { what: 'RSS MiB with no VMs; KiB per VM', ours: `${emptyRss.toFixed(0)}; ${(((steadyRss - emptyRss) * 1024) / VMS).toFixed(1)}`, naive: '', 'ours/naive': '', goal: '' },
      { what: 'start -> listening, sockets known (ms)', ours: Math.round(ours.listeningMs), naive: '', 'ours/naive': '', goal: '' },
      { what: 'start -> every VM has netIfaces (ms)', ours: Math.round(allReportedMs), naive: '', 'ours/naive': '', goal: '' },
      { what: 'change -> event, oVirt agent p50/max ms', ours: `${ms(pct(o, 0.5))} / ${ms(o[o.length - 1]!)}`, naive: '', 'ours/naive': '', goal: '< poll + 100 ms' },
      { what: 'change -> event, qemu-ga p50/max ms', ours: `${ms(pct(q, 0.5))} / ${ms(q[q.length - 1]!)}`, naive: '', 'ours/naive': '', goal: '< 5100 ms' },
    ]);
    if (!same) throw new Error('naive and cached Host.getAllVmStats returned different data');
  } finally {
    for (const d of daemons) await d.stop();
    await sim.close();
    await naiveSim.close();
    for (const d of [dir, naiveDir, emptyDir]) rmSync(d, { recursive: true, force: true });
  }
}
