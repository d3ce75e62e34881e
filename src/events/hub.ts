// Event fan-out. An event is serialised once (text, and bytes shared by every WebSocket sink),
// then handed to every subscriber whose prefix filter matches. Slow subscribers are bounded
// three ways, so what they cost the daemon as a whole stays bounded whatever their number:
// - per subscriber: unsent bytes past --max-subscriber-buffer-bytes;
// - in time: events not drained within --subscriber-drain-timeout. The kernel's socket buffers
//   hide a peer that stopped reading for megabytes (tens of seconds of events), so where the
//   transport can, the hub asks: a WebSocket ping queued behind the events, whose pong proves
//   the peer read everything before it. Elsewhere (STOMP) drained means no unsent bytes left;
// - for the daemon: unsent bytes of all subscribers together past --max-events-buffer-bytes
//   (the subscribers holding most go first).
// A subscriber cut off gets close 1008 and one warning naming it. Fan-out to many subscribers
// runs in slices, so the event loop keeps answering requests in between.
import type { Logger } from 'pino';
import { metrics } from '../metrics/metrics.js';

export interface EventSink {
  readonly id: number;
  readonly peer: string;
  /** Bytes queued on the transport and not yet written to the socket. */
  bufferedBytes(): number;
  /** Sends one serialised JSON-RPC notification; `utf8` is the same text as bytes, shared by all sinks. */
  sendEvent(json: string, method: string, utf8: Buffer): void;
  /** Disconnects a subscriber that fell too far behind. */
  dropSlow(reason: string): void;
  /** Queues a marker behind everything sent so far; `acked` runs once the peer has read up to it. */
  probe?(acked: () => void): void;
}

export interface EventBudget {
  /** One subscriber's unsent bytes past this: cut off. */
  maxBufferedBytes: number;
  /** All subscribers' unsent bytes together past this: the largest are cut off. */
  maxTotalBufferedBytes: number;
  /** Unsent bytes that have not drained to zero within this: cut off. */
  drainTimeoutMs: number;
}

/** The close code the transports use for a subscriber cut off (WebSocket: policy violation). */
const SLOW_SUBSCRIBER_CLOSE_CODE = 1008;
/** Fan-out yields to the event loop after this much work, so requests are answered in between. */
const SLICE_MS = 4;
/** Subscribers cut off for not draining, at most, before the event loop gets a turn. */
const CUTS_PER_PASS = 25;
/** A gap this much longer than the sweep period between two looks is the daemon's own stall. */
const STALL_MS = 500;

interface Subscription {
  sink: EventSink;
  prefixes: string[] | null;
  /** When unsent bytes were first seen without having drained since; null while drained. */
  behindSince: number | null;
  /** Probing sinks: when the oldest event the peer has not acknowledged was sent; null: all read. */
  unackedSince: number | null;
  /** Probing sinks: when the outstanding probe was sent; null: none outstanding. */
  probeSentAt: number | null;
  /** Probing sinks: first event sent after the outstanding probe. */
  sentAfterProbe: number | null;
}

interface PendingEvent {
  method: string;
  json: string;
  utf8: Buffer;
  targets: Subscription[];
  next: number;
}

export class EventHub {
  private readonly subs = new Map<number, Subscription>();
  private readonly queue: PendingEvent[] = [];
  private pumping = false;
  private sweepTimer: NodeJS.Timeout | null = null;
  published = 0;
  /** Subscribers cut off so far, by cause (for the bench and the tests' logs). */
  readonly cutOff = { buffer: 0, drain: 0, total: 0 };
  private readonly budget: EventBudget;
  /** How often a subscriber with unread events is probed, and the idle sweep's period. */
  private readonly probeEveryMs: number;
  private lastLook = Date.now();

  constructor(
    private readonly log: Logger,
    budget: EventBudget | number,
  ) {
    this.budget =
      typeof budget === 'number'
        ? { maxBufferedBytes: budget, maxTotalBufferedBytes: Infinity, drainTimeoutMs: Infinity }
        : budget;
    this.probeEveryMs = Math.max(100, Math.min(1000, this.budget.drainTimeoutMs / 4));
  }

  subscribe(sink: EventSink, prefixes: string[] | null): void {
    const old = this.subs.get(sink.id);
    const prefixList = prefixes?.length ? [...prefixes] : null;
    if (old) old.prefixes = prefixList;
    else
      this.subs.set(sink.id, {
        sink,
        prefixes: prefixList,
        behindSince: null,
        unackedSince: null,
        probeSentAt: null,
        sentAfterProbe: null,
      });
  }

  unsubscribe(sink: EventSink): void {
    this.subs.delete(sink.id);
    if (this.subs.size === 0) this.stopSweep();
  }

  subscriberCount(): number {
    return this.subs.size;
  }

  /** Stops the drain check (daemon shutdown). */
  close(): void {
    this.stopSweep();
  }

  /** Publishes `method` with `params` to matching subscribers; serialises at most once. */
  publish(method: string, params: unknown): void {
    this.published++;
    if (this.subs.size === 0) return;
    const targets: Subscription[] = [];
    for (const sub of this.subs.values()) {
      if (!sub.prefixes || sub.prefixes.some((p) => method.startsWith(p))) targets.push(sub);
    }
    if (targets.length === 0) return;
    const json = JSON.stringify({ jsonrpc: '2.0', method, params });
    this.enforce(Buffer.byteLength(json));
    this.queue.push({ method, json, utf8: Buffer.from(json), targets, next: 0 });
    if (!this.pumping) this.pump();
  }

