// A host-wide exclusive lock (flock(1) on a file in /run/lock) for tests that use something the
// host has only one of, held until released or until the test process dies (the holder's stdin
// closes and it exits), so a crashed test never leaves it taken.
import { spawn } from 'node:child_process';
import path from 'node:path';

export interface HostLock {
  release: () => Promise<void>;
}

/** Waits until the lock `name` is free, then holds it. */
export function acquireHostLock(name: string): Promise<HostLock> {
  const file = path.join('/run/lock', `vdsm-agentd-test-${name}.lock`);
  const holder = spawn('flock', ['--exclusive', file, 'sh', '-c', 'echo locked && exec cat >/dev/null'], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  holder.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<void>((resolve) => holder.once('close', () => resolve()));
  return new Promise((resolve, reject) => {
    holder.stdout.once('data', () =>
      resolve({
        release: async () => {
          holder.stdin.end();
          await exited;
        },
      }),
    );
    void exited.then(() => reject(new Error(`flock ${file} ended before taking the lock: ${stderr}`)));
  });
}
