// Where a VM's memory goes (not part of `npm run bench`): the built daemon runs against an empty
// channels directory and against N simulated VMs (half oVirt agent, half qemu-ga, 4 NICs x 4
// addresses), a V8 heap snapshot is taken of each once it has settled (SIGUSR2 with
// --heapsnapshot-signal; a snapshot starts with a full GC), and the difference is printed per VM,
// by constructor, with the RSS and the V8 heap figures beside it.
//   npx tsx bench/heapAccount.ts [VMS] [MAIN_JS]
import { spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GuestSimulator } from '../src/sim/simulator.js';
import { generateGuests } from '../src/sim/guest.js';
import { DAEMON } from './daemonProcess.js';
import { RpcClient } from '../src/client/rpcClient.js';
import type { VmStats } from '../src/wire.js';

const VMS = Number(process.argv[2] ?? 1000);
const MAIN = process.argv[3] ?? DAEMON;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

/** self size by "type:name" (objects by constructor; strings, code, arrays... by type). */
function bySizeClass(file: string): { sizes: Map<string, { bytes: number; count: number }>; total: number } {
  const snap = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const F = fields.length;
  const iType = fields.indexOf('type');
  const iName = fields.indexOf('name');
  const iSize = fields.indexOf('self_size');
  const sizes = new Map<string, { bytes: number; count: number }>();
  let total = 0;
  for (let i = 0; i < snap.nodes.length; i += F) {
    const type = types[snap.nodes[i + iType]!]!;
    const size = snap.nodes[i + iSize]!;
    total += size;
    const name =
      type === 'object' || type === 'closure' || type === 'native'
        ? `${type}:${snap.strings[snap.nodes[i + iName]!]!.slice(0, 60)}`
        : type;
    const e = sizes.get(name) ?? { bytes: 0, count: 0 };
    e.bytes += size;
    e.count++;
    sizes.set(name, e);
  }
  return { sizes, total };
}

async function measure(
  vms: number,
): Promise<{ sizes: Map<string, { bytes: number; count: number }>; total: number; rssMiB: number }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'heap-account-'));
  const cwd = mkdtempSync(path.join(os.tmpdir(), 'heap-account-out-'));
  const sim = new GuestSimulator({ dir });
  try {
    await sim.addAll(generateGuests(vms));
    const proc = spawn(
      process.execPath,
      ['--heapsnapshot-signal=SIGUSR2', MAIN, '--listen', '127.0.0.1:0', '--channels-dir', dir, '--qga-via', 'direct'],
      { cwd, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const url = await new Promise<string>((resolve) => {
      let out = '';
      proc.stdout.on('data', (c: Buffer) => {
        const m = /"url":"([^"]+)"/.exec((out += c.toString()));
        if (m) resolve(m[1]!);
      });
    });
    // Every VM connected and reported (not a guessed time: the machine may be loaded), then a few polls each.
    const c = await RpcClient.connect(url);
    for (;;) {
      const all = await c.call<VmStats[]>('Host.getAllVmStats');
      if (all.length === vms && all.every((v) => v.netIfaces !== null)) break;
      await sleep(200);
    }
    await c.close();
    await sleep(10_000);
    const rssMiB = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${proc.pid}/status`, 'utf8'))![1]) / 1024;
    proc.kill('SIGUSR2');
    let file: string | undefined;
    for (let i = 0; i < 600 && !file; i++) {
      await sleep(200);
      const f = readdirSync(cwd).find((n) => n.endsWith('.heapsnapshot'));
      // Written once the daemon is back to serving: its size stops changing.
      if (f) {
        const size = (): number => readFileSync(path.join(cwd, f)).length;
        const a = size();
        await sleep(1000);
        if (a > 0 && size() === a) file = path.join(cwd, f);
      }
    }
    proc.kill('SIGTERM');
    if (!file) throw new Error('no heap snapshot written');
    if (process.env.HEAP_KEEP) copyFileSync(file, path.join(process.env.HEAP_KEEP, `heap-${vms}.heapsnapshot`));
    return { ...bySizeClass(file), rssMiB };
  } finally {
    await sim.close();
    rmSync(dir, { recursive: true, force: true });
    rmSync(cwd, { recursive: true, force: true });
  }
}

const empty = await measure(0);
const full = await measure(VMS);
const rows = [...full.sizes]
  .map(([name, f]) => {
    const e = empty.sizes.get(name) ?? { bytes: 0, count: 0 };
    return { name, perVmBytes: (f.bytes - e.bytes) / VMS, perVmCount: (f.count - e.count) / VMS };
  })
  .filter((r) => Math.abs(r.perVmBytes) >= 16)
  .sort((a, b) => b.perVmBytes - a.perVmBytes);
console.log(
  `${VMS} VMs: V8 heap ${(empty.total / 2 ** 20).toFixed(1)} -> ${(full.total / 2 ** 20).toFixed(1)} MiB (${((full.total - empty.total) / VMS / 1024).toFixed(2)} KiB per VM); RSS ${empty.rssMiB.toFixed(0)} -> ${full.rssMiB.toFixed(0)} MiB (${(((full.rssMiB - empty.rssMiB) * 1024) / VMS).toFixed(1)} KiB per VM)`,
);
console.table(
  rows.slice(0, 40).map((r) => ({
    'self size of': r.name,
    'bytes per VM': Math.round(r.perVmBytes),
    'objects per VM': r.perVmCount.toFixed(2),
  })),
);
