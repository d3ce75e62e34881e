// Network namespaces with unique names, always deleted (and their processes killed) after
// the test file, even when it fails.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { atFileEnd } from './fileCleanup.js';

const created = new Set<string>();
// Registered at import: vitest ignores hooks added from inside beforeAll, and the namespaces
// must go even when the file's set-up fails.
atFileEnd(() => {
  for (const ns of created) deleteNetns(ns);
});

export function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function uniqueName(prefix: string): string {
  return `${prefix}${process.pid.toString(36)}${randomBytes(3).toString('hex')}`.slice(0, 15);
}

/** Creates a namespace (lo up) and registers its deletion. */
export function createNetns(prefix = 'vat'): string {
  const ns = uniqueName(prefix);
  sh('ip', ['netns', 'add', ns]);
  created.add(ns);
  sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  return ns;
}

export function deleteNetns(ns: string): void {
  try {
    // Kill whatever still runs inside (qemu-ga, daemons), then the namespace.
    const pids = sh('ip', ['netns', 'pids', ns]).split(/\s+/).filter(Boolean);
    for (const pid of pids) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    sh('ip', ['netns', 'del', ns]);
  } catch {
    /* already gone */
  }
  created.delete(ns);
}

/** `ip -n NS ...` */
export function ipn(ns: string, ...args: string[]): string {
  return sh('ip', ['-n', ns, ...args]);
}
