// The libvirt side at scale (issue 16 item 4): 1,000 domains on a real libvirtd's `test` driver
// (test+unix:///default: domains defined from XML, no QEMU), each with one bridged vNIC. The
// daemon's libvirt inventory (the same code the daemon runs) lists them, follows lifecycle events
// and samples vNIC counters every interval, two ways side by side on the same domains: one bulk
// CONNECT_GET_ALL_DOMAIN_STATS per interval for all domains (what the daemon does), and one
// DOMAIN_INTERFACE_STATS per vNIC per interval. Reported: start -> all listed, this process's CPU
// and libvirtd's CPU per VM per interval, and 1,000 suspend events applied.
// Then Host.getAllVmStats in libvirt mode: today's daemon (dist/) and the daemon as it was at
// BENCH_OLD_REF (bench/oldDaemon.ts; default 121a9dc, before the counters' bytes were spliced) run
// side by side as processes on the same domains, each sampling vNIC counters every interval with
// its one bulk call, through bench/libvirtCountersProxy.ts (the test driver's bulk reply has no
// interface group; the proxy adds what QEMU's would, moving every sample as a busy VM's do), and
// are called in turn, a call every few ms over many intervals: latency p50/p99/max, calls over
// 5 ms, and each daemon's CPU per VM per interval with no call for a minute and with one call
// every 3 intervals (the engine's 15 s poll against 5 s samples), so work moved out of calls shows.
// Needs root and libvirtd (scripts/setup-test-host.sh); starts its own libvirtd and stops it.
// BENCH_LIBVIRT_DOMAINS (default 1000) and BENCH_LIBVIRT_INTERVALS (default 10) shorten a trial;
// BENCH_LIBVIRT_CALL_INTERVALS (default 30) is the calls' window; BENCH_LIBVIRT_PARTS (default
// `counters,calls,lifecycle`) picks parts; BENCH_CPU_PROF=DIR profiles both daemons (node --cpu-prof).
import { execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pino from 'pino';
import { RpcClient } from '../src/client/rpcClient.js';
import { LibvirtClient } from '../src/libvirt/client.js';
import { LibvirtInventory, SERIALISE_AHEAD_WHILE_ASKED_MS } from '../src/libvirt/inventory.js';
import { VmRegistry } from '../src/vms/registry.js';
import { Libvirtd, LIBVIRT_SOCKET } from '../test/helpers/libvirtd.js';
import { DAEMON, startDaemon, type BenchDaemon } from './daemonProcess.js';
import { LeanCaller } from './leanCaller.js';
import { oldDaemonMain } from './oldDaemon.js';
import type { Timeline } from './callTimeline.js';

const exec = promisify(execFile);
const DOMAINS = Number(process.env.BENCH_LIBVIRT_DOMAINS ?? 1000);
const INTERVALS = Number(process.env.BENCH_LIBVIRT_INTERVALS ?? 10);
const INTERVAL_MS = 1000;
const URI = 'test+unix:///default';
const CLK_TCK = 100;
const CALL_INTERVALS = Number(process.env.BENCH_LIBVIRT_CALL_INTERVALS ?? 30);
const OLD_REF = process.env.BENCH_OLD_REF ?? '121a9dc';
const COUNTERS_PROXY = path.join(path.dirname(fileURLToPath(import.meta.url)), 'libvirtCountersProxy.ts');
const PROF_DIR = process.env.BENCH_CPU_PROF;
const TIMELINE_DIR = process.env.BENCH_TIMELINE;
const TIMELINE_PROBE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'callTimeline.ts');
const PARTS = new Set((process.env.BENCH_LIBVIRT_PARTS ?? 'counters,calls,lifecycle').split(','));

function cpuMsOf(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
}

function selfCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A long-lived virsh on the test driver fed on stdin (one process for 1,000 commands). */
function virshSession(): { run: (lines: string[]) => Promise<void>; close: () => Promise<void> } {
  const proc = spawn('virsh', ['-q', '-c', URI], { stdio: ['pipe', 'pipe', 'inherit'] });
  let buf = '';
  let waiter: (() => void) | null = null;
  proc.stdout.on('data', (c: Buffer) => {
    buf += c.toString();
    if (buf.includes('__done__') && waiter) {
      buf = '';
      const w = waiter;
      waiter = null;
      w();
    }
  });
  return {
    run: (lines) =>
      new Promise((resolve) => {
        waiter = resolve;
        proc.stdin.write(`${lines.join('\n')}\necho __done__\n`);
      }),
    close: () =>
      new Promise((resolve) => {
        if (proc.exitCode !== null) {
          resolve();
          return;
        }
        proc.once('exit', () => resolve());
        proc.stdin.end('quit\n');
      }),
  };
}

