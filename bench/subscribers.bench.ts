// What slow event subscribers cost the daemon as a whole: 500 WebSocket clients subscribe to
// events and then never read again, while 100 simulated guests churn (addresses change every
// second, sockets go and come back, agents restart) and one well-behaved client calls
// Host.ping2 every 50 ms and another reads its events. Figures: daemon peak RSS, when each slow
// subscriber was cut off (from the daemon's own log line naming it), ping2 latency throughout.
// BENCH_BASELINE_DAEMON=/path/to/dist/main.js runs the same load against that build first (the
// "before" column: e.g. a git worktree of an older commit, built). BENCH_SLOW_SECONDS (default
// 60) is how long each daemon is watched; BENCH_SLOW_CLIENTS (500) and BENCH_GUESTS (100).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'ws';
import { RpcClient } from '../src/client/rpcClient.js';
import { GuestSimulator } from '../src/sim/simulator.js';
import { generateGuests } from '../src/sim/guest.js';
import { startDaemon, type BenchDaemon } from './daemonProcess.js';

const SECONDS = Number(process.env.BENCH_SLOW_SECONDS ?? 60);
const SLOW = Number(process.env.BENCH_SLOW_CLIENTS ?? 500);
const GUESTS = Number(process.env.BENCH_GUESTS ?? 100);
const BASELINE = process.env.BENCH_BASELINE_DAEMON;
const CURRENT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../dist/main.js');

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const pct = (sorted: number[], p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? NaN;
const memMiB = (pid: number, field: 'VmRSS' | 'VmHWM'): number =>
  Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;

interface Figures {
  rssBeforeMiB: number;
  peakRssMiB: number;
  endRssMiB: number;
  cutOff: number;
  cutWithin10s: number;
  cutP50s: number;
  cutMaxS: number;
  pings: number;
  pingP50: number;
  pingP99: number;
  pingMax: number;
  pingTimeouts: number;
  eventsSeen: number;
  readerCut: boolean;
}

/** Subscribes and then stops reading: the socket is paused, so TCP pushes back on the daemon. */
function slowSubscriber(url: string): Promise<{ ws: WebSocket; localPort: number; pausedAt: number }> {
  const ws = new WebSocket(url);
  ws.on('error', () => {});
  return new Promise((resolve, reject) => {
    ws.once('open', () => {
      ws.send(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'Host.subscribeEvents', params: {} }));
      ws.once('message', () => {
        const sock = (ws as unknown as { _socket: import('node:net').Socket })._socket;
        sock.pause();
        resolve({ ws, localPort: sock.localPort ?? 0, pausedAt: Date.now() });
      });
    });
    ws.once('error', reject);
  });
}

async function measure(label: string, main: string, dir: string, sim: GuestSimulator): Promise<Figures> {
  const d: BenchDaemon = await startDaemon(['--listen', '127.0.0.1:0', '--channels-dir', dir], {}, [], main);
  // Cut-offs as the daemon logs them: the peer names the slow client's port.
  const cutAt = new Map<number, number>();
  let pending = '';
  d.proc.stdout!.on('data', (chunk: Buffer) => {
    pending += chunk.toString();
    const lines = pending.split('\n');
    pending = lines.pop()!;
    for (const line of lines) {
      if (!line.includes('too slow')) continue;
      // The daemon's own time stamp: when it decided, not when this busy process read the line.
      const m = /"peer":"[^"]*:(\d+)"/.exec(line);
      const t = /"time":"([^"]+)"/.exec(line);
      if (m) cutAt.set(Number(m[1]), t ? Date.parse(t[1]!) : Date.now());
    }
  });
  const rssBeforeMiB = memMiB(d.pid, 'VmRSS');
  const ping = await RpcClient.connect(d.url);
  const reader = await RpcClient.connect(d.url);
  let eventsSeen = 0;
  reader.ws.on('message', () => eventsSeen++);
  const readerPort = (reader.ws as unknown as { _socket: import('node:net').Socket })._socket.localPort ?? 0;
  await reader.call('Host.subscribeEvents', {});

  const slow = [];
  for (let i = 0; i < SLOW; i += 50)
    slow.push(...(await Promise.all(Array.from({ length: Math.min(50, SLOW - i) }, () => slowSubscriber(d.url)))));
  const started = Date.now();
  console.log(`${label}: ${slow.length} slow subscribers connected`);

  const latencies: number[] = [];
  let timeouts = 0;
  const run = { stop: false };
  const pinger = (async () => {
    while (!run.stop) {
      const t0 = performance.now();
      const r = await Promise.race([ping.call('Host.ping2').then(() => 'ok'), sleep(5000).then(() => 'timeout')]);
      if (r === 'timeout') timeouts++;
      else {
        latencies.push(performance.now() - t0);
        if (process.env.BENCH_SLOW_TRACE && performance.now() - t0 > 30)
          console.log(
            `slow ping ${(performance.now() - t0).toFixed(0)} ms at ${((Date.now() - started) / 1000).toFixed(1)} s`,
          );
      }
      await sleep(50);
    }
  })();
  let peak = 0;
  let churnN = 0;
  const ids = sim.vmIds();
  while (Date.now() - started < SECONDS * 1000) {
    await sleep(500);
    peak = Math.max(peak, memMiB(d.pid, 'VmRSS'));
    // Churn on top of the guests' own address changes: a VM goes and comes back, an agent restarts.
    const id = ids[churnN++ % ids.length]!;
    if (churnN % 4 === 0) {
      const g = sim.guest(id)!;
      await sim.remove(id);
      await sim.add(g);
    } else if (churnN % 4 === 2) sim.restartAgent(ids[(churnN * 7) % ids.length]!, 1000);
  }
  run.stop = true;
  await pinger;
  const cutTimes = slow
    .filter((s) => cutAt.has(s.localPort))
    .map((s) => (cutAt.get(s.localPort)! - s.pausedAt) / 1000)
    .sort((a, b) => a - b);
  const sorted = latencies.sort((a, b) => a - b);
  const f: Figures = {
    rssBeforeMiB,
    peakRssMiB: Math.max(peak, memMiB(d.pid, 'VmHWM')),
    endRssMiB: memMiB(d.pid, 'VmRSS'),
    cutOff: cutTimes.length,
    cutWithin10s: cutTimes.filter((t) => t <= 10).length,
    cutP50s: pct(cutTimes, 0.5),
    cutMaxS: cutTimes.at(-1) ?? NaN,
    pings: sorted.length,
    pingP50: pct(sorted, 0.5),
    pingP99: pct(sorted, 0.99),
    pingMax: sorted.at(-1) ?? NaN,
    pingTimeouts: timeouts,
    eventsSeen,
    readerCut: cutAt.has(readerPort),
  };
  for (const s of slow) s.ws.terminate();
  await ping.close();
  await reader.close();
  await d.stop();
  console.log(`${label}: done`);
  return f;
}

