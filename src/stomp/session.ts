// One STOMP 1.2 session with VDSM's semantics, over any transport (TCP/TLS socket or a
// v12.stomp WebSocket). It is a Session for the method registry and an EventSink for the
// event hub: STOMP is a second door to the same methods and events, not a copy of them.
//
// VDSM's rules kept here: commands in any order (SUBSCRIBE and SEND work before CONNECT),
// CONNECTED answers the client's heart-beat pair swapped with non-zero values raised to
// 1000 ms, requests SENT to a request destination are answered as MESSAGE to the
// subscriptions of their reply-to, events go to subscriptions of jms.queue.events, the ERROR
// texts are VDSM's and leave the connection open, and an unknown command closes it.
import type { Logger } from 'pino';
import type { EventHub, EventSink } from '../events/hub.js';
import { nextConnectionId } from '../transport/connectionId.js';
import type { MethodRegistry, Reply, Session } from '../rpc/registry.js';
import { RequestPipeline } from '../rpc/pipeline.js';
import { replyText } from '../rpc/jsonText.js';
import { encodeFrame, FrameParser, type StompFrame } from './frame.js';

const EVENTS_DESTINATION = 'jms.queue.events';
/** VDSM's request queues; a destination below one of them ("queue.x") counts too, as in VDSM. */
const REQUEST_DESTINATIONS = ['jms.topic.vdsm_requests', 'jms.topic.vdsm_irs_requests'];
/**
 * The client's declared send interval is stretched by this before it is called silent: a peer
 * that sends exactly every cx ms must not be dropped by jitter (python-stomp and the engine
 * allow 1.5 x their interval the other way round). VDSM itself cuts at exactly cx.
 */
const SILENCE_TOLERANCE = 1.5;
const HEARTBEAT_BYTES = Buffer.from('\n');

/** What a session writes to and closes; one call to `write` is one frame (or a heart-beat). */
export interface StompTransport {
  readonly peer: string;
  /** `written`, when given, is called once the bytes reached the kernel or were dropped (closed). */
  write(data: Buffer, written?: () => void): void;
  /** Stops reading from the peer while `hold` is true (the request pipeline is full). */
  holdInput(hold: boolean): void;
  /** Bytes accepted by `write` and not yet handed to the kernel. */
  bufferedBytes(): number;
  /** Sends what is queued, then closes. */
  end(): void;
  /** Closes at once. */
  destroy(): void;
}

interface StompLimits {
  maxFrameBytes: number;
  maxBatch: number;
  maxInFlight: number;
}

export interface StompSessionDeps {
  registry: MethodRegistry;
  hub: EventHub;
  limits: StompLimits;
  log: Logger;
}

export function isRequestDestination(destination: string): boolean {
  return REQUEST_DESTINATIONS.some((q) => destination === q || destination.startsWith(q + '.'));
}

/** accept-version must offer 1.2 (a list such as stomp.js's "1.0,1.1,1.2" does). */
export function offersVersion12(acceptVersion: string | undefined): boolean {
  return acceptVersion !== undefined && acceptVersion.split(',').some((v) => v.trim() === '1.2');
}

export interface HeartBeat {
  /** We send a heart-beat after this many ms without output (0: never). */
  sendMs: number;
  /** The client promised input at least this often (0: no promise, no silence check). */
  expectMs: number;
  /** The CONNECTED header value. */
  header: string;
}

/** VDSM's negotiation: the client's "cx,cy" comes back as "cy,cx", non-zero values at least 1000. */
export function negotiateHeartBeat(header: string | undefined): HeartBeat {
  const [x, y] = (header ?? '0,0').split(',', 2);
  const parse = (s: string | undefined): number => {
    const n = s !== undefined && /^\s*\d{1,9}\s*$/.test(s) ? Number(s) : 0;
    return n === 0 ? 0 : Math.max(n, 1000);
  };
  const cx = parse(x);
  const cy = parse(y);
  return { sendMs: cy, expectMs: cx, header: `${cy},${cx}` };
}

interface Subscription {
  id: string;
  destination: string;
}

export class StompSession implements Session, EventSink {
  readonly id = nextConnectionId();
  readonly peer: string;
  readonly pipeline: RequestPipeline;
  private readonly parser: FrameParser;
  private readonly subs = new Map<string, Subscription>();
  private sendTimer: NodeJS.Timeout | null = null;
  private silenceTimer: NodeJS.Timeout | null = null;
  private eventPrefixes: string[] | null = null;
  private eventsMuted = false;
  private messageSeq = 0;
  private isClosed = false;
  private readonly log: Logger;