/** A target name of our own: libvirt drops a `vnet*` one it did not make (left with no host device, no `network` entry). */
function domainXml(i: number, uuid: string): string {
  const mac = `52:54:01:${((i >> 16) & 0xff).toString(16).padStart(2, '0')}:${((i >> 8) & 0xff).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`;
  return `<domain type='test'><name>bench-${i}</name><uuid>${uuid}</uuid><memory>65536</memory><vcpu>1</vcpu><os><type>hvm</type></os>
<devices><interface type='bridge'><source bridge='br-bench'/><mac address='${mac}'/><target dev='bn${i}'/><model type='virtio'/></interface></devices></domain>`;
}

interface Measured {
  selfMs: number;
  libvirtdMs: number;
}

async function measureIntervals(libvirtdPid: number, inv: LibvirtInventory, intervals: number): Promise<Measured> {
  await inv.settled();
  const s0 = selfCpuMs();
  const l0 = cpuMsOf(libvirtdPid);
  await sleep(intervals * INTERVAL_MS + INTERVAL_MS / 2);
  await inv.settled();
  return { selfMs: selfCpuMs() - s0, libvirtdMs: cpuMsOf(libvirtdPid) - l0 };
}

interface CallFigures {
  calls: number;
  p50: number;
  p99: number;
  max: number;
  over5: number;
}

function callFigures(lat: number[]): CallFigures {
  const sorted = [...lat].sort((a, b) => a - b);
  const pct = (p: number): number => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
  return {
    calls: sorted.length,
    p50: pct(0.5),
    p99: pct(0.99),
    max: sorted[sorted.length - 1]!,
    over5: sorted.filter((v) => v > 5).length,
  };
}

interface NetworkOnly {
  vmId: string;
  network: Record<string, { rx: string; sampleTime: number }>;
}

/** A daemon (built `main`) in libvirt mode on URI, once it lists `expect` VMs. */
async function startLibvirtDaemon(
  main: string,
  uri: string,
  channelsDir: string,
  expect: number,
  timelineFile?: string,
): Promise<BenchDaemon> {
  const d = await startDaemon(
    [
      '--listen',
      '127.0.0.1:0',
      '--channels-dir',
      channelsDir,
      '--qga-via',
      'libvirt',
      '--libvirt-uri',
      uri,
      '--qga-poll-interval',
      String(INTERVAL_MS / 1000),
    ],
    timelineFile ? { BENCH_TIMELINE_FILE: timelineFile } : {},
    [
      ...(timelineFile ? ['--import', 'tsx', '--import', TIMELINE_PROBE] : []),
      ...(PROF_DIR ? ['--cpu-prof', '--cpu-prof-dir', PROF_DIR] : []),
    ],
    main,
  );
  const c = await RpcClient.connect(d.url);
  try {
    const t0 = performance.now();
    for (;;) {
      const all = await c.call<NetworkOnly[]>('Host.getAllVmStats');
      if (all.length >= expect) return d;
      if (performance.now() - t0 > 120_000) throw new Error(`${main}: ${all.length} of ${expect} VMs after 120 s`);
      await sleep(200);
    }
  } finally {
    await c.close();
  }
}

/**
 * From each daemon's timeline (bench/callTimeline.ts) over the calls' window: how long it took
 * from a request's arrival to its reply, and its event-loop stalls over 3 ms with how much of each
 * was its own CPU (busy) rather than waiting for one.
 */
function printTimelines(files: string[], [from, to]: [number, number]): void {
  const origin = performance.timeOrigin;
  for (const [i, f] of files.entries()) {
    const t = JSON.parse(readFileSync(f, 'utf8')) as Timeline;
    const inWindow = (at: number): boolean => at >= origin + from && at <= origin + to;
    const build = t.calls
      .filter((c) => inWindow(c.rx))
      .map((c) => c.tx - c.rx)
      .sort((a, b) => a - b);
    const stalls = t.stalls.filter((s) => inWindow(s.at) && s.ms > 3);
    const busy = stalls.filter((s) => (s.cpuMs ?? 0) > s.ms / 2);
    const gcs = t.gc.filter((g) => inWindow(g.at) && g.ms > 1);
    console.log(
      `${i ? 'old' : 'ours'}: request -> reply handed to ws p50/p99/max ${[0.5, 0.99].map((p) => build[Math.floor(p * build.length)]!.toFixed(2)).join(' / ')} / ${build[build.length - 1]!.toFixed(2)} ms; ` +
        `${stalls.length} event-loop stalls > 3 ms (${busy.length} mostly own CPU; longest ${Math.max(0, ...stalls.map((s) => s.ms)).toFixed(1)} ms), ${gcs.length} GCs > 1 ms (longest ${Math.max(0, ...gcs.map((g) => g.ms)).toFixed(1)} ms)`,
    );
  }
}

