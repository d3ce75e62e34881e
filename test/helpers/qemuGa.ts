// The real Debian qemu-ga, run inside a network namespace and listening on a channel socket as
// QEMU would (`-m unix-listen`), so it reports the namespace's interfaces. Every agent started
// here is killed after the test file, and its state directory removed.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { withTimeout } from './scriptedGuest.js';
import { atFileEnd } from './fileCleanup.js';

export const QEMU_GA = '/usr/sbin/qemu-ga';

const running = new Set<ChildProcess>();
const stateDirs: string[] = [];
// Registered at import: vitest ignores hooks added later (from inside beforeAll), and cleanup
// must run even when a file's set-up fails.
atFileEnd(() => {
  for (const p of running) p.kill('SIGKILL');
  for (const d of stateDirs) rmSync(d, { recursive: true, force: true });
});

export interface QemuGa {
  proc: ChildProcess;
  stateDir: string;
  /** Kills the agent (SIGKILL by default: a crash, the socket file stays) and waits for it. */
  kill: (signal?: NodeJS.Signals) => Promise<void>;
}

export async function startQemuGa(ns: string, socketPath: string): Promise<QemuGa> {
  const { lstat } = await import('node:fs/promises');
  // A stale socket from an earlier run; the file system may give the new one the same inode number.
  const old = await lstat(socketPath).catch(() => null);
  const identity = (st: { ino: number; mtimeMs: number }): string => `${st.ino}/${st.mtimeMs}`;
  const stateDir = mkdtempSync(path.join(os.tmpdir(), 'vat-qga-'));
  stateDirs.push(stateDir);
  const proc = spawn(
    'ip',
    [
      'netns',
      'exec',
      ns,
      QEMU_GA,
      '-m',
      'unix-listen',
      '-p',
      socketPath,
      '-t',
      stateDir,
      '-f',
      path.join(stateDir, 'qemu-ga.pid'),
    ],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  running.add(proc);
  let stderr = '';
  proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<void>((resolve) =>
    proc.once('exit', () => {
      running.delete(proc);
      resolve();
    }),
  );
  // Listening once its own socket file is there (qemu-ga unlinks a stale one and binds anew).
  await withTimeout(
    (async () => {
      for (;;) {
        if (proc.exitCode !== null) throw new Error(`qemu-ga exited: ${stderr}`);
        const st = await lstat(socketPath).catch(() => null);
        if (st?.isSocket() && (!old || identity(st) !== identity(old))) return;
        await new Promise((r) => setTimeout(r, 20));
      }
    })(),
    10_000,
    'qemu-ga did not listen',
  );
  return {
    proc,
    stateDir,
    kill: async (signal = 'SIGKILL') => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      await exited;
    },
  };
}
