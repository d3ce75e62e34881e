// Backpressure: one client pipelines 100,000 Host.ping2 requests back to back (all written at
// once) while a second connection makes sequential Host.ping2 calls. Side by side in one run:
// - the daemon with its default --max-in-flight (256: reading pauses at the limit) and one with
//   the limit set far above the load (reads everything at once, as if there were no limit);
// - over WebSocket and over raw STOMP;
// - the other connection's ping2 p50/p99 while nothing else runs and during the flood.
// Figures: every answer checked (id and result), time and rate for the 100,000, the daemon's
// peak RSS (VmHWM) against its RSS before the flood. BENCH_PIPELINED sets the count. The flood
// runs in a process of its own (pipelineFlood.ts), so its client work does not delay the
// other connection's calls.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { RpcClient } from '../src/client/rpcClient.js';
import { startDaemon, type BenchDaemon } from './daemonProcess.js';
import type { Flood } from './pipelineFlood.js';

const N = Number(process.env.BENCH_PIPELINED ?? 100_000);

const memMiB = (pid: number, field: 'VmRSS' | 'VmHWM'): number =>
  Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
const pct = (sorted: number[], p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;

type Transport = 'WebSocket' | 'raw STOMP';

function floodInProcess(transport: Transport, url: string): Promise<Flood> {
  const script = fileURLToPath(new URL('./pipelineFlood.ts', import.meta.url));
  const proc = spawn(process.execPath, ['--import', 'tsx', script, transport, url, String(N)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((resolve, reject) =>
    proc.once('exit', (code) =>
      code === 0 ? resolve(JSON.parse(out) as Flood) : reject(new Error(`flood client exited with ${code}`)),
    ),
  );
}

/** Sequential Host.ping2 on its own connection until `until` settles; latencies in ms. */
async function pingAlongside(url: string, until: Promise<unknown>): Promise<number[]> {
  const c = await RpcClient.connect(url);
  const state = { over: false };
  const over = (): void => {
    state.over = true;
  };
  until.then(over, over);
  const lat: number[] = [];
  while (!state.over) {
    const s = performance.now();
    await c.call('Host.ping2');
    lat.push(performance.now() - s);
  }
  await c.close();
  return lat.sort((a, b) => a - b);
}

async function quietPings(url: string, n: number): Promise<number[]> {
  const c = await RpcClient.connect(url);
  const lat: number[] = [];
  for (let i = 0; i < n; i++) {
    const s = performance.now();
    await c.call('Host.ping2');
    lat.push(performance.now() - s);
  }
  await c.close();
  return lat.sort((a, b) => a - b);
}

interface Row {
  what: string;
  [column: string]: string;
}

export async function run(): Promise<void> {
  const daemons: BenchDaemon[] = [];
  try {
    const args = ['--listen', '127.0.0.1:0', '--channels-dir', '/nonexistent-vdsm-agentd'];
    const configs: [string, string[]][] = [
      ['limit 256 (default)', []],
      [`limit ${N * 2} (no pause)`, ['--max-in-flight', String(N * 2)]],
    ];
    const rows: Row[] = [];
    for (const transport of ['WebSocket', 'raw STOMP'] as const) {
      const cols: Record<string, Flood & { rssBefore: number; rssPeak: number; quiet: number[]; busy: number[] }> = {};
      for (const [name, extra] of configs) {
        // A fresh daemon per run: its peak RSS is this flood's.
        const d = await startDaemon([...args, ...extra]);
        daemons.push(d);
        const quiet = await quietPings(d.url, 2000);
        const rssBefore = memMiB(d.pid, 'VmRSS');
        const flooding = floodInProcess(transport, d.url);
        const busy = await pingAlongside(d.url, flooding);
        const f = await flooding;
        cols[name] = { ...f, rssBefore, rssPeak: memMiB(d.pid, 'VmHWM'), quiet, busy };
        await d.stop();
      }
      const col = (fn: (c: (typeof cols)[string]) => string): Record<string, string> =>
        Object.fromEntries(Object.entries(cols).map(([k, v]) => [k, fn(v)]));
      rows.push(
        { what: `${transport}: ${N} pipelined, answered ok / wrong`, ...col((c) => `${c.answered} / ${c.wrong}`) },
        {
          what: `${transport}: time s (requests/s)`,
          ...col((c) => `${c.seconds.toFixed(2)} (${Math.round(N / c.seconds)})`),
        },
        {
          what: `${transport}: daemon RSS MiB before / peak`,
          ...col((c) => `${c.rssBefore.toFixed(0)} / ${c.rssPeak.toFixed(0)}`),
        },
        {
          what: `${transport}: other conn ping2 p50/p99 ms, quiet`,
          ...col((c) => `${pct(c.quiet, 0.5).toFixed(2)} / ${pct(c.quiet, 0.99).toFixed(2)}`),
        },
        {
          what: `${transport}: other conn ping2 p50/p99 ms, during flood`,
          ...col((c) => `${pct(c.busy, 0.5).toFixed(2)} / ${pct(c.busy, 0.99).toFixed(2)} (${c.busy.length} calls)`),
        },
      );
    }
    console.log(
      `${N} Host.ping2 requests written back to back on one connection; another connection calls Host.ping2 sequentially`,
    );
    console.table(rows);
  } finally {
    for (const d of daemons) await d.stop();
  }
}