/** How many VMs' counters (rx of any vNIC) differ between two replies. */
function countersMoved(a: NetworkOnly[], b: NetworkOnly[]): number {
  const before = new Map(a.map((v) => [v.vmId, JSON.stringify(Object.values(v.network).map((n) => n.rx))]));
  return b.filter((v) => {
    const was = before.get(v.vmId);
    return was !== undefined && was !== JSON.stringify(Object.values(v.network).map((n) => n.rx));
  }).length;
}

/**
 * Host.getAllVmStats on today's daemon and the old one, both in libvirt mode on the same domains
 * (each samples every interval), called in turn; then each one's CPU per VM per interval, idle.
 */
async function statsCalls(libvirtdPid: number, work: string, expect: number): Promise<void> {
  const dir = mkdtempSync(path.join(work, 'channels-'));
  const oldMain = oldDaemonMain(OLD_REF);
  const daemons: BenchDaemon[] = [];
  const callers: LeanCaller[] = [];
  const proxySocket = path.join(work, 'counters-proxy.sock');
  const proxy = spawn(process.execPath, ['--import', 'tsx', COUNTERS_PROXY, proxySocket, LIBVIRT_SOCKET], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    await new Promise<void>((resolve, reject) => {
      proxy.stdout.once('data', () => resolve());
      proxy.once('exit', (code) => reject(new Error(`counters proxy exited with ${code}`)));
    });
    const uri = `${URI}?socket=${proxySocket}`;
    const timelines = TIMELINE_DIR ? ['ours', 'old'].map((w) => path.join(TIMELINE_DIR, `libvirt-${w}.json`)) : [];
    daemons.push(await startLibvirtDaemon(DAEMON, uri, dir, expect, timelines[0]));
    daemons.push(await startLibvirtDaemon(oldMain, uri, dir, expect, timelines[1]));
    const [ours, old] = daemons as [BenchDaemon, BenchDaemon];

    // The premise: one interval apart, every VM's counters have moved (the test driver's count on).
    const probe = await RpcClient.connect(ours.url);
    const first = await probe.call<NetworkOnly[]>('Host.getAllVmStats');
    await sleep(INTERVAL_MS * 1.5);
    const second = await probe.call<NetworkOnly[]>('Host.getAllVmStats');
    await probe.close();
    const moved = countersMoved(first, second);

    // Idle: both daemons sampling, nobody calling for over a minute (ours then no longer
    // serialises samples ahead: that is only while someone asks).
    await sleep(SERIALISE_AHEAD_WHILE_ASKED_MS + INTERVAL_MS);
    const pids = [ours.pid, old.pid];
    const c0 = pids.map(cpuMsOf);
    const l0 = cpuMsOf(libvirtdPid);
    await sleep(INTERVALS * INTERVAL_MS);
    const idle = pids.map((p, i) => cpuMsOf(p) - c0[i]!);
    const idleLibvirtd = cpuMsOf(libvirtdPid) - l0;

    // Calls: one to each daemon in turn (order alternating), then 0-10 ms apart, over CALL_INTERVALS.
    callers.push(await LeanCaller.open(ours.url), await LeanCaller.open(old.url));
    // The engine's cadence: one call every 3 intervals (its 15 s poll against 5 s samples).
    const cadence = Math.max(3, INTERVALS - (INTERVALS % 3));
    const e0 = pids.map(cpuMsOf);
    for (let k = 0; k < cadence / 3; k++) {
      await sleep(3 * INTERVAL_MS);
      for (const c of callers) await c.call('Host.getAllVmStats');
    }
    const engine = pids.map((p, i) => cpuMsOf(p) - e0[i]!);
    for (const c of callers) for (let i = 0; i < 10; i++) await c.call('Host.getAllVmStats');
    const lat: [number[], number[]] = [[], []];
    const bytes = [0, 0];
    const end = performance.now() + CALL_INTERVALS * INTERVAL_MS;
    for (let k = 0; performance.now() < end; k++) {
      for (const i of k % 2 ? [0, 1] : [1, 0]) {
        const s = performance.now();
        bytes[i] = await callers[i]!.call('Host.getAllVmStats');
        lat[i]!.push(performance.now() - s);
      }
      await sleep(Math.random() * 10);
    }
    const [fo, fd] = lat.map(callFigures) as [CallFigures, CallFigures];
    const perVm = (ms: number): number => (ms * 1000) / (expect * INTERVALS);
    const ratio = (a: number, b: number): string => (b === 0 ? '' : (a / b).toFixed(2));
    const row = (
      what: string,
      a: number,
      b: number,
      fmt: (v: number) => string,
      goal = '',
    ): Record<string, string> => ({
      what,
      ours: fmt(a),
      [`old (${OLD_REF})`]: fmt(b),
      'ours/old': ratio(a, b),
      goal,
    });
    const ms = (v: number): string => v.toFixed(2);
    console.log(
      `\nHost.getAllVmStats in libvirt mode: ${expect} VMs from ${URI}, vNIC counters sampled every ${INTERVAL_MS} ms ` +
        `(${moved} of ${second.length} VMs' counters moved between two calls ${INTERVAL_MS * 1.5} ms apart); ` +
        `${fo.calls} + ${fd.calls} calls in turn over ${CALL_INTERVALS} intervals, 0-10 ms apart; reply ${Math.round(bytes[0]! / 1024)} / ${Math.round(bytes[1]! / 1024)} KiB`,
    );
    console.table([
      row('Host.getAllVmStats p50 ms', fo.p50, fd.p50, ms),
      row('Host.getAllVmStats p99 ms', fo.p99, fd.p99, ms, '< 5 ms'),
      row('Host.getAllVmStats max ms', fo.max, fd.max, ms),
      row('calls over 5 ms', fo.over5, fd.over5, String),
      row(
        `daemon CPU µs/VM/interval, no call for a minute (${INTERVALS} intervals)`,
        perVm(idle[0]!),
        perVm(idle[1]!),
        (v) => v.toFixed(1),
      ),
      row(
        `daemon CPU µs/VM/interval, a call every 3 intervals (${cadence} intervals)`,
        (engine[0]! * 1000) / (expect * cadence),
        (engine[1]! * 1000) / (expect * cadence),
        (v) => v.toFixed(1),
      ),
    ]);
    console.log(
      `libvirtd CPU over the no-calls window, serving both daemons: ${perVm(idleLibvirtd).toFixed(1)} µs/VM/interval`,
    );
    for (const c of callers.splice(0)) c.close();
    await Promise.all(daemons.splice(0).map((d) => d.stop()));
    if (timelines.length) printTimelines(timelines, [end - CALL_INTERVALS * INTERVAL_MS, end]);
  } finally {
    for (const c of callers) c.close();
    await Promise.all(daemons.map((d) => d.stop()));
    proxy.kill('SIGTERM');
  }
}

