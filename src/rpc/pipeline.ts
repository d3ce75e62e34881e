// The request path of one connection, whatever carries it (a WebSocket, raw STOMP, STOMP over
// WebSocket): the transport hands in each message's text and how to deliver its reply; this
// owns the rest — JSON parsing, batch limits, notifications, requests in flight and the errors
// for limits, and waiting until the connection is idle. Both transports therefore refuse
// exactly alike.
//
// Backpressure: a request counts as in flight until its reply has been written to the socket.
// At the in-flight limit the pipeline stops reading from the peer (TCP then slows the peer
// down) and resumes below it; messages already read meanwhile wait their turn here, in order.
// A client pipelining faster than it is answered is thus slowed, never refused, and one that
// does not read its replies holds at most the limit's worth of them in memory.
import type { Logger } from 'pino';
import { ErrorCode } from '../wire.js';
import { errorReply, refuseAll, requestCount, type MethodRegistry, type Reply, type Session } from './registry.js';

interface PipelineLimits {
  maxBatch: number;
  maxInFlight: number;
}

/**
 * Sends a reply to the peer; calls `written` once its bytes were handed to the kernel (or could
 * not be: the connection is gone), exactly once. A transport that sends nothing calls it at once.
 */
export type Deliver = (reply: NonNullable<Reply>, written: () => void) => void;

/** What the pipeline asks of the transport's input side. */
interface InputControl {
  /** Stop reading from the peer (pause the socket). */
  pause(): void;
  /** Read again. */
  resume(): void;
}

interface PipelineOptions {
  registry: MethodRegistry;
  limits: PipelineLimits;
  session: Session;
  input: InputControl;
  log: Logger;
  /** The -32700 text, naming what was not JSON ("the frame", "the SEND body"). */
  notJson: string;
}

interface Pending {
  /** Requests it counts as against the in-flight limit. */
  n: number;
  answer: () => Promise<Reply>;
  deliver: Deliver;
}

export class RequestPipeline {
  private inFlightCount = 0;
  private readonly waiting: Pending[] = [];
  private paused = false;
  private closed = false;
  private pumpScheduled = false;
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly opts: PipelineOptions) {}

  /** Requests accepted and not yet answered (reply written), plus those read and waiting. */
  get inFlight(): number {
    return this.inFlightCount + this.waiting.reduce((s, p) => s + p.n, 0);
  }

  /** One message's text (a WebSocket text frame, a STOMP SEND body). */
  submitText(text: string, deliver: Deliver): void {
    let message: unknown;
    try {
      message = JSON.parse(text);
    } catch {
      this.answerWith(
        errorReply(null, ErrorCode.parseError, `Parse error: ${this.opts.notJson} is not valid JSON`),
        deliver,
      );
      return;
    }
    this.submit(message, deliver);
  }

  /** One parsed message: a request, a notification or a batch. */
  submit(message: unknown, deliver: Deliver): void {
    const { maxBatch, maxInFlight } = this.opts.limits;
    // An over-long batch is refused by the registry at once (-32600): it counts as one request.
    const n = Array.isArray(message) && message.length > maxBatch ? 1 : requestCount(message);
    if (n > maxInFlight) {
      // A batch that could never fit under the limit, however long it waited: each request is
      // refused with its id, notifications get nothing (JSON-RPC 2.0).
      const why = `Server busy: more than ${maxInFlight} requests in flight on this connection`;
      this.answerWith(refuseAll(message, ErrorCode.serverBusy, why), deliver);
      return;
    }
    this.enqueue({
      n,
      deliver,
      answer: () => this.opts.registry.handle(message, this.opts.session, { maxBatch }),
    });
  }

  /** A reply decided by the transport itself (e.g. a binary WebSocket frame refused), in turn with the others. */
  answerWith(reply: Reply, deliver: Deliver): void {
    this.enqueue({ n: 1, deliver, answer: () => Promise.resolve(reply) });
  }

  /** Resolves once nothing is in flight or waiting (at once when the connection is gone). */
  whenIdle(): Promise<void> {
    return this.isIdle() ? Promise.resolve() : new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** The connection is gone: what waits is dropped, and nobody waits for it any more. */
  close(): void {
    this.closed = true;
    this.waiting.length = 0;
    for (const w of this.idleWaiters.splice(0)) w();
  }

  private isIdle(): boolean {
    return this.closed || (this.inFlightCount === 0 && this.waiting.length === 0);
  }

  private enqueue(p: Pending): void {
    if (this.closed) return;
    this.waiting.push(p);
    this.pump();
  }

  /** Starts what fits under the limit, in arrival order; pauses or resumes reading to match. */
  private pump(): void {
    const max = this.opts.limits.maxInFlight;
    for (
      let next = this.waiting[0];
      !this.closed && next && this.inFlightCount + next.n <= max;
      next = this.waiting[0]
    ) {
      this.waiting.shift();
      this.start(next);
    }
    const full = this.waiting.length > 0 || this.inFlightCount >= max;
    if (full && !this.paused && !this.closed) {
      this.paused = true;
      this.opts.input.pause();
    } else if (!full && this.paused) {
      this.paused = false;
      if (!this.closed) this.opts.input.resume();
    }
    if (this.isIdle()) for (const w of this.idleWaiters.splice(0)) w();
  }

  /**
   * After an answer went out, the next waiting requests start on a later turn of the event loop:
   * started from the write callbacks directly, one pipelining client's answers and requests would
   * chain without end and starve every other connection's input.
   */
  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  private start(p: Pending): void {
    this.inFlightCount += p.n;
    let settled = false;
    const written = (): void => {
      if (settled) return;
      settled = true;
      this.inFlightCount -= p.n;
      this.schedulePump();
    };
    p.answer()
      .catch((err: unknown) => {
        this.opts.log.error({ err }, 'request handling failed');
        return errorReply(null, ErrorCode.internalError, 'Internal error');
      })
      .then((reply) => {
        if (reply === null || this.closed) written();
        else p.deliver(reply, written);
      })
      .catch((err: unknown) => {
        this.opts.log.error({ err }, 'reply delivery failed');
        written();
      });
  }
}
