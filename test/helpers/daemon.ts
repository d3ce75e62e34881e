// Starts the real daemon as a user would (node dist/main.js FLAGS) and waits for its
// "listening" line. Every daemon started here is killed when the test file ends.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { atFileEnd } from './fileCleanup.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const DAEMON = path.join(ROOT, 'dist/main.js');
export const CLIENT = path.join(ROOT, 'dist/client/cli.js');

export interface RunningDaemon {
  proc: ChildProcess;
  url: string;
  /** Every log line so far, parsed where it is JSON. */
  logs: () => Record<string, unknown>[];
  stderr: () => string;
  /** SIGTERM, then waits for the exit; returns the exit code. */
  stop: (signal?: NodeJS.Signals) => Promise<number | null>;
  exited: Promise<number | null>;
  /** Resolves with the first log line that satisfies `pred`. */
  waitForLog: (pred: (l: Record<string, unknown>) => boolean, timeoutMs?: number) => Promise<Record<string, unknown>>;
}

const running = new Set<ChildProcess>();
// Registered when a test file imports this module: vitest ignores hooks added later (e.g. from
// inside beforeAll), and cleanup must run even when the file's set-up fails.
atFileEnd(() => {
  for (const p of running) p.kill('SIGKILL');
});

export interface StartOptions {
  env?: Record<string, string>;
  /** Extra command before node, e.g. ['ip', 'netns', 'exec', NS]. */
  wrap?: string[];
  timeoutMs?: number;
  /** Another build of the daemon's entry (default: the checkout's dist/main.js). */
  main?: string;
}

export async function startDaemon(args: string[], opts: StartOptions = {}): Promise<RunningDaemon> {
  // Tests talk to libvirt only when they say so (SPEC: `direct` is for tests): a libvirtd another
  // test file runs meanwhile must not add its domains to this daemon's VM list.
  const viaGiven =
    args.some((a) => a === '--qga-via' || a.startsWith('--qga-via=') || a === '--config') ||
    opts.env?.VDSM_AGENTD_QGA_VIA !== undefined;
  const argv = [
    ...(opts.wrap ?? []),
    process.execPath,
    opts.main ?? DAEMON,
    ...args,
    ...(viaGiven ? [] : ['--qga-via', 'direct']),
  ];
  const proc = spawn(argv[0]!, argv.slice(1), {
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(proc);
  const lines: Record<string, unknown>[] = [];
  let stderr = '';
  const waiters: { pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] =
    [];
  let buf = '';
  proc.stdout.on('data', (chunk: Buffer) => {
    buf += chunk.toString();
    let nl;
    while ((nl = buf.indexOf('\n')) !== -1) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      let parsed: Record<string, unknown>;
      try {
        parsed = JSON.parse(line);
      } catch {
        parsed = { raw: line };
      }
      lines.push(parsed);
      for (const w of [...waiters]) {
        if (w.pred(parsed)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(parsed);
        }
      }
    }
  });
  proc.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) =>
    proc.on('exit', (code) => {
      running.delete(proc);
      resolve(code);
    }),
  );
  const waitForLog = (
    pred: (l: Record<string, unknown>) => boolean,
    timeoutMs = 30_000,
  ): Promise<Record<string, unknown>> => {
    const found = lines.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`log line not seen within ${timeoutMs} ms; stderr: ${stderr}`)),
        timeoutMs,
      );
      waiters.push({
        pred,
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
      });
      void exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`daemon exited (${code}) before the log line; stderr: ${stderr}`));
      });
    });
  };
  // Bounds for events, not expectations: node alone can take 10 s to start with both cores busy.
  const listening = await waitForLog(
    (l) => typeof l.msg === 'string' && l.msg.startsWith('listening on'),
    opts.timeoutMs ?? 45_000,
  );
  return {
    proc,
    url: listening.url as string,
    logs: () => lines,
    stderr: () => stderr,
    exited,
    waitForLog,
    stop: async (signal = 'SIGTERM') => {
      if (proc.exitCode !== null) return proc.exitCode;
      proc.kill(signal);
      return exited;
    },
  };
}

/** Runs the daemon expecting it to fail at start-up; returns exit code and stderr. */
export function runDaemonExpectingExit(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; stderr: string; stdout: string }> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [DAEMON, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    let stdout = '';
    proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    proc.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    // Only for a daemon that does not exit at all: below the 60 s test timeout, so the failure
    // shows its stderr. 10 s was too short for node to start with both cores busy.
    const timer = setTimeout(() => proc.kill('SIGKILL'), 50_000);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr, stdout });
    });
  });
}
