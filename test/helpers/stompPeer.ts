// Runs test/helpers/stomp_peer.py: Debian's python3-stomp driven by a JSON plan, the STOMP
// client nobody here wrote. Every peer still running when the test file ends is killed.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { ROOT } from './daemon.js';
import { IN_CI, missing } from './prereq.js';
import { atFileEnd } from './fileCleanup.js';

const PYTHON = '/usr/bin/python3';
const SCRIPT = path.join(ROOT, 'test/helpers/stomp_peer.py');

/** Like `missing`: null when /usr/bin/python3 can import stomp; skips on a dev machine, throws under CI. */
export function missingPythonStomp(): string | null {
  const base = missing({ commands: [PYTHON] });
  if (base) return base;
  try {
    execFileSync(PYTHON, ['-c', 'import stomp'], { stdio: 'ignore' });
    return null;
  } catch {
    const why = "needs Debian's python3-stomp for /usr/bin/python3 (scripts/setup-test-host.sh)";
    if (IN_CI) throw new Error(`prerequisite missing under CI=true: ${why}`);
    console.warn(`[skip] ${why}`);
    return why;
  }
}

interface PeerMessage {
  headers: Record<string, string>;
  body: string;
}

export interface PeerSummary {
  connected: Record<string, string> | null;
  messages: PeerMessage[];
  errors: PeerMessage[];
  receipts: string[];
  heartbeats: number;
  dropped: boolean;
}

export interface PeerPlan {
  host: string;
  port: number;
  tls?: { cert: string; key: string; ca: string };
  command?: 'CONNECT' | 'STOMP';
  heartbeats?: [number, number];
  subscribe_first?: boolean;
  subscriptions?: { destination: string; id: string }[];
  requests?: { destination?: string; reply_to?: string; body: string }[];
  sends?: { destination: string; body?: string; headers?: Record<string, string> }[];
  expect_responses?: number;
  expect_events?: number;
  expect_errors?: number;
  hold_seconds?: number;
  /** After "ready", stop python-stomp's heart-beats (the socket stays open). */
  go_silent?: boolean;
  disconnect_receipt?: string;
  timeout?: number;
  /** Runs this many sessions at once in one python process; "{i}" in the plan is each one's number. */
  clients?: number;
}

export interface RunningPeer {
  /** Resolves once the peer's subscriptions are in place on the server. */
  ready: Promise<void>;
  done: Promise<PeerSummary & { clients?: (PeerSummary | null)[] }>;
  stderr: () => string;
}

const running = new Set<ChildProcess>();
// Registered at import: vitest ignores hooks added from inside a test or beforeAll.
atFileEnd(() => {
  for (const p of running) p.kill('SIGKILL');
});

export function runStompPeer(plan: PeerPlan): RunningPeer {
  const proc = spawn(PYTHON, [SCRIPT, JSON.stringify(plan)], { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(proc);
  let stderr = '';
  let buf = '';
  let summary: (PeerSummary & { clients?: (PeerSummary | null)[] }) | null = null;
  let onReady: () => void = () => {};
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  proc.stdout.on('data', (c: Buffer) => {
    buf += c.toString();
    let nl;
    while ((nl = buf.indexOf('\n')) !== -1) {
      const line = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
      buf = buf.slice(nl + 1);
      if (line.ready) onReady();
      if (line.summary) summary = line as unknown as PeerSummary;
    }
  });
  proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const done = new Promise<PeerSummary & { clients?: (PeerSummary | null)[] }>((resolve, reject) =>
    proc.on('exit', (code) => {
      running.delete(proc);
      if (summary) resolve(summary);
      else reject(new Error(`stomp_peer.py exited ${code} without a summary: ${stderr.slice(-2000)}`));
    }),
  );
  done.catch(() => onReady());
  return { ready, done, stderr: () => stderr };
}

/** JSON bodies of the MESSAGE frames sent to `destination`. */
export function bodiesTo(summary: PeerSummary, destination: string): unknown[] {
  return summary.messages.filter((m) => m.headers.destination === destination).map((m) => JSON.parse(m.body));
}
