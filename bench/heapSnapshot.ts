// V8 heap snapshots of a bench's daemon, taken from outside: the daemon runs with
// `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=DIR` (node flags only, nothing in the daemon),
// SIGUSR2 makes it write one (after a full garbage collection: live objects only), and the
// snapshot's nodes are summed by size class. Used by heapAccount.ts and the vms bench.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

/** Node flags that let takeHeapSnapshot() work on a daemon, its files written to `dir`. */
export const snapshotNodeArgs = (dir: string): string[] => ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${dir}`];

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Signals `pid` and waits until its new snapshot in `dir` is written whole (its size stops changing). */
export async function takeHeapSnapshot(pid: number, dir: string): Promise<string> {
  const before = new Set(readdirSync(dir));
  process.kill(pid, 'SIGUSR2');
  for (let i = 0; i < 600; i++) {
    await sleep(200);
    const f = readdirSync(dir).find((n) => n.endsWith('.heapsnapshot') && !before.has(n));
    if (!f) continue;
    const file = path.join(dir, f);
    const a = statSync(file).size;
    await sleep(1000);
    if (a > 0 && statSync(file).size === a) return file;
  }
  throw new Error(`no heap snapshot from ${pid} in ${dir}`);
}

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

/** Self size by "type:name" (objects by constructor; strings, code, arrays... by type), and the total: the live heap. */
export function bySizeClass(file: string): { sizes: Map<string, { bytes: number; count: number }>; total: number } {
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