  /**
   * Cuts off subscribers past their own bound or the drain deadline, then, if everyone's unsent
   * bytes plus `incoming` for each would pass the daemon's total, the ones holding most.
   */
  private enforce(incoming: number): void {
    const now = Date.now();
    // While subscribers wait, this runs at least every probeEveryMs. A longer gap is the daemon's
    // own stall (a heap snapshot, a swapped-out process): pongs that came meanwhile are not read
    // yet, so that time does not count against anyone.
    const stalled = now - this.lastLook - this.probeEveryMs;
    this.lastLook = now;
    if (stalled > STALL_MS) {
      for (const sub of this.subs.values()) {
        if (sub.unackedSince !== null) sub.unackedSince += stalled;
        if (sub.behindSince !== null) sub.behindSince += stalled;
      }
    }
    const { maxBufferedBytes, maxTotalBufferedBytes, drainTimeoutMs } = this.budget;
    let total = 0;
    const held: { sub: Subscription; bytes: number }[] = [];
    let waiting = false;
    let cuts = 0;
    for (const sub of [...this.subs.values()]) {
      const bytes = sub.sink.bufferedBytes();
      if (bytes === 0) sub.behindSince = null;
      else sub.behindSince ??= now;
      // Probing sinks are judged by what the peer acknowledged, the others by unsent bytes.
      const since = sub.sink.probe ? sub.unackedSince : sub.behindSince;
      if (bytes > maxBufferedBytes)
        this.cut(sub, bytes, 'buffer', `more than ${maxBufferedBytes} bytes of events unsent`);
      else if (since !== null && now - since > drainTimeoutMs && cuts < CUTS_PER_PASS) {
        // Many subscribers falling silent together are cut in passes, so requests are answered in between.
        if (++cuts === CUTS_PER_PASS) setImmediate(() => this.enforce(0));
        this.cut(sub, bytes, 'drain', `events not read for more than ${drainTimeoutMs} ms`);
      } else {
        if (since !== null) waiting = true;
        // About one probe a second per subscriber while events flow, whatever their rate.
        if (sub.unackedSince !== null && sub.probeSentAt === null && now - sub.unackedSince >= this.probeEveryMs)
          this.probe(sub, now);
        if (bytes === 0) continue;
        total += bytes;
        held.push({ sub, bytes });
      }
    }
    const projected = total + incoming * this.subs.size;
    if (projected > maxTotalBufferedBytes) {
      held.sort((a, b) => b.bytes - a.bytes);
      let over = projected - maxTotalBufferedBytes;
      for (const { sub, bytes } of held) {
        if (over <= 0) break;
        this.cut(
          sub,
          bytes,
          'total',
          `subscribers together hold more than ${maxTotalBufferedBytes} bytes of unsent events`,
        );
        over -= bytes + incoming;
      }
    }
    if (waiting && this.subs.size > 0) this.startSweep();
    else this.stopSweep();
  }

  private probe(sub: Subscription, now: number): void {
    sub.probeSentAt = now;
    sub.sentAfterProbe = null;
    sub.sink.probe?.(() => {
      if (this.subs.get(sub.sink.id) !== sub) return;
      // Everything sent before the probe is read; what went out after it is the new oldest.
      sub.unackedSince = sub.sentAfterProbe;
      sub.probeSentAt = null;
    });
  }

  private cut(sub: Subscription, bytes: number, cause: keyof EventHub['cutOff'], why: string): void {
    this.subs.delete(sub.sink.id);
    this.cutOff[cause]++;
    const unreadMs = sub.unackedSince === null ? undefined : Date.now() - sub.unackedSince;
    this.log.warn(
      {
        peer: sub.sink.peer,
        conn: sub.sink.id,
        reason: why,
        buffered: bytes,
        unreadMs,
        code: SLOW_SUBSCRIBER_CLOSE_CODE,
      },
      'event subscriber too slow, disconnecting',
    );
    sub.sink.dropSlow('event subscriber too slow');
    metrics.subscriberCutOff();
  }

  /** Hands queued events to their targets, in order, yielding after SLICE_MS of work. */
  private pump(): void {
    this.pumping = true;
    const start = performance.now();
    let n = 0;
    for (let ev = this.queue.at(0); ev; ev = this.queue.at(0)) {
      for (let sub = ev.targets.at(ev.next); sub; sub = ev.targets.at(ev.next)) {
        ev.next++;
        // Unsubscribed or cut off since the event was published: nothing more for it.
        if (this.subs.get(sub.sink.id) === sub) {
          sub.sink.sendEvent(ev.json, ev.method, ev.utf8);
          if (sub.sink.probe) this.sent(sub);
        }
        if (++n % 32 === 0 && performance.now() - start > SLICE_MS) {
          setImmediate(() => this.pump());
          return;
        }
      }
      this.queue.shift();
    }
    this.pumping = false;
  }

  private sent(sub: Subscription): void {
    const now = Date.now();
    if (sub.unackedSince === null) sub.unackedSince = now;
    if (sub.probeSentAt !== null) sub.sentAfterProbe ??= now;
    this.startSweep();
  }

  /** While someone holds unsent events, look again even if no event comes to trigger it. */
  private startSweep(): void {
    if (this.sweepTimer || !Number.isFinite(this.budget.drainTimeoutMs)) return;
    this.sweepTimer = setInterval(() => this.enforce(0), this.probeEveryMs);
    this.sweepTimer.unref();
  }

  private stopSweep(): void {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
  }
}
