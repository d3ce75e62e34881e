// What a test needs around a systemd booted in systemd-nspawn: one such container on the host at
// a time (outside a systemd host nspawn puts every container in the same payload/supervisor
// cgroups), the container's PID 1 found below nspawn, and the empty cgroups nspawn leaves behind
// when it runs in the root cgroup removed afterwards.
import { existsSync, readdirSync, readFileSync, rmdirSync } from 'node:fs';
import path from 'node:path';
import { acquireHostLock } from './hostLock.js';

const CGROUP_ROOTS = ['/sys/fs/cgroup', '/sys/fs/cgroup/systemd', '/sys/fs/cgroup/unified'];

export interface NspawnHost {
  /** Removes the payload/supervisor cgroups that were not there before, then frees the host. */
  release: () => Promise<void>;
}

/** Waits until no other test's container runs, and notes the cgroups present now. */
export async function claimNspawnHost(): Promise<NspawnHost> {
  const lock = await acquireHostLock('nspawn');
  const before = new Map(CGROUP_ROOTS.map((root) => [root, new Set(safeReaddir(root))]));
  return {
    release: async () => {
      for (const root of CGROUP_ROOTS) {
        for (const name of ['payload', 'supervisor']) {
          const p = path.join(root, name);
          if (!before.get(root)?.has(name) && existsSync(p)) removeEmptyCgroup(p);
        }
      }
      await lock.release();
    },
  };
}

/** The container's PID 1: the process named systemd below nspawn. */
export function containerInit(nspawn: number): number | null {
  const queue = [nspawn];
  while (queue.length) {
    const pid = queue.shift()!;
    for (const task of safeReaddir(`/proc/${pid}/task`)) {
      let children: number[] = [];
      try {
        children = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').split(' ').filter(Boolean).map(Number);
      } catch {
        /* gone */
      }
      for (const child of children) {
        if (readFileSync(`/proc/${child}/comm`, 'utf8').trim() === 'systemd') return child;
        queue.push(child);
      }
    }
  }
  return null;
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** Removes a cgroup and its children, deepest first; one that still holds processes stays. */
function removeEmptyCgroup(dir: string): void {
  for (const entry of readdirSync(dir, { withFileTypes: true }))
    if (entry.isDirectory()) removeEmptyCgroup(path.join(dir, entry.name));
  try {
    rmdirSync(dir);
  } catch {
    /* still in use: leave it */
  }
}
