// What a test needs around a systemd booted in systemd-nspawn: one such container on the host at
// a time (outside a systemd host nspawn puts every container in the same payload/supervisor
// cgroups), the container's PID 1 found below nspawn, and the empty cgroups nspawn leaves behind
// when it runs in the root cgroup removed afterwards.
import { execFileSync } from 'node:child_process';
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

/** Runs a command in the container (every namespace of its PID 1); its stdout. */
export function runInside(init: number, cmd: string[], timeoutMs: number): string {
  return execFileSync('nsenter', ['-t', String(init), '-a', ...cmd], {
    encoding: 'utf8',
    timeout: timeoutMs,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** `systemctl show` of vdsm-agentd.service's properties, as a map. */
export function unitProperties(inside: (...cmd: string[]) => string, props: string[]): Record<string, string> {
  return Object.fromEntries(
    inside('systemctl', 'show', ...props.map((p) => `--property=${p}`), 'vdsm-agentd.service')
      .trim()
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
}

/** Polls `pred` until it holds; past `timeoutMs` fails with the container's console so far. */
export async function pollUntil(
  what: string,
  pred: () => boolean,
  timeoutMs: number,
  console: () => string,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`${what} did not happen within ${timeoutMs} ms; console:\n${console()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
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
