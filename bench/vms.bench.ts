// 1,000 simulated VMs (half oVirt agent, half qemu-ga, 4 NICs x 4 addresses each) against two
// daemons at once: today's build (dist/) and the daemon as it was at BENCH_OLD_REF (default
// 9cf4add, before the crowded-host work), built from git into a cache directory. Each daemon has
// its own, identical simulated guests (a channel serves one client at a time); both run at the
// same time, so the shared machine's noise falls on both alike. Figures, side by side:
// - start -> listening (the sockets present are known), every VM listed, every VM has netIfaces;
// - idle CPU over the same window (nobody calls; oVirt agents heartbeat, qemu-ga is polled);
// - RSS peak and steady, and per VM (against the same build with no VMs);
// - Host.getAllVmStats p50/p99/max while the guests are polled, called in alternating blocks;
// - VM.getStats calls/s;
// - a changed guest address -> the subscriber's event (qemu-ga: within one poll interval + 100 ms).
// Both daemons run at default settings except `--qga-via direct` (the simulated guests are not
// libvirt domains, and the system libvirtd is not this bench's to ask).
// BENCH_OLD_REF=naive compares with the naive baseline instead (bench/naiveStats.ts: today's daemon
// with every VM's stats rebuilt and the whole reply JSON.stringify'd per call), to measure serialise-once.
// BENCH_VMS (default 1000), BENCH_IDLE_SECONDS (default 60) shorten a trial run;
// BENCH_CPU_PROF=DIR runs both daemons under `node --cpu-prof --cpu-prof-dir DIR`;
// BENCH_NODE_ARGS adds node flags to both (e.g. --trace-gc).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { WebSocket } from 'ws';
import { RpcClient } from '../src/client/rpcClient.js';
import { GuestSimulator } from '../src/sim/simulator.js';
import { generateGuests, type SimGuest } from '../src/sim/guest.js';
import type { VmStats } from '../src/wire.js';
import { DAEMON, NAIVE_DAEMON, startDaemon, type BenchDaemon } from './daemonProcess.js';
import { oldDaemonMain } from './oldDaemon.js';

const VMS = Number(process.env.BENCH_VMS ?? 1000);
const IDLE_SECONDS = Number(process.env.BENCH_IDLE_SECONDS ?? 60);
const OLD_REF = process.env.BENCH_OLD_REF ?? '9cf4add';
const PROF_DIR = process.env.BENCH_CPU_PROF;
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
  return figures(lat, (performance.now() - t0) / 1000, bytes);
}

function figures(lat: number[], seconds: number, bytes: number): CallFigures {
  const sorted = [...lat].sort((a, b) => a - b);
  return {
    rate: lat.length / seconds,
    p50: pct(sorted, 0.5),
    p99: pct(sorted, 0.99),
    max: sorted[sorted.length - 1]!,
    bytes,
    lat,
    seconds,
  };
}

/** Calls `method` on both daemons in alternating blocks, so machine noise falls on both alike. */
async function sideBySide(
  a: RawCaller,
  b: RawCaller,
  blocks: number,
  perBlock: number,
  method: string,
  params: () => unknown,
): Promise<[CallFigures, CallFigures]> {
  const fa: CallFigures[] = [];
  const fb: CallFigures[] = [];
  for (let i = 0; i < blocks; i++) {
    fa.push(await measureCalls(a, perBlock, method, params));
    fb.push(await measureCalls(b, perBlock, method, params));
  }
  const merge = (parts: CallFigures[]): CallFigures =>
    figures(
      parts.flatMap((p) => p.lat),
      parts.reduce((s, p) => s + p.seconds, 0),
      parts[0]!.bytes,
    );
  return [merge(fa), merge(fb)];
}

