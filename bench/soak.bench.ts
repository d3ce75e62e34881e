// Soak: 200 simulated VMs (half oVirt agent, half qemu-ga) with churn (every second a VM's
// sockets go and come back, or an agent restarts; a fifth of the guests change addresses), 10
// clients calling Host.getAllVmStats / VM.getStats / Host.ping2 in a loop, two of them
// subscribed to events. Every 30 s: daemon RSS (/proc) and V8 heap used after a full GC (over
// the inspector). Heap snapshots at 5 min and at the end, compared by constructor: what grew.
// Runs only when named (`npm run bench -- soak`). SOAK_MINUTES (default 30) sets the length;
// SOAK_SNAPSHOT_DIR keeps the snapshots (default: a temp dir, removed).
import { createWriteStream, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { WebSocket } from 'ws';
import { RpcClient } from '../src/client/rpcClient.js';
import { GuestSimulator } from '../src/sim/simulator.js';
import { generateGuests } from '../src/sim/guest.js';
import { startDaemon } from './daemonProcess.js';

const MINUTES = Number(process.env.SOAK_MINUTES ?? 30);
const VMS = 200;
const CLIENTS = 10;
const SAMPLE_MS = 30_000;
const FIRST_SNAPSHOT_MS = Math.min(5 * 60_000, (MINUTES * 60_000) / 2);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const memMiB = (pid: number, field: 'VmRSS' | 'VmHWM'): number =>
  Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;
const fdCount = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length;

/** A minimal Chrome DevTools Protocol session over the daemon's --inspect port. */
class Inspector {
  private id = 0;
  private readonly waiting = new Map<number, (r: Record<string, unknown>) => void>();
  private chunkSink: ((s: string) => void) | null = null;
  private constructor(private readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      const m = JSON.parse(data.toString()) as {
        id?: number;
        method?: string;
        result?: Record<string, unknown>;
        params?: { chunk?: string };
      };
      if (m.method === 'HeapProfiler.addHeapSnapshotChunk') this.chunkSink?.(m.params?.chunk ?? '');
      else if (m.id !== undefined) {
        this.waiting.get(m.id)?.(m.result ?? {});
        this.waiting.delete(m.id);
      }
    });
  }
  static async open(port: number): Promise<Inspector> {
    const list = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as {
      webSocketDebuggerUrl: string;
    }[];
    const ws = new WebSocket(list[0]!.webSocketDebuggerUrl, { maxPayload: 1 << 30 });
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    return new Inspector(ws);
  }
  call(method: string, params: object = {}): Promise<Record<string, unknown>> {
    const id = ++this.id;
    this.ws.send(JSON.stringify({ id, method, params }));
    return new Promise((resolve) => this.waiting.set(id, resolve));
  }
  async heapUsedMiB(): Promise<number> {
    await this.call('HeapProfiler.collectGarbage');
    const r = await this.call('Runtime.getHeapUsage');
    return Number(r.usedSize) / 2 ** 20;
  }
  async snapshot(file: string): Promise<void> {
    await this.call('HeapProfiler.collectGarbage');
    const out = createWriteStream(file);
    this.chunkSink = (c) => out.write(c);
    await this.call('HeapProfiler.takeHeapSnapshot', { reportProgress: false });
    this.chunkSink = null;
    await new Promise<void>((resolve) => out.end(resolve));
  }
  close(): void {
    this.ws.close();
  }
}

/** count and self size per constructor (objects) or per node type (strings, closures, ...). */
function byConstructor(file: string): Map<string, { count: number; size: number }> {
  const snap = JSON.parse(readFileSync(file, 'utf8')) as {
    snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
    nodes: number[];
    strings: string[];
  };
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const [T, N, S] = [fields.indexOf('type'), fields.indexOf('name'), fields.indexOf('self_size')];
  const out = new Map<string, { count: number; size: number }>();
  for (let i = 0; i < snap.nodes.length; i += fields.length) {
    const type = types[snap.nodes[i + T]!]!;
    const key = type === 'object' || type === 'native' ? snap.strings[snap.nodes[i + N]!]! : `(${type})`;
    const e = out.get(key) ?? { count: 0, size: 0 };
    e.count++;
    e.size += snap.nodes[i + S]!;
    out.set(key, e);
  }
  return out;
}

async function client(
  url: string,
  ids: string[],
  subscribe: boolean,
  run: { stop: boolean },
  calls: { n: number; errors: number; kinds: Map<string, number> },
): Promise<void> {
  const c = await RpcClient.connect(url);
  if (subscribe) await c.call('Host.subscribeEvents');
  let k = 0;
  while (!run.stop) {
    try {
      const which = k++ % 3;
      if (which === 0) await c.call('Host.getAllVmStats');
      else if (which === 1) await c.call('VM.getStats', { vmID: ids[k % ids.length] });
      else await c.call('Host.ping2');
    } catch (err) {
      calls.errors++; // "no such VM" for a VM that is away at the moment
      const what = (err as Error).message.slice(0, 60);
      calls.kinds.set(what, (calls.kinds.get(what) ?? 0) + 1);
    }
    calls.n++;
    c.notifications.length = 0;
    await sleep(20);
  }
  await c.close();
}

