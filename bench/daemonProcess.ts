// Starts the built daemon as a separate process for a benchmark and waits until it listens.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const DAEMON = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../dist/main.js');

export interface BenchDaemon {
  proc: ChildProcess;
  url: string;
  pid: number;
  stop: () => Promise<void>;
}

export function startDaemon(args: string[], env: Record<string, string> = {}, nodeArgs: string[] = [], daemon = DAEMON): Promise<BenchDaemon> {
  const proc = spawn(process.execPath, [...nodeArgs, daemon, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (chunk: Buffer): void => {
      buf += chunk.toString();
      const m = /"url":"([^"]+)"/.exec(buf);
      if (m) {
        proc.stdout!.off('data', onData);
        proc.stdout!.resume();
        resolve({
          proc,
          url: m[1]!,
          pid: proc.pid!,
          stop: () =>
            new Promise((r) => {
              if (proc.exitCode !== null) return r();
              proc.once('exit', () => r());
              proc.kill('SIGTERM');
            }),
        });
      }
    };
    proc.stdout!.on('data', onData);
    proc.once('exit', (code) => reject(new Error(`daemon exited with ${code} before listening`)));
  });
}