/** Starts `main` (a built daemon) and times listening, every VM listed, every VM with data. */
async function startTimed(
  main: string,
  dir: string,
): Promise<{ d: BenchDaemon; listeningMs: number; knownMs: number; reportedMs: number }> {
  const nodeArgs = [
    ...(PROF_DIR ? ['--cpu-prof', '--cpu-prof-dir', PROF_DIR] : []),
    ...(process.env.BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? []),
  ];
  const t0 = performance.now();
  const d = await startDaemon(
    ['--listen', '127.0.0.1:0', '--channels-dir', dir, '--qga-via', 'direct'],
    {},
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

/** RSS of `main` with an empty channels directory, after it settled. */
async function emptyRss(main: string): Promise<number> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vdsm-agentd-bench-empty-'));
  try {
    const d = await startDaemon(
      ['--listen', '127.0.0.1:0', '--channels-dir', dir, '--qga-via', 'direct'],
      {},
      [],
      main,
    );
    await sleep(3000);
    const rss = memMiB(d.pid, 'VmRSS');
    await d.stop();
    return rss;
  } finally {
    rmSync(dir, { recursive: true, force: true });
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
        const hit = sub.notifications.some(
          (n) => n.method.endsWith(g.vmId) && JSON.stringify(n.params).includes(`"${address}"`),
        );
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
  const sims = dirs.map((dir) => new GuestSimulator({ dir }));
  const [sim, oldSim] = sims as [GuestSimulator, GuestSimulator];
  const daemons: BenchDaemon[] = [];
  try {
    const guests = generateGuests(VMS);
    await sim.addAll(guests);
    await oldSim.addAll(generateGuests(VMS));
    const ids = guests.map((g) => g.vmId);

    const [oursEmpty, oldEmpty] = [await emptyRss(DAEMON), await emptyRss(oldMain)];

    // Start-up, one daemon at a time (each alone on the machine's spare core).
    const old = await startTimed(oldMain, dirs[1]!);
    daemons.push(old.d);
    const ours = await startTimed(DAEMON, dirs[0]!);
    daemons.push(ours.d);

    // Idle: nobody calls; both daemons over the same window.
    await sleep(POLL_MS * 2); // the first polls after start-up are spread over an interval
    const pids = [ours.d.pid, old.d.pid];
    const cpu0 = pids.map(cpuSeconds);
    const req0 = sims.map((x) => x.counters.qgaRequests);
    const w0 = performance.now();
    await sleep(IDLE_SECONDS * 1000);
    const wall = (performance.now() - w0) / 1000;
    const [reqOurs, reqOld] = sims.map((x, i) => (x.counters.qgaRequests - req0[i]!) / wall) as [number, number];
    const [idleOurs, idleOld] = pids.map((p, k) => ((cpuSeconds(p) - cpu0[k]!) / wall) * 100) as [number, number];
    const [rssOurs, rssOld] = pids.map((p) => memMiB(p, 'VmRSS')) as [number, number];

    // Calls, while both keep polling their guests.
    const c = await RawCaller.open(ours.d.url);
    const co = await RawCaller.open(old.d.url);
    const wait0 = pids.map(runQueueWaitMs);
    const [oursAll, oldAll] = await sideBySide(c, co, 10, 100, 'Host.getAllVmStats', () => undefined);
    // Time each daemon was ready to run but had no CPU, per call: on a loaded machine, the p99.
    const [waitOurs, waitOld] = pids.map((p, i) => (runQueueWaitMs(p) - wait0[i]!) / oursAll.lat.length) as [
      number,
      number,
    ];
    let k = 0;
    const nextId = (): unknown => ({ vmID: ids[(k = (k * 7919 + 13) % VMS)] });
    const [oursOne, oldOne] = await sideBySide(c, co, 10, 300, 'VM.getStats', nextId);
    const same = sameStats(await c.call('Host.getAllVmStats'), await co.call('Host.getAllVmStats'));
    c.close();
    co.close();

    const pick = (s: GuestSimulator, agent: 'qemu' | 'ovirt'): SimGuest[] =>
      s
        .vmIds()
        .map((id) => s.guest(id)!)
        .filter((g) => g.agents[0] === agent)
        .slice(0, 20);
    const [qOurs, qOld, oOurs, oOld] = (
      await Promise.all([
        changeLatencies(ours.d.url, sim, pick(sim, 'qemu')),
        changeLatencies(old.d.url, oldSim, pick(oldSim, 'qemu')),
        changeLatencies(ours.d.url, sim, pick(sim, 'ovirt')),
        changeLatencies(old.d.url, oldSim, pick(oldSim, 'ovirt')),
      ])
    ).map((v) => [...v].sort((a, b) => a - b));
    const [peakOurs, peakOld] = pids.map((p) => memMiB(p, 'VmHWM')) as [number, number];
    await Promise.all(daemons.map((d) => d.stop()));

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
    const qMax = qOurs![qOurs!.length - 1]!;
    console.log(
      `${VMS} VMs (${VMS / 2} oVirt agent, ${VMS / 2} qemu-ga), 4 NICs x 4 addresses each; default settings (qemu-ga poll 5 s) with --qga-via direct; idle window ${IDLE_SECONDS} s; load average ${os.loadavg()[0]!.toFixed(1)} at the end`,
    );
    console.table([
      row(
        'idle CPU, % of a core',
        idleOurs.toFixed(2),
        idleOld.toFixed(2),
        x(idleOurs, idleOld),
        '< 1 %',
        idleOurs < 1,
      ),
      row('  qemu-ga requests/s while idle', reqOurs.toFixed(0), reqOld.toFixed(0), x(reqOurs, reqOld), '', null),
      row(
        'RSS MiB steady (after idle)',
        rssOurs.toFixed(0),
        rssOld.toFixed(0),
        x(rssOurs, rssOld),
        '< 100 MiB',
        rssOurs < 100,
      ),
      row('RSS MiB peak (whole run)', peakOurs.toFixed(0), peakOld.toFixed(0), x(peakOurs, peakOld), '', null),
      row('RSS MiB with no VMs', oursEmpty.toFixed(0), oldEmpty.toFixed(0), x(oursEmpty, oldEmpty), '', null),
      row(
        'KiB per VM (steady - no VMs)',
        perVm(rssOurs, oursEmpty).toFixed(1),
        perVm(rssOld, oldEmpty).toFixed(1),
        x(perVm(rssOurs, oursEmpty), perVm(rssOld, oldEmpty)),
        '< 16 KiB',
        perVm(rssOurs, oursEmpty) < 16,
      ),
      row('Host.getAllVmStats p50 ms', ms(oursAll.p50), ms(oldAll.p50), x(oursAll.p50, oldAll.p50), '', null),
      row(
        'Host.getAllVmStats p99 ms',
        ms(oursAll.p99),
        ms(oldAll.p99),
        x(oursAll.p99, oldAll.p99),
        '< 5 ms',
        oursAll.p99 < 5,
      ),
      row('  run-queue wait per call ms (no CPU free)', ms(waitOurs), ms(waitOld), '', '', null),
      row('Host.getAllVmStats max ms', ms(oursAll.max), ms(oldAll.max), x(oursAll.max, oldAll.max), '', null),
      row(
        'Host.getAllVmStats KiB; same data',
        (oursAll.bytes / 1024).toFixed(0),
        (oldAll.bytes / 1024).toFixed(0),
        same ? 'same data' : 'DATA DIFFERS',
        '',
        same,
      ),
      row(
        'VM.getStats calls/s',
        Math.round(oursOne.rate),
        Math.round(oldOne.rate),
        x(oursOne.rate, oldOne.rate),
        '',
        null,
      ),
      row(
        'start -> listening, sockets known ms',
        Math.round(ours.listeningMs),
        Math.round(old.listeningMs),
        x(ours.listeningMs, old.listeningMs),
        '',
        null,
      ),
      row(
        'start -> every VM known ms',
        Math.round(ours.knownMs),
        Math.round(old.knownMs),
        x(ours.knownMs, old.knownMs),
        '< 500 ms',
        ours.knownMs < 500,
      ),
      row(
        'start -> every VM has netIfaces ms',
        Math.round(ours.reportedMs),
        Math.round(old.reportedMs),
        x(ours.reportedMs, old.reportedMs),
        '',
        null,
      ),
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
    if (!same) throw new Error('today and old Host.getAllVmStats returned different data');
  } finally {
    for (const d of daemons) await d.stop();
    for (const s of sims) await s.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
}
