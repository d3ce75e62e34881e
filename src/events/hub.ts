// Event fan-out. An event is serialised once, then handed to every subscriber whose prefix
// filter matches. A subscriber that does not keep up (its transport's unsent bytes pass the
// bound) is cut off instead of being buffered without limit; nobody else waits for it.
import type { Logger } from 'pino';
import { metrics } from '../metrics/metrics.js';

export interface EventSink {
  readonly id: number;
  readonly peer: string;
  /** Bytes queued on the transport and not yet written to the socket. */
  bufferedBytes(): number;
  /** Sends one serialised JSON-RPC notification. */
  sendEvent(json: string, method: string): void;
  /** Disconnects a subscriber that fell too far behind. */
  dropSlow(reason: string): void;
}

interface Subscription {
  sink: EventSink;
  prefixes: string[] | null;
}

export class EventHub {
  private readonly subs = new Map<number, Subscription>();
  published = 0;

  constructor(
    private readonly log: Logger,
    private readonly maxBufferedBytes: number,
  ) {}

  subscribe(sink: EventSink, prefixes: string[] | null): void {
    this.subs.set(sink.id, { sink, prefixes: prefixes && prefixes.length ? [...prefixes] : null });
  }

  unsubscribe(sink: EventSink): void {
    this.subs.delete(sink.id);
  }

  subscriberCount(): number {
    return this.subs.size;
  }

  /** Publishes `method` with `params` to matching subscribers; serialises at most once. */
  publish(method: string, params: unknown): void {
    this.published++;
    if (this.subs.size === 0) return;
    let json: string | null = null;
    for (const { sink, prefixes } of [...this.subs.values()]) {
      if (prefixes && !prefixes.some((p) => method.startsWith(p))) continue;
      if (sink.bufferedBytes() > this.maxBufferedBytes) {
        this.subs.delete(sink.id);
        this.log.warn({ peer: sink.peer, conn: sink.id, buffered: sink.bufferedBytes() }, 'event subscriber too slow, disconnecting');
        sink.dropSlow('event subscriber too slow');
        metrics.subscriberCutOff();
        continue;
      }
      json ??= JSON.stringify({ jsonrpc: '2.0', method, params });
      sink.sendEvent(json, method);
    }
  }
}
