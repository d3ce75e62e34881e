// 1,000 simulated VMs (half oVirt agent, half qemu-ga, 4 NICs x 4 addresses each) against two
// daemons at once: today's build (dist/) and the daemon as it was at BENCH_OLD_REF (default
// 9cf4add, before the crowded-host work), built from git into a cache directory. Each daemon has
// its own, identical simulated guests (a channel serves one client at a time), served from a
// child process of its own (bench/simProcess.ts) so that they do not delay the measuring client;
// calls are timed with bench/leanCaller.ts, which allocates nothing per reply. Both daemons run
// at the same time, so the shared machine's noise falls on both alike. Figures, side by side:
// - start -> listening (the sockets present are known), every VM listed, every VM has netIfaces;
// - idle CPU over the same window (nobody calls; oVirt agents heartbeat, qemu-ga is polled), and
//   later, settled, beside the floor: bench/bareReader.mjs doing the same I/O with no work;
// - RSS peak and steady, and per VM (against the same build with no VMs): steady RSS is the median
//   of samples every 2 s over the idle window (a single sample moves by several MiB with the
//   collector's timing); the V8 heap per VM beside it is from heap snapshots (live objects after a
//   full collection, bench/heapSnapshot.ts: node flags only) at the end of the run and of the same
//   build with no VMs. The KiB-per-VM goal applies to the heap figure (docs/performance.md);
// - Host.getAllVmStats p50/p99/max while the guests are polled, called in alternating blocks;
// - VM.getStats calls/s;
// - a changed guest address -> the subscriber's event (qemu-ga: within one poll interval + 100 ms).
// Both daemons run at default settings except `--qga-via direct` (the simulated guests are not
// libvirt domains, and the system libvirtd is not this bench's to ask).
// BENCH_OLD_REF=naive compares with the naive baseline instead (bench/naiveStats.ts: today's daemon
// with every VM's stats rebuilt and the whole reply JSON.stringify'd per call), to measure serialise-once.
// BENCH_VMS (default 1000), BENCH_IDLE_SECONDS (default 60) shorten a trial run;
// BENCH_CPU_PROF=DIR runs both daemons under `node --cpu-prof --cpu-prof-dir DIR`;
// BENCH_NODE_ARGS adds node flags to both (e.g. --trace-gc);
// BENCH_TIMELINE=DIR records a timeline in both daemons and in this process (bench/callTimeline.ts:
// GCs, event-loop stalls, each request's receive/send/written times) and prints, for the
// Host.getAllVmStats calls over 5 ms, where the time went (its 1 ms probe timer costs CPU: the
// idle-CPU row of such a run is not the daemon's).
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'ws';
import { RpcClient } from '../src/client/rpcClient.js';
import { generateGuests } from '../src/sim/guest.js';
import type { VmStats } from '../src/wire.js';
import { BARE_READER, DAEMON, NAIVE_DAEMON, startDaemon, type BenchDaemon } from './daemonProcess.js';
import { oldDaemonMain } from './oldDaemon.js';
import { epochMs, SimProcess } from './simProcess.js';
import { LeanCaller } from './leanCaller.js';
import { recordTimeline, type Span, type Timeline } from './callTimeline.js';
import { bySizeClass, snapshotNodeArgs, takeHeapSnapshot } from './heapSnapshot.js';

const VMS = Number(process.env.BENCH_VMS ?? 1000);
const IDLE_SECONDS = Number(process.env.BENCH_IDLE_SECONDS ?? 60);
const OLD_REF = process.env.BENCH_OLD_REF ?? '9cf4add';
const PROF_DIR = process.env.BENCH_CPU_PROF;
const TIMELINE_DIR = process.env.BENCH_TIMELINE;
const TIMELINE_PROBE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'callTimeline.ts');
const POLL_MS = 5000;
const CLK_TCK = 100;

export function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK; // utime + stime
}