  constructor(
    private readonly transport: StompTransport,
    private readonly deps: StompSessionDeps,
  ) {
    this.peer = transport.peer;
    this.parser = new FrameParser({ maxFrameBytes: deps.limits.maxFrameBytes });
    this.log = deps.log.child({ conn: this.id });
    this.pipeline = new RequestPipeline({
      registry: deps.registry,
      limits: deps.limits,
      session: this,
      input: { pause: () => transport.holdInput(true), resume: () => transport.holdInput(false) },
      log: this.log,
      notJson: 'the SEND body',
    });
  }

  /** Bytes from the peer, in any chunking. */
  receive(chunk: Buffer): void {
    if (this.isClosed) return;
    this.silenceTimer?.refresh();
    for (const item of this.parser.push(chunk)) {
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- the frame before may have closed it
      if (this.isClosed) return;
      if (item.kind === 'frame') this.onFrame(item.frame);
      else if (item.kind === 'error') {
        this.log.info({ peer: this.peer, code: item.code }, 'STOMP framing error, closing');
        this.write(errorFrame(item.message));
        this.transport.end();
      }
    }
  }

  /** The transport closed: forget subscriptions and timers. */
  closed(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.pipeline.close();
    this.stopHeartBeats();
    this.subs.clear();
    this.deps.hub.unsubscribe(this);
  }

  /** Daemon shutdown: an ERROR saying why, then close. */
  shutdown(reason: string): void {
    if (this.isClosed) return;
    this.write(errorFrame(reason));
    this.transport.end();
  }

  // ---- Session (registry side) ----------------------------------------------------------

  subscribeEvents(prefixes: string[] | null): void {
    this.eventPrefixes = prefixes;
    this.eventsMuted = false;
    this.syncHubSubscription();
  }

  unsubscribeEvents(): void {
    this.eventsMuted = true;
    this.syncHubSubscription();
  }

  // ---- EventSink (hub side) -------------------------------------------------------------

  bufferedBytes(): number {
    return this.transport.bufferedBytes();
  }

  sendEvent(json: string): void {
    for (const sub of this.subs.values()) if (sub.destination === EVENTS_DESTINATION) this.sendMessage(sub, json);
  }

  dropSlow(reason: string): void {
    this.log.info({ peer: this.peer, reason }, 'closing STOMP connection');
    this.transport.destroy();
  }

  // ---- frames ---------------------------------------------------------------------------

  private onFrame(frame: StompFrame): void {
    switch (frame.command) {
      case 'CONNECT':
      case 'STOMP':
        return this.onConnect(frame);
      case 'SUBSCRIBE':
        return this.onSubscribe(frame);
      case 'UNSUBSCRIBE':
        return this.onUnsubscribe(frame);
      case 'SEND':
        return this.onSend(frame);
      case 'DISCONNECT':
        return this.onDisconnect(frame);
      case 'ACK':
      case 'NACK':
      case 'BEGIN':
      case 'COMMIT':
      case 'ABORT':
        return this.error(
          `${frame.command} is not supported: subscriptions are ack:auto and there are no transactions`,
        );
      default:
        // VDSM closes on a command it does not know; so do we.
        this.log.info({ peer: this.peer, command: frame.command.slice(0, 40) }, 'unknown STOMP command, closing');
        this.transport.end();
    }
  }

  private onConnect(frame: StompFrame): void {
    if (!offersVersion12(frame.headers.get('accept-version'))) return this.error('Version unsupported');
    const hb = negotiateHeartBeat(frame.headers.get('heart-beat'));
    this.write(
      encodeFrame({
        command: 'CONNECTED',
        headers: [
          ['version', '1.2'],
          ['heart-beat', hb.header],
        ],
      }),
    );
    this.startHeartBeats(hb);
    this.log.debug({ peer: this.peer, heartBeat: hb.header }, 'STOMP connected');
  }

  private onSubscribe(frame: StompFrame): void {
    const destination = frame.headers.get('destination');
    const id = frame.headers.get('id');
    if (!destination || !id) return this.error('Missing destination or subscription id header');
    if (this.subs.has(id)) return this.error('Subscription id already exists');
    this.subs.set(id, { id, destination });
    if (destination === EVENTS_DESTINATION) this.syncHubSubscription();
    this.receipt(frame);
  }

  private onUnsubscribe(frame: StompFrame): void {
    const id = frame.headers.get('id');
    if (!id) return this.error('Missing id header');
    const sub = this.subs.get(id);
    // An unknown id is not an error in VDSM (it only logs it).
    if (sub) {
      this.subs.delete(id);
      if (sub.destination === EVENTS_DESTINATION) this.syncHubSubscription();
    }
    this.receipt(frame);
  }