export async function run(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vdsm-agentd-soak-'));
  const snapDir = process.env.SOAK_SNAPSHOT_DIR ?? mkdtempSync(path.join(os.tmpdir(), 'vdsm-agentd-soak-snap-'));
  const sim = new GuestSimulator({ dir, heartbeatMs: 5000, networkMs: 120_000 });
  const guests = generateGuests(VMS, {
    qemuShare: 0.5,
    changingShare: 0.2,
    changeEveryMs: 10_000,
    idPrefix: '50a40000',
  });
  await sim.addAll(guests);
  const port = 9300 + Math.floor(Math.random() * 500);
  const d = await startDaemon(['--listen', '127.0.0.1:0', '--channels-dir', dir, '--qga-poll-interval', '2'], {}, [
    `--inspect=127.0.0.1:${port}`,
  ]);
  const insp = await Inspector.open(port);
  // Warnings and errors the daemon logs during the soak are part of its result.
  const problems = new Map<string, number>();
  d.proc.stdout?.on('data', (b: Buffer) => {
    for (const l of b.toString().split('\n')) {
      const m = /"level":(\d+).*"msg":"([^"]*)"/.exec(l);
      if (m && Number(m[1]) >= 40) problems.set(m[2]!, (problems.get(m[2]!) ?? 0) + 1);
      if (process.env.SOAK_TRACE && l.includes('too slow')) console.log(l);
    }
  });
  const runFlag = { stop: false };
  const calls = { n: 0, errors: 0, kinds: new Map<string, number>() };
  const ids = guests.map((g) => g.vmId);
  const clients = Array.from({ length: CLIENTS }, (_, i) => client(d.url, ids, i < 2, runFlag, calls));
  let removals = 0;
  let restarts = 0;
  const churn = (async () => {
    let k = 0;
    while (!runFlag.stop) {
      await sleep(1000);
      const id = ids[(k * 37) % ids.length]!;
      if (k++ % 2 === 0) {
        const g = sim.guest(id);
        if (g) {
          await sim.remove(id);
          removals++;
          await sleep(200);
          await sim.add(g);
        }
      } else {
        sim.restartAgent(id, 1500);
        restarts++;
      }
    }
  })();

  const started = Date.now();
  const rows: Record<string, string | number>[] = [];
  const sample = async (): Promise<void> => {
    rows.push({
      minute: ((Date.now() - started) / 60_000).toFixed(1),
      'RSS MiB': memMiB(d.pid, 'VmRSS').toFixed(1),
      'heap used after GC MiB': (await insp.heapUsedMiB()).toFixed(2),
      fds: fdCount(d.pid),
      calls: calls.n,
    });
    console.log(JSON.stringify(rows.at(-1)));
  };
  const snapA = path.join(snapDir, 'soak-early.heapsnapshot');
  const snapB = path.join(snapDir, 'soak-end.heapsnapshot');
  let snappedA = false;
  await sample();
  while (Date.now() - started < MINUTES * 60_000) {
    await sleep(Math.min(SAMPLE_MS, MINUTES * 60_000 - (Date.now() - started)));
    await sample();
    if (!snappedA && Date.now() - started >= FIRST_SNAPSHOT_MS) {
      await insp.snapshot(snapA);
      snappedA = true;
    }
  }
  await insp.snapshot(snapB);
  runFlag.stop = true;
  await Promise.all([...clients, churn]);
  insp.close();
  await d.stop();
  await sim.close();
  rmSync(dir, { recursive: true, force: true });

  console.log(
    `soak: ${VMS} VMs, ${CLIENTS} clients, ${MINUTES} min; ${calls.n} calls (${calls.errors} errors: VMs away), ${removals} socket removals, ${restarts} agent restarts`,
  );
  console.table(rows);
  console.log('call errors by kind:', JSON.stringify([...calls.kinds]));
  console.log('daemon warnings by message:', JSON.stringify([...problems]));
  const a = byConstructor(snapA);
  const b = byConstructor(snapB);
  const diff = [...new Set([...a.keys(), ...b.keys()])]
    .map((k) => ({
      k,
      dCount: (b.get(k)?.count ?? 0) - (a.get(k)?.count ?? 0),
      dSize: (b.get(k)?.size ?? 0) - (a.get(k)?.size ?? 0),
      size: b.get(k)?.size ?? 0,
    }))
    .sort((x, y) => Math.abs(y.dSize) - Math.abs(x.dSize))
    .slice(0, 15);
  const total = (m: Map<string, { count: number; size: number }>): number =>
    [...m.values()].reduce((s, e) => s + e.size, 0);
  console.log(
    `heap snapshots (${(FIRST_SNAPSHOT_MS / 60_000).toFixed(1)} min vs end): ${(total(a) / 2 ** 20).toFixed(2)} MiB -> ${(total(b) / 2 ** 20).toFixed(2)} MiB; largest changes by constructor:`,
  );
  console.table(
    Object.fromEntries(
      diff.map((e) => [e.k, { 'count change': e.dCount, 'bytes change': e.dSize, 'bytes at end': e.size }]),
    ),
  );
  if (!process.env.SOAK_SNAPSHOT_DIR) rmSync(snapDir, { recursive: true, force: true });
}