export async function run(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.log('skipped: needs root (starts libvirtd)');
    return;
  }
  try {
    await exec('sh', ['-c', 'command -v libvirtd && command -v virsh']);
  } catch {
    console.log('skipped: needs libvirtd and virsh (scripts/setup-test-host.sh)');
    return;
  }
  const lv = new Libvirtd();
  const work = mkdtempSync(path.join(os.tmpdir(), 'vdsm-bench-libvirt-'));
  const log = pino({ level: 'silent' });
  const clients: LibvirtClient[] = [];
  const invs: LibvirtInventory[] = [];
  const session = { close: (): Promise<void> => Promise.resolve() };
  try {
    await lv.start();
    const libvirtdPid = Number((await exec('pgrep', ['-n', '-x', 'libvirtd'])).stdout.trim());
    // The test driver's default state lives while a connection holds it: this client holds it.
    const holder = new LibvirtClient({ uri: URI, log, connections: 1, events: false });
    clients.push(holder);
    await holder.start();
    if (holder.state !== 'up') throw new Error(`libvirtd does not serve ${URI}`);
    const virsh = virshSession();
    session.close = virsh.close;
    const lines: string[] = [];
    for (let i = 0; i < DOMAINS; i++) {
      const f = path.join(work, `d${i}.xml`);
      writeFileSync(f, domainXml(i, randomUUID()));
      lines.push(`create ${f}`);
    }
    const tc = performance.now();
    for (let i = 0; i < lines.length; i += 200) await virsh.run(lines.slice(i, i + 200));
    const createMs = performance.now() - tc;

    const start = async (
      counters: 'bulk' | 'one-per-domain',
    ): Promise<{ inv: LibvirtInventory; reg: VmRegistry; listMs: number; stop: () => void }> => {
      const client = new LibvirtClient({ uri: URI, log });
      clients.push(client);
      const reg = new VmRegistry();
      const inv = new LibvirtInventory({
        client,
        registry: reg,
        log,
        intervalMs: INTERVAL_MS,
        clock: () => reg.now(),
        counters,
      });
      invs.push(inv);
      const t0 = performance.now();
      inv.start();
      await client.start();
      await inv.settled();
      const stop = (): void => {
        inv.stop();
        client.stop(); // its events would otherwise be decoded during the next way's window
      };
      return { inv, reg, listMs: performance.now() - t0, stop };
    };
    console.log(
      `${DOMAINS} domains (+ the test driver's own) on ${URI}, created in ${(createMs / 1000).toFixed(1)} s through one virsh session; interval ${INTERVAL_MS} ms`,
    );
    const perVm = (ms: number): string => ((ms * 1000) / (DOMAINS * INTERVALS)).toFixed(1);
    if (PARTS.has('counters')) {
      // Idle: libvirtd and this process with the domains present and no inventory.
      const base = await (async () => {
        const s0 = selfCpuMs();
        const l0 = cpuMsOf(libvirtdPid);
        await sleep(INTERVALS * INTERVAL_MS);
        return { selfMs: selfCpuMs() - s0, libvirtdMs: cpuMsOf(libvirtdPid) - l0 };
      })();
      const bulk = await start('bulk');
      const bulkCost = await measureIntervals(libvirtdPid, bulk.inv, INTERVALS);
      bulk.stop();
      const per = await start('one-per-domain');
      const perCost = await measureIntervals(libvirtdPid, per.inv, INTERVALS);
      per.stop();
      const row = (
        way: string,
        listMs: number | '',
        listed: number | '',
        cost: Measured,
        calls: number,
      ): Record<string, unknown> => ({
        way,
        'start -> all listed ms': listMs === '' ? '' : Math.round(listMs),
        'VMs listed': listed,
        'our CPU µs/VM/interval': perVm(cost.selfMs),
        'libvirtd CPU µs/VM/interval': perVm(cost.libvirtdMs),
        'calls/interval': calls,
      });
      console.log(`${bulk.reg.size} active domains, ${INTERVALS} intervals per way`);
      console.table([
        row('bulk: 1 CONNECT_GET_ALL_DOMAIN_STATS per interval (daemon)', bulk.listMs, bulk.reg.size, bulkCost, 1),
        row('per domain: 1 DOMAIN_INTERFACE_STATS per vNIC per interval', per.listMs, per.reg.size, perCost, DOMAINS),
        row('idle: domains present, no inventory (for comparison)', '', '', base, 0),
        {
          way: 'ratio per-domain / bulk',
          'start -> all listed ms': '',
          'VMs listed': '',
          'our CPU µs/VM/interval': (perCost.selfMs / bulkCost.selfMs).toFixed(1) + 'x',
          'libvirtd CPU µs/VM/interval': (perCost.libvirtdMs / bulkCost.libvirtdMs).toFixed(1) + 'x',
          'calls/interval': '',
        },
      ]);
      console.log(
        `per VM per interval = CPU over the ${INTERVALS} intervals / (VMs x intervals); the test driver makes its counters up (QEMU's come from /proc/net/dev)`,
      );
    }

    if (PARTS.has('calls')) await statsCalls(libvirtdPid, work, DOMAINS + 1);

    if (PARTS.has('lifecycle')) {
      // Lifecycle at scale: every domain suspended; time until the registry has them all Paused.
      const ev = await start('bulk');
      let paused = 0;
      ev.reg.onChange((ch) => {
        if (ch.stats.status === 'Paused') paused++;
      });
      const te = performance.now();
      const s0 = selfCpuMs();
      const l0 = cpuMsOf(libvirtdPid);
      await virsh.run(Array.from({ length: DOMAINS }, (_, i) => `suspend bench-${i}`));
      while (paused < DOMAINS && performance.now() - te < 120_000) await sleep(20);
      const eventMs = performance.now() - te;
      const evSelf = selfCpuMs() - s0;
      const evLibvirtd = cpuMsOf(libvirtdPid) - l0;
      ev.stop();
      console.log(
        `\nlifecycle: ${DOMAINS} virsh suspend -> ${paused} VMs Paused from libvirt's events in ${(eventMs / 1000).toFixed(2)} s; ` +
          `our CPU ${((evSelf * 1000) / DOMAINS).toFixed(0)} µs per event, libvirtd ${((evLibvirtd * 1000) / DOMAINS).toFixed(0)} µs per suspend (with the virsh session's calls)`,
      );
    }
  } finally {
    for (const i of invs) i.stop();
    await session.close();
    for (const c of clients) c.stop();
    await lv.stop();
    rmSync(work, { recursive: true, force: true });
  }
}