  private onSend(frame: StompFrame): void {
    const destination = frame.headers.get('destination');
    if (!destination) return this.error('Missing destination header');
    // Like VDSM's broker, a SEND is also copied to subscriptions of its destination (or of a
    // dotted parent of it) — on this connection only, so no client sees another's traffic.
    const copies = this.subscriptionsUnder(destination);
    if (copies.length) {
      const extra = [...frame.headers].filter(
        ([k]) => k !== 'destination' && k !== 'content-length' && k !== 'receipt',
      );
      for (const sub of copies) this.sendMessage(sub, frame.body, extra, destination);
    }
    if (isRequestDestination(destination)) {
      this.dispatch(frame);
      return this.receipt(frame);
    }
    if (!copies.length) return this.error('Subscription not available');
    this.receipt(frame);
  }

  private onDisconnect(frame: StompFrame): void {
    const receipt = frame.headers.get('receipt');
    if (receipt) this.write(encodeFrame({ command: 'RECEIPT', headers: [['receipt-id', receipt]] }));
    this.transport.end();
  }

  // ---- requests ---------------------------------------------------------------------------

  private dispatch(frame: StompFrame): void {
    const replyTo = frame.headers.get('reply-to') ?? null;
    this.log.debug({ bytes: frame.body.length, flowId: frame.headers.get('ovirtCorrelationId') }, 'request');
    this.pipeline.submitText(frame.body.toString('utf8'), (reply, written) => this.reply(replyTo, reply, written));
  }

  /** A response goes to this connection's subscriptions of reply-to; none (or no reply-to): dropped, as VDSM. */
  private reply(replyTo: string | null, reply: NonNullable<Reply>, written: () => void): void {
    const subs =
      replyTo === null || this.isClosed ? [] : [...this.subs.values()].filter((s) => s.destination === replyTo);
    if (subs.length === 0) {
      if (replyTo !== null)
        this.log.debug({ replyTo: replyTo.slice(0, 100) }, 'response dropped: no subscription to its reply-to');
      written();
      return;
    }
    // Pre-serialised results (Host.getAllVmStats) are written into the envelope as they are.
    const json = replyText(reply);
    let left = subs.length;
    for (const sub of subs) this.sendMessage(sub, json, [], sub.destination, () => --left === 0 && written());
  }

  // ---- output -----------------------------------------------------------------------------

  private sendMessage(
    sub: Subscription,
    body: string | Buffer,
    extra: readonly [string, string][] = [],
    destination = sub.destination,
    written?: () => void,
  ): void {
    const headers: [string, string][] = [
      ['destination', destination],
      ['content-type', 'application/json'],
      ['subscription', sub.id],
      ['message-id', `${this.id}-${++this.messageSeq}`],
    ];
    for (const [k, v] of extra) if (!headers.some(([h]) => h === k)) headers.push([k, v]);
    this.write(encodeFrame({ command: 'MESSAGE', headers, body }), written);
  }

  private receipt(frame: StompFrame): void {
    const receipt = frame.headers.get('receipt');
    if (receipt) this.write(encodeFrame({ command: 'RECEIPT', headers: [['receipt-id', receipt]] }));
  }

  private error(text: string): void {
    this.log.info({ peer: this.peer, error: text }, 'STOMP ERROR sent');
    this.write(errorFrame(text));
  }

  private write(data: Buffer, written?: () => void): void {
    if (this.isClosed) return written?.();
    this.transport.write(data, written);
    this.sendTimer?.refresh();
  }

  private subscriptionsUnder(destination: string): Subscription[] {
    const found: Subscription[] = [];
    for (const sub of this.subs.values()) {
      if (destination === sub.destination || destination.startsWith(sub.destination + '.')) found.push(sub);
    }
    return found;
  }

  private syncHubSubscription(): void {
    if (this.isClosed) return;
    const wanted = !this.eventsMuted && [...this.subs.values()].some((s) => s.destination === EVENTS_DESTINATION);
    if (wanted) this.deps.hub.subscribe(this, this.eventPrefixes);
    else this.deps.hub.unsubscribe(this);
  }

  private startHeartBeats(hb: HeartBeat): void {
    this.stopHeartBeats();
    if (hb.sendMs > 0) {
      this.sendTimer = setTimeout(() => this.write(HEARTBEAT_BYTES), hb.sendMs);
      this.sendTimer.unref();
    }
    if (hb.expectMs > 0) {
      const limit = Math.round(hb.expectMs * SILENCE_TOLERANCE);
      this.silenceTimer = setTimeout(() => {
        this.log.info({ peer: this.peer, silentMs: limit }, 'STOMP peer silent past its heart-beat, closing');
        this.transport.destroy();
      }, limit);
      this.silenceTimer.unref();
    }
  }

  private stopHeartBeats(): void {
    if (this.sendTimer) clearTimeout(this.sendTimer);
    if (this.silenceTimer) clearTimeout(this.silenceTimer);
    this.sendTimer = null;
    this.silenceTimer = null;
  }
}

/** VDSM's ERROR: the text as body, no other header than content-length. */
function errorFrame(text: string): Buffer {
  return encodeFrame({ command: 'ERROR', headers: [], body: text });
}
