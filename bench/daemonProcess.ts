// Starts the built daemon as a separate process for a benchmark and waits until it listens.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const DAEMON = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../dist/main.js');
/** The idle-CPU floor: the daemon's channel I/O at its default rates and nothing else. */
export const BARE_READER = path.resolve(path.dirname(fileURLToPath(import.meta.url)), 'bareReader.mjs');
/** The benchmark's naive baseline daemon (bench-only, run from source through tsx). */
export const NAIVE_DAEMON = path.resolve(path.dirname(fileURLToPath(import.meta.url)), 'naiveStats.ts');

export interface BenchDaemon {
  proc: ChildProcess;
  url: string;
  pid: number;
  stop: () => Promise<void>;
}

/** `main`: another daemon entry (an old commit's build, bench/oldDaemon.ts; or a .ts entry run through tsx). */
export function startDaemon(
  args: string[],
  env: Record<string, string> = {},
  nodeArgs: string[] = [],
  main = DAEMON,
): Promise<BenchDaemon> {
  const tsx = main.endsWith('.ts') ? ['--import', 'tsx'] : [];
  const proc = spawn(process.execPath, [...nodeArgs, ...tsx, main, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (chunk: Buffer): void => {
      buf += chunk.toString();
      const m = /"url":"([^"]+)"/.exec(buf);
      if (m) {
        proc.stdout.off('data', onData);
        proc.stdout.resume();
        resolve({
          proc,
          url: m[1]!,
          pid: proc.pid!,
          stop: () =>
            new Promise((r) => {
              if (proc.exitCode !== null || proc.signalCode !== null) return r(); // exited, or killed by a signal
              proc.once('exit', () => r());
              proc.kill('SIGTERM');
            }),
        });
      }
    };
    proc.stdout.on('data', onData);
    proc.once('exit', (code) => reject(new Error(`daemon exited with ${code} before listening`)));
  });
}
