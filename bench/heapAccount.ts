// Where a VM's memory goes (not part of `npm run bench`): the built daemon runs against an empty
// channels directory and against N/2 and N simulated VMs (half oVirt agent, half qemu-ga, 4 NICs
// x 4 addresses), a V8 heap snapshot is taken of each once it has settled and been asked for
// Host.getAllVmStats (as the engine does every 15 s: the cached replies exist), and the
// difference is printed per VM, by constructor. Per VM is the slope between N/2 and N VMs: what
// does not grow with VMs (JIT code compiled while serving, modules loaded on first use) cancels
// out; "0 -> N" beside it includes it.
//   npx tsx bench/heapAccount.ts [VMS] [MAIN_JS]      HEAP_KEEP=DIR keeps the snapshots
import { spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GuestSimulator } from '../src/sim/simulator.js';
import { generateGuests } from '../src/sim/guest.js';
import { DAEMON } from './daemonProcess.js';
import { RpcClient } from '../src/client/rpcClient.js';
import type { VmStats } from '../src/wire.js';
import { bySizeClass, snapshotNodeArgs, takeHeapSnapshot } from './heapSnapshot.js';

const VMS = Number(process.argv[2] ?? 1000);
const MAIN = process.argv[3] ?? DAEMON;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

type Sizes = Map<string, { bytes: number; count: number }>;

async function measure(vms: number): Promise<{ sizes: Sizes; total: number; rssMiB: number }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'heap-account-'));
  const cwd = mkdtempSync(path.join(os.tmpdir(), 'heap-account-out-'));
  const sim = new GuestSimulator({ dir });
  try {
    await sim.addAll(generateGuests(vms));
    const proc = spawn(
      process.execPath,
      [...snapshotNodeArgs(cwd), MAIN, '--listen', '127.0.0.1:0', '--channels-dir', dir, '--qga-via', 'direct'],
      { cwd, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
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
      await sleep(10_000);
      await c.call('Host.getAllVmStats');
      await c.close();
      const rssMiB = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${proc.pid}/status`, 'utf8'))![1]) / 1024;
      const file = await takeHeapSnapshot(proc.pid!, cwd);
      if (process.env.HEAP_KEEP) copyFileSync(file, path.join(process.env.HEAP_KEEP, `heap-${vms}.heapsnapshot`));
      return { ...bySizeClass(file), rssMiB };
    } finally {
      proc.kill('SIGTERM');
    }
  } finally {
    await sim.close();
    rmSync(dir, { recursive: true, force: true });
    rmSync(cwd, { recursive: true, force: true });
  }
}

const empty = await measure(0);
const half = await measure(VMS / 2);
const full = await measure(VMS);
const n = VMS - VMS / 2;
const kib = (a: { total: number }, b: { total: number }, vms: number): string =>
  ((b.total - a.total) / vms / 1024).toFixed(2);
console.log(
  `V8 heap (live objects) ${(empty.total / 2 ** 20).toFixed(1)} / ${(half.total / 2 ** 20).toFixed(1)} / ${(full.total / 2 ** 20).toFixed(1)} MiB at 0 / ${VMS / 2} / ${VMS} VMs: ` +
    `${kib(half, full, n)} KiB per VM (${VMS / 2} -> ${VMS}), ${kib(empty, full, VMS)} KiB per VM (0 -> ${VMS}); ` +
    `RSS (one sample each) ${empty.rssMiB.toFixed(0)} / ${half.rssMiB.toFixed(0)} / ${full.rssMiB.toFixed(0)} MiB`,
);
const rows = [...full.sizes]
  .map(([name, f]) => {
    const h = half.sizes.get(name) ?? { bytes: 0, count: 0 };
    const e = empty.sizes.get(name) ?? { bytes: 0, count: 0 };
    return {
      name,
      perVmBytes: (f.bytes - h.bytes) / n,
      perVmCount: (f.count - h.count) / n,
      fromEmpty: (f.bytes - e.bytes) / VMS,
    };
  })
  .filter((r) => Math.abs(r.perVmBytes) >= 16 || Math.abs(r.fromEmpty) >= 16)
  .sort((a, b) => b.perVmBytes - a.perVmBytes);
console.table(
  rows.slice(0, 40).map((r) => ({
    'self size of': r.name,
    'bytes per VM': Math.round(r.perVmBytes),
    'objects per VM': r.perVmCount.toFixed(2),
    [`bytes per VM (0 -> ${VMS})`]: Math.round(r.fromEmpty),
  })),
);