export async function run(): Promise<void> {
  // A stalled client's socket reset by the daemon may surface outside ws's own error handling
  // (its listeners are gone once it closed): that is the expected end of such a client.
  const onReset = (err: NodeJS.ErrnoException): void => {
    if (err.code !== 'ECONNRESET' && err.code !== 'EPIPE') throw err;
  };
  process.on('uncaughtException', onReset);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vdsm-agentd-bench-slow-'));
  const sim = new GuestSimulator({ dir, heartbeatMs: 5000, networkMs: 120_000 });
  try {
    await sim.addAll(
      generateGuests(GUESTS, { qemuShare: 0, changingShare: 1, changeEveryMs: 1000, idPrefix: '5104ead0' }),
    );
    const results: [string, Figures][] = [];
    if (BASELINE) results.push(['before', await measure('before', path.resolve(BASELINE), dir, sim)]);
    results.push(['after', await measure('after', CURRENT, dir, sim)]);
    const rows: Record<string, Record<string, string>> = {};
    const add = (name: string, fmt: (f: Figures) => string): void => {
      rows[name] = Object.fromEntries(results.map(([l, f]) => [l, fmt(f)]));
    };
    add('daemon RSS before the load (MiB)', (f) => f.rssBeforeMiB.toFixed(0));
    add('daemon peak RSS (MiB)', (f) => f.peakRssMiB.toFixed(0));
    add(`daemon RSS at the end, ${SECONDS} s (MiB)`, (f) => f.endRssMiB.toFixed(0));
    add(`slow subscribers cut off (of ${SLOW})`, (f) => String(f.cutOff));
    add('  of them within 10 s', (f) => String(f.cutWithin10s));
    add('  time to cut-off p50 / max (s)', (f) => `${f.cutP50s.toFixed(1)} / ${f.cutMaxS.toFixed(1)}`);
    add('ping2 calls answered', (f) => String(f.pings));
    add(
      'ping2 p50 / p99 / max (ms)',
      (f) => `${f.pingP50.toFixed(1)} / ${f.pingP99.toFixed(1)} / ${f.pingMax.toFixed(0)}`,
    );
    add('ping2 timed out (5 s)', (f) => String(f.pingTimeouts));
    add(
      'events read by the well-behaved subscriber',
      (f) => `${f.eventsSeen}${f.readerCut ? ' (it was cut off!)' : ''}`,
    );
    console.log(`${SLOW} never-reading subscribers, ${GUESTS} churning guests, ${SECONDS} s per daemon`);
    console.table(rows);
  } finally {
    await sim.close();
    rmSync(dir, { recursive: true, force: true });
    process.off('uncaughtException', onReset);
  }
}
