// A per-process timeline for explaining slow calls (bench-only): garbage collections
// (perf_hooks 'gc' entries: kind, start, duration), event-loop stalls (a 1 ms timer that fires
// late), and, in a daemon, when each WebSocket request arrived, when its reply was handed to ws
// and when ws reported it written. Times are epoch milliseconds with sub-ms resolution, so the
// bench can lay a daemon's timeline beside its own call times.
// In a daemon it is loaded with `node --import tsx --import bench/callTimeline.ts` and
// BENCH_TIMELINE_FILE=<path>; the timeline is written there when the process exits. It wraps
// ws's WebSocket.prototype (send, and emit of 'message'): no daemon source knows about it, so the
// same probe runs in today's build and an old one.
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { constants, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';
import type { WebSocket } from 'ws';

export interface Span {
  at: number;
  ms: number;
  what: string;
  /** For a stall: CPU time the process used during it (all threads); near `ms` = busy, near 0 = not scheduled. */
  cpuMs?: number;
}

export interface Timeline {
  gc: Span[];
  stalls: Span[];
  /** Per request: received, reply handed to ws.send, written (socket write callback). */
  calls: { rx: number; tx: number; done: number; bytes: number }[];
  /** Epoch ms minus CLOCK_MONOTONIC ms (a V8 CPU profile's clock), to place profile samples. */
  monoOffsetMs: number;
}

const epochMs = (): number => performance.timeOrigin + performance.now();

const GC_KINDS: Record<number, string> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'scavenge',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'mark-compact',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weak-callbacks',
};

/** Starts recording GCs and stalls longer than `stallMs`; the returned timeline fills as they happen. */
export function recordTimeline(stallMs = 2): { timeline: Timeline; stop: () => void } {
  const timeline: Timeline = {
    gc: [],
    stalls: [],
    calls: [],
    monoOffsetMs: epochMs() - Number(process.hrtime.bigint()) / 1e6,
  };
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries() as (PerformanceEntry & { detail?: { kind?: number } })[])
      timeline.gc.push({
        at: performance.timeOrigin + e.startTime,
        ms: e.duration,
        what: GC_KINDS[e.detail?.kind ?? -1] ?? 'gc',
      });
  });
  obs.observe({ entryTypes: ['gc'] });
  let last = epochMs();
  let lastCpu = process.cpuUsage();
  const probe = setInterval(() => {
    const now = epochMs();
    const late = now - last - 1;
    if (late > stallMs) {
      const cpu = process.cpuUsage(lastCpu);
      timeline.stalls.push({ at: last + 1, ms: late, what: 'stall', cpuMs: (cpu.user + cpu.system) / 1000 });
    }
    last = now;
    lastCpu = process.cpuUsage();
  }, 1);
  probe.unref();
  return {
    timeline,
    stop: () => {
      obs.disconnect();
      clearInterval(probe);
    },
  };
}

/** Records when each WebSocket message arrived and when the next reply on it was sent and written. */
function recordCalls(timeline: Timeline): void {
  // The daemon's own ws (an old build's cache links another checkout's node_modules).
  const { WebSocket } = createRequire(process.argv[1]!)('ws') as typeof import('ws');
  const rxOf = new WeakMap<WebSocket, number>();
  const proto = WebSocket.prototype as unknown as {
    emit: (event: string | symbol, ...args: unknown[]) => boolean;
    send: (data: unknown, options?: unknown, cb?: (err?: Error) => void) => void;
  };
  const emit = proto.emit;
  proto.emit = function (this: WebSocket, event, ...args) {
    if (event === 'message') rxOf.set(this, epochMs());
    return emit.call(this, event, ...args);
  };
  const send = proto.send;
  proto.send = function (this: WebSocket, data, options, cb) {
    const rx = rxOf.get(this);
    if (rx === undefined || typeof options === 'function') return send.call(this, data, options, cb);
    rxOf.delete(this);
    const call = { rx, tx: epochMs(), done: 0, bytes: Buffer.byteLength(data as Buffer) };
    timeline.calls.push(call);
    send.call(this, data, options, (err?: Error) => {
      call.done = epochMs();
      cb?.(err);
    });
  };
}

const file = process.env.BENCH_TIMELINE_FILE;
if (file) {
  const { timeline } = recordTimeline();
  recordCalls(timeline);
  process.on('exit', () => writeFileSync(file, JSON.stringify(timeline)));
}