/** Nanoseconds the process spent runnable but waiting for a CPU (/proc/PID/schedstat: its threads summed would be exact; the main thread is what serves). */
function runQueueWaitMs(pid: number): number {
  return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[1]) / 1e6;
}

function memMiB(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  return Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
}

const median = (v: number[]): number => {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** RSS of each pid every `everyMs` for `ms` (the samples, MiB). */
async function rssSamples(pids: number[], ms: number, everyMs: number): Promise<number[][]> {
  const out: number[][] = pids.map(() => []);
  const end = performance.now() + ms;
  while (performance.now() < end) {
    await sleep(Math.min(everyMs, Math.max(0, end - performance.now())));
    pids.forEach((p, i) => out[i]!.push(memMiB(p, 'VmRSS')));
  }
  return out;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const pct = (sorted: number[], p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;

/** One WebSocket, one request at a time, replies kept as bytes: the client's own decoding stays out of the figures. */
export class RawCaller {
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
  max: number;
  bytes: number;
  lat: number[];
  /** Each call's start, epoch ms (for the timeline). */
  at: number[];
  /** With BENCH_TIMELINE, each call's scheduler figures. */
  sched: CallSched[];
  seconds: number;
}

/** Either client: a reply's bytes (RawCaller) or only its size (LeanCaller). */
interface Caller {
  call(method: string, params?: unknown): Promise<Buffer | number>;
}

/** A main thread's time on a CPU and waiting for one, ms (/proc/PID/task/PID/schedstat). */
function threadSched(pid: number): [number, number] {
  const [run, wait] = readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ');
  return [Number(run) / 1e6, Number(wait) / 1e6];
}

/** Per call, for the timeline: the daemon's and this process's main thread, on a CPU and waiting for one (ms). */
interface CallSched {
  dRun: number;
  dWait: number;
  cRun: number;
  cWait: number;
}

async function measureCalls(
  c: Caller,
  n: number,
  method: string,
  params: () => unknown,
  daemonPid?: number,
): Promise<CallFigures> {
  for (let i = 0; i < Math.min(10, n); i++) await c.call(method, params()); // warm-up
  const lat: number[] = [];
  const at: number[] = [];
  const sched: CallSched[] = [];
  let bytes = 0;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    // Read outside the timed span: the scheduler's view of both main threads around the call.
    const d0 = daemonPid ? threadSched(daemonPid) : null;
    const c0 = daemonPid ? threadSched(process.pid) : null;
    const s = performance.now();
    at.push(performance.timeOrigin + s);
    const reply = await c.call(method, params());
    lat.push(performance.now() - s);
    if (d0 && c0) {
      const [d1, c1] = [threadSched(daemonPid!), threadSched(process.pid)];
      sched.push({ dRun: d1[0] - d0[0], dWait: d1[1] - d0[1], cRun: c1[0] - c0[0], cWait: c1[1] - c0[1] });
    }
    bytes = typeof reply === 'number' ? reply : reply.length;
  }
  return figures(lat, (performance.now() - t0) / 1000, bytes, at, sched);
}

function figures(lat: number[], seconds: number, bytes: number, at: number[], sched: CallSched[] = []): CallFigures {
  const sorted = [...lat].sort((a, b) => a - b);
  return {
    rate: lat.length / seconds,
    p50: pct(sorted, 0.5),
    p99: pct(sorted, 0.99),
    max: sorted[sorted.length - 1]!,
    bytes,
    lat,
    at,
    sched,
    seconds,
  };
}

/** Calls `method` on both daemons in alternating blocks, so machine noise falls on both alike. */
async function sideBySide(
  a: Caller,
  b: Caller,
  blocks: number,
  perBlock: number,
  method: string,
  params: () => unknown,
  pids: [number, number] | [] = [],
): Promise<[CallFigures, CallFigures]> {
  const fa: CallFigures[] = [];
  const fb: CallFigures[] = [];
  for (let i = 0; i < blocks; i++) {
    fa.push(await measureCalls(a, perBlock, method, params, pids[0]));
    fb.push(await measureCalls(b, perBlock, method, params, pids[1]));
  }
  const merge = (parts: CallFigures[]): CallFigures =>
    figures(
      parts.flatMap((p) => p.lat),
      parts.reduce((s, p) => s + p.seconds, 0),
      parts[0]!.bytes,
      parts.flatMap((p) => p.at),
      parts.flatMap((p) => p.sched),
    );
  return [merge(fa), merge(fb)];
}

/** Starts `main` (a built daemon) and times listening, every VM listed, every VM with data. */
async function startTimed(
  main: string,
  dir: string,
  snapDir: string,
  timelineFile?: string,
): Promise<{ d: BenchDaemon; listeningMs: number; knownMs: number; reportedMs: number }> {
  const nodeArgs = [
    ...snapshotNodeArgs(snapDir),
    ...(PROF_DIR ? ['--cpu-prof', '--cpu-prof-dir', PROF_DIR] : []),
    ...(process.env.BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? []),
    ...(timelineFile ? ['--import', 'tsx', '--import', TIMELINE_PROBE] : []),
  ];
  const t0 = performance.now();
  const d = await startDaemon(
    ['--listen', '127.0.0.1:0', '--channels-dir', dir, '--qga-via', 'direct'],
    timelineFile ? { BENCH_TIMELINE_FILE: timelineFile } : {},
    nodeArgs,
    main,
  );
  const listeningMs = performance.now() - t0;
  const c = await RpcClient.connect(d.url);
  let knownMs = 0;
  try {
    for (;;) {
      const all = await c.call<VmStats[]>('Host.getAllVmStats');
      if (!knownMs && all.length === VMS) knownMs = performance.now() - t0;
      // The old build reports netIfaces: null until an agent answers.
      const reported = (v: VmStats): boolean => ((v.netIfaces as VmStats['netIfaces'] | null) ?? []).length > 0;
      if (all.length === VMS && all.every((v) => reported(v) && v.guestAgentStatus === 'responsive'))
        return { d, listeningMs, knownMs, reportedMs: performance.now() - t0 };
      await sleep(10);
    }
  } finally {
    await c.close();
  }
}

/** `main` with an empty channels directory, after it settled: its RSS (median of samples over 20 s) and a heap snapshot. */
async function emptyMemory(main: string, snapDir: string): Promise<{ rss: number; snapshot: string }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vdsm-agentd-bench-empty-'));
  try {
    const d = await startDaemon(
      ['--listen', '127.0.0.1:0', '--channels-dir', dir, '--qga-via', 'direct'],
      {},
      snapshotNodeArgs(snapDir),
      main,
    );
    // Its RSS still moves by ~5 MiB for a while after start-up (modules loaded after listening, the
    // collector's first passes): settled longer and sampled longer than a single reading.
    await sleep(5000);
    const [samples] = await rssSamples([d.pid], 20_000, 1000);
    const snapshot = await takeHeapSnapshot(d.pid, snapDir);
    await d.stop();
    return { rss: median(samples!), snapshot };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Changes one address in each of `guests` at once; returns each change's latency to its event (ms). */
async function changeLatencies(url: string, sim: SimProcess, vmIds: string[]): Promise<number[]> {
  const sub = await RpcClient.connect(url);
  await sub.call('Host.subscribeEvents', { prefixes: ['|virt|VM_status|'] });
  const waits = vmIds.map(async (vmId) => {
    // Timed from the change in the simulator's process, not from the IPC request for it.
    const { address, atMs } = await sim.changeAddress(vmId);
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no event for ${vmId} within 30 s`)), 30_000);
      const check = (): void => {
        const hit = sub.notifications.some(
          (n) => n.method.endsWith(vmId) && JSON.stringify(n.params).includes(`"${address}"`),
        );
        if (hit) {
          clearTimeout(timer);
          resolve(epochMs() - atMs);
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

/** Milliseconds of `spans` inside [from, to]. */
function overlap(spans: Span[], from: number, to: number): number {
  let ms = 0;
  for (const s of spans) ms += Math.max(0, Math.min(to, s.at + s.ms) - Math.max(from, s.at));
  return ms;
}

/**
 * What the daemon's main thread ran during `windows` (epoch ms), from its CPU profile: sampled
 * milliseconds per function (self time) and per innermost function of the daemon's own code.
 */
function profileIn(profileFile: string, monoOffsetMs: number, windows: [number, number][], label: string): void {
  interface Node {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
    children?: number[];
  }
  const prof = JSON.parse(readFileSync(profileFile, 'utf8')) as {
    nodes: Node[];
    startTime: number;
    samples: number[];
    timeDeltas: number[];
  };
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const name = (n: Node): string =>
    `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.replace(/^.*\/(dist|node_modules|node:)/, '$1')}:${n.callFrame.lineNumber + 1}`;
  const self = new Map<string, number>();
  const ours = new Map<string, number>();
  const sorted = [...windows].sort((a, b) => a[0] - b[0]);
  let t = prof.startTime;
  let total = 0;
  let w = 0;
  for (let i = 0; i < prof.samples.length; i++) {
    t += prof.timeDeltas[i]!;
    const at = t / 1000 + monoOffsetMs;
    while (w < sorted.length && sorted[w]![1] < at) w++;
    if (w >= sorted.length) break;
    if (at < sorted[w]![0]) continue;
    const ms = (prof.timeDeltas[i + 1] ?? 0) / 1000;
    total += ms;
    let node = byId.get(prof.samples[i]!)!;
    self.set(name(node), (self.get(name(node)) ?? 0) + ms);
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      node = byId.get(id)!;
      if (/\/dist\//.test(node.callFrame.url)) {
        ours.set(name(node), (ours.get(name(node)) ?? 0) + ms);
        break;
      }
    }
  }
  const top = (m: Map<string, number>): string =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 12)
      .map(([f, ms]) => `    ${ms.toFixed(1).padStart(7)} ms  ${f}`)
      .join('\n');
  console.log(
    `${label}: CPU profile inside the ${windows.length} calls over 5 ms: ${total.toFixed(1)} ms sampled\n  self time:\n${top(self)}\n  innermost daemon function:\n${top(ours)}`,
  );
}

/**
 * For each Host.getAllVmStats call over 5 ms: where its time went, from the daemon's timeline
 * (request waiting to be read, reply built, reply written) and the client's (reply read), and
 * which GCs and event-loop stalls fell inside it, in either process.
 */
function explainSlowCalls(
  label: string,
  f: CallFigures,
  daemon: Timeline,
  client: Timeline,
  profileFile: string | undefined,
): void {
  const rows: Record<string, string | number>[] = [];
  const sum = { n: 0, dGc: 0, dStall: 0, cGc: 0, cStall: 0 };
  const all = f.lat.map((lat, i) => ({ lat, from: f.at[i]!, sc: f.sched[i] })).filter((x) => x.lat > 5);
  let preempted = 0;
  for (const { lat, from, sc } of all) {
    // Most of the call spent with a main thread runnable but off the CPU: the machine, not the code.
    if (sc && sc.dWait + sc.cWait > lat / 2) preempted++;
    const to = from + lat;
    const d = daemon.calls.find((c) => c.rx >= from && c.rx <= to);
    const gcD = overlap(daemon.gc, from, to);
    const gcC = overlap(client.gc, from, to);
    const stD = overlap(daemon.stalls, from, to);
    const stC = overlap(client.stalls, from, to);
    sum.n++;
    if (gcD > 1) sum.dGc++;
    if (stD > 2) sum.dStall++;
    if (gcC > 1) sum.cGc++;
    if (stC > 2) sum.cStall++;
    const kinds = (tl: Timeline): string =>
      tl.gc
        .filter((g) => g.at < to && g.at + g.ms > from)
        .map((g) => `${g.what} ${g.ms.toFixed(1)}`)
        .join(', ');
    rows.push({
      'call ms': lat.toFixed(1),
      'until read': d ? (d.rx - from).toFixed(1) : '?',
      build: d ? (d.tx - d.rx).toFixed(1) : '?',
      write: d?.done ? (d.done - d.tx).toFixed(1) : '?',
      'client read': d?.done ? (to - d.done).toFixed(1) : '?',
      'daemon stall': stD.toFixed(1),
      'daemon run / wait': sc ? `${sc.dRun.toFixed(1)} / ${sc.dWait.toFixed(1)}` : '?',
      'client run / wait': sc ? `${sc.cRun.toFixed(1)} / ${sc.cWait.toFixed(1)}` : '?',
      'daemon GC': kinds(daemon),
      'client GC': kinds(client),
    });
  }
  console.log(
    `${label}: ${sum.n} of ${f.lat.length} Host.getAllVmStats calls over 5 ms; with a daemon GC > 1 ms: ${sum.dGc}, a daemon stall > 2 ms: ${sum.dStall}, a client GC > 1 ms: ${sum.cGc}, a client stall > 2 ms: ${sum.cStall}; more than half of it runnable but waiting for a CPU (daemon + client main threads): ${preempted}`,
  );
  rows.sort((a, b) => Number(b['call ms']) - Number(a['call ms']));
  if (rows.length) console.table(rows.slice(0, 15));
  if (profileFile && all.length)
    profileIn(
      profileFile,
      daemon.monoOffsetMs,
      all.map(({ lat, from }) => [from, from + lat]),
      label,
    );
}

/** Checks that both daemons return the same VMs and data (time stamps aside). */
/** The same guest data, whatever the clock (times differ) and the `network` map (libvirt's; `{}`
 * here, and absent from builds before it existed). */
function sameStats(a: Buffer, b: Buffer): boolean {
  const norm = (bytes: Buffer): string =>
    JSON.stringify(
      (JSON.parse(bytes.toString()) as { result: VmStats[] }).result
        .map(({ statusTime: _s, elapsedTime: _e, network: _n, ...rest }) => rest)
        .sort((x, y) => x.vmId.localeCompare(y.vmId)),
    );
  return norm(a) === norm(b);
}

export async function run(): Promise<void> {
  const oldMain = OLD_REF === 'naive' ? NAIVE_DAEMON : oldDaemonMain(OLD_REF);
  const dirs = [0, 1].map((k) => mkdtempSync(path.join(os.tmpdir(), `vdsm-agentd-bench-${k ? 'old' : 'ours'}-`)));
  // Heap snapshots, one directory per build (ours, old).
  const snapDirs = [0, 1].map((k) =>
    mkdtempSync(path.join(os.tmpdir(), `vdsm-agentd-bench-heap-${k ? 'old' : 'ours'}-`)),
  );
  // Each daemon's guests are simulated in a child process of their own: served from this
  // process, their poll answers and heartbeat bursts would delay the measuring client's reads.
  const sims = dirs.map((dir) => SimProcess.start(dir));
  const [sim, oldSim] = sims as [SimProcess, SimProcess];
  const daemons: BenchDaemon[] = [];
  try {
    await Promise.all(sims.map((s) => s.addAll(VMS)));
    const ids = generateGuests(VMS).map((g) => g.vmId);

    const [emptyOurs, emptyOld] = [await emptyMemory(DAEMON, snapDirs[0]!), await emptyMemory(oldMain, snapDirs[1]!)];
    const [oursEmpty, oldEmpty] = [emptyOurs.rss, emptyOld.rss];

    // Start-up, one daemon at a time (each alone on the machine's spare core).
    const tlFiles = TIMELINE_DIR ? ['ours', 'old'].map((k) => path.join(TIMELINE_DIR, `timeline-${k}.json`)) : [];
    const old = await startTimed(oldMain, dirs[1]!, snapDirs[1]!, tlFiles[1]);
    daemons.push(old.d);
    const ours = await startTimed(DAEMON, dirs[0]!, snapDirs[0]!, tlFiles[0]);
    daemons.push(ours.d);

    // Idle: nobody calls; both daemons over the same window.
    await sleep(POLL_MS * 2); // the first polls after start-up are spread over an interval
    const pids = [ours.d.pid, old.d.pid];
    const cpu0 = pids.map(cpuSeconds);
    const req0 = await Promise.all(sims.map(async (x) => (await x.counters()).qgaRequests));
    const w0 = performance.now();
    const idleRss = await rssSamples(pids, IDLE_SECONDS * 1000, 2000);
    const wall = (performance.now() - w0) / 1000;
    const [idleOurs, idleOld] = pids.map((p, k) => ((cpuSeconds(p) - cpu0[k]!) / wall) * 100) as [number, number];
    const req1 = await Promise.all(sims.map(async (x) => (await x.counters()).qgaRequests));
    const [reqOurs, reqOld] = req1.map((r, i) => (r - req0[i]!) / wall) as [number, number];
    const [rssOurs, rssOld] = idleRss.map(median) as [number, number];

    // Calls, while both keep polling their guests. Timed with LeanCaller (no allocation per reply,
    // so no GC of the bench's own inside a call); then the same through the ws client, for reference.
    const lean = await LeanCaller.open(ours.d.url);
    const leanOld = await LeanCaller.open(old.d.url);
    const c = await RawCaller.open(ours.d.url);
    const co = await RawCaller.open(old.d.url);
    const wait0 = pids.map(runQueueWaitMs);
    const here = TIMELINE_DIR ? recordTimeline() : null;
    const [oursAll, oldAll] = await sideBySide(
      lean,
      leanOld,
      10,
      100,
      'Host.getAllVmStats',
      () => undefined,
      here ? [ours.d.pid, old.d.pid] : [],
    );
    here?.stop();
    // Time each daemon was ready to run but had no CPU, per call: on a loaded machine, the p99.
    const [waitOurs, waitOld] = pids.map((p, i) => (runQueueWaitMs(p) - wait0[i]!) / oursAll.lat.length) as [
      number,
      number,
    ];
    let k = 0;
    const nextId = (): unknown => ({ vmID: ids[(k = (k * 7919 + 13) % VMS)] });
    const [oursOne, oldOne] = await sideBySide(lean, leanOld, 10, 300, 'VM.getStats', nextId);
    const [oursWs, oldWs] = await sideBySide(c, co, 5, 100, 'Host.getAllVmStats', () => undefined);
    const same = sameStats(await c.call('Host.getAllVmStats'), await co.call('Host.getAllVmStats'));
    c.close();
    co.close();
    lean.close();
    leanOld.close();

    const [qIds, oIds, qOldIds, oOldIds] = await Promise.all([
      sim.pick('qemu', 20),
      sim.pick('ovirt', 20),
      oldSim.pick('qemu', 20),
      oldSim.pick('ovirt', 20),
    ]);
    const [qOurs, qOld, oOurs, oOld] = (
      await Promise.all([
        changeLatencies(ours.d.url, sim, qIds),
        changeLatencies(old.d.url, oldSim, qOldIds),
        changeLatencies(ours.d.url, sim, oIds),
        changeLatencies(old.d.url, oldSim, oOldIds),
      ])
    ).map((v) => [...v].sort((a, b) => a - b));
    const [peakOurs, peakOld] = pids.map((p) => memMiB(p, 'VmHWM')) as [number, number];
    // Live heap, one daemon at a time and late: writing a snapshot takes the daemon's CPU and
    // memory of its own (its RSS stays up after it). The old daemon's first, as it stops next.
    const snapOld = await takeHeapSnapshot(old.d.pid, snapDirs[1]!);

    // The floor: the old daemon makes way for bench/bareReader.mjs on its guests (the same reads
    // and writes at the same rates, no work done), and ours, long settled by now, is measured
    // again beside it over a second window. Ours minus the floor is what our own code costs.
    await old.d.stop();
    const floor = await startDaemon(['--channels-dir', dirs[1]!], {}, [], BARE_READER);
    daemons.push(floor);
    await sleep(POLL_MS * 2);
    const settled = [ours.d.pid, floor.pid];
    const s0 = settled.map(cpuSeconds);
    const sw0 = performance.now();
    await sleep(IDLE_SECONDS * 1000);
    const sWall = (performance.now() - sw0) / 1000;
    const [idleSettled, idleFloor] = settled.map((p, i) => ((cpuSeconds(p) - s0[i]!) / sWall) * 100) as [
      number,
      number,
    ];
    const snapOurs = await takeHeapSnapshot(ours.d.pid, snapDirs[0]!);
    await Promise.all(daemons.map((d) => d.stop()));
    const heapMiB = (file: string): number => bySizeClass(file).total / 2 ** 20;
    const [heapOurs, heapOld, heapOursEmpty, heapOldEmpty] = [
      snapOurs,
      snapOld,
      emptyOurs.snapshot,
      emptyOld.snapshot,
    ].map(heapMiB) as [number, number, number, number];

    const ms = (v: number): string => v.toFixed(2);
    const x = (ours: number, old: number): string => (ours === 0 ? '' : (ours / old).toFixed(2));
    const perVm = (rss: number, empty: number): number => ((rss - empty) * 1024) / VMS;
    const row = (
      what: string,
      o: number | string,
      d: number | string,
      ratio: string,
      goal: string,
      met: boolean | null,
    ): Record<string, string | number> => ({
      what,
      ours: o,
      [`old (${OLD_REF})`]: d,
      'ours/old': ratio,
      goal,
      met: met === null ? '' : met ? 'yes' : 'NO',
    });
    /** Two figures of one kind, formatted alike, their ratio, and the goal `ours < below` when given. */
    const compare = (
      what: string,
      o: number,
      d: number,
      fmt: (v: number) => string | number,
      goal?: { text: string; below: number },
    ): Record<string, string | number> =>
      row(what, fmt(o), fmt(d), x(o, d), goal?.text ?? '', goal ? o < goal.below : null);
    const fixed =
      (digits: number) =>
      (v: number): string =>
        v.toFixed(digits);
    const qMax = qOurs![qOurs!.length - 1]!;
    console.log(
      `${VMS} VMs (${VMS / 2} oVirt agent, ${VMS / 2} qemu-ga), 4 NICs x 4 addresses each; default settings (qemu-ga poll 5 s) with --qga-via direct; idle window ${IDLE_SECONDS} s; load average ${os.loadavg()[0]!.toFixed(1)} at the end`,
    );
    console.table([
      compare('idle CPU, % of a core', idleOurs, idleOld, fixed(2), { text: '< 1 %', below: 1 }),
      compare('  qemu-ga requests/s while idle', reqOurs, reqOld, fixed(0)),
      row(
        '  later window, beside the floor (same I/O, no work)',
        `${fixed(2)(idleSettled)}; floor ${fixed(2)(idleFloor)}`,
        '',
        `${(idleSettled / idleFloor).toFixed(1)}x floor`,
        '< 1 %',
        idleSettled < 1,
      ),
      compare('RSS MiB steady (median over idle)', rssOurs, rssOld, fixed(1), { text: '< 100 MiB', below: 100 }),
      compare('RSS MiB peak (whole run)', peakOurs, peakOld, fixed(0)),
      compare('RSS MiB with no VMs (median)', oursEmpty, oldEmpty, fixed(1)),
      compare(
        '  RSS KiB per VM (medians: steady - none)',
        perVm(rssOurs, oursEmpty),
        perVm(rssOld, oldEmpty),
        fixed(1),
      ),
      row(
        'V8 heap MiB, live: VMs / none',
        `${heapOurs.toFixed(1)} / ${heapOursEmpty.toFixed(1)}`,
        `${heapOld.toFixed(1)} / ${heapOldEmpty.toFixed(1)}`,
        '',
        '',
        null,
      ),
      compare(
        'heap KiB per VM (live: VMs - none)',
        perVm(heapOurs, heapOursEmpty),
        perVm(heapOld, heapOldEmpty),
        fixed(1),
        {
          text: '< 16 KiB',
          below: 16,
        },
      ),
      compare('Host.getAllVmStats p50 ms', oursAll.p50, oldAll.p50, ms),
      compare('Host.getAllVmStats p99 ms', oursAll.p99, oldAll.p99, ms, { text: '< 5 ms', below: 5 }),
      row('  run-queue wait per call ms (no CPU free)', ms(waitOurs), ms(waitOld), '', '', null),
      row(
        '  p50 / p99 ms through the ws client',
        `${ms(oursWs.p50)} / ${ms(oursWs.p99)}`,
        `${ms(oldWs.p50)} / ${ms(oldWs.p99)}`,
        x(oursWs.p99, oldWs.p99),
        '',
        null,
      ),
      compare('Host.getAllVmStats max ms', oursAll.max, oldAll.max, ms),
      row(
        'Host.getAllVmStats KiB; same data',
        (oursAll.bytes / 1024).toFixed(0),
        (oldAll.bytes / 1024).toFixed(0),
        same ? 'same data' : 'DATA DIFFERS',
        '',
        same,
      ),
      compare('VM.getStats calls/s', oursOne.rate, oldOne.rate, Math.round),
      compare('start -> listening, sockets known ms', ours.listeningMs, old.listeningMs, Math.round),
      compare('start -> every VM known ms', ours.knownMs, old.knownMs, Math.round, { text: '< 500 ms', below: 500 }),
      compare('start -> every VM has netIfaces ms', ours.reportedMs, old.reportedMs, Math.round),
      row(
        'change -> event, qemu-ga p50 / max ms',
        `${ms(pct(qOurs!, 0.5))} / ${ms(qMax)}`,
        `${ms(pct(qOld!, 0.5))} / ${ms(qOld![qOld!.length - 1]!)}`,
        '',
        `< ${POLL_MS + 100} ms`,
        qMax < POLL_MS + 100,
      ),
      row(
        'change -> event, oVirt agent p50 / max ms',
        `${ms(pct(oOurs!, 0.5))} / ${ms(oOurs![oOurs!.length - 1]!)}`,
        `${ms(pct(oOld!, 0.5))} / ${ms(oOld![oOld!.length - 1]!)}`,
        '',
        '',
        null,
      ),
    ]);
    if (here)
      for (const [k, f] of [
        ['ours', oursAll],
        ['old', oldAll],
      ] as const) {
        const daemon = JSON.parse(readFileSync(tlFiles[k === 'ours' ? 0 : 1]!, 'utf8')) as Timeline;
        const pid = (k === 'ours' ? ours : old).d.pid;
        const prof = PROF_DIR
          ? readdirSync(PROF_DIR).find((n) => n.endsWith('.cpuprofile') && n.includes(`.${pid}.0.`)) // thread 0: the main thread (tsx adds a loader thread)
          : undefined;
        explainSlowCalls(k, f, daemon, here.timeline, prof && path.join(PROF_DIR!, prof));
      }
    if (!same) throw new Error('today and old Host.getAllVmStats returned different data');
  } finally {
    for (const d of daemons) await d.stop();
    for (const s of sims) await s.close();
    for (const d of [...dirs, ...snapDirs]) rmSync(d, { recursive: true, force: true });
  }
}
