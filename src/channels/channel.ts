// One channel socket: the daemon is the client (QEMU listens). It feeds received bytes to a
// protocol handler, reconnects with backoff when the peer closes or the socket is replaced, and
// stops reading while its VM's byte budget is in debt. Nothing here waits on the guest: every
// operation is event-driven, so a stuck channel holds up nobody else.
import net from 'node:net';
import type { Logger } from 'pino';
import { ChannelLogCode } from '../guest/issues.js';
import type { TokenBucket } from '../guest/rateBudget.js';
import { metrics } from '../metrics/metrics.js';

export interface ChannelWriter {
  /** Queues bytes for the agent; false (and nothing queued) when the agent is not reading. */
  write(bytes: Buffer): boolean;
}

export interface ChannelHandler {
  connected(writer: ChannelWriter): void;
  /** `chunk` is a view of a read buffer every channel shares: use or copy it before returning. */
  data(chunk: Buffer): void;
  disconnected(): void;
}

export interface ChannelConnectionOptions {
  path: string;
  handler: ChannelHandler;
  log: Logger;
  /** What every line about this channel carries (vmId, channel): a child logger per channel was ~0.4 KiB per VM. */
  fields?: Readonly<Record<string, string>>;
  /** The VM's byte budget, shared by its channels. */
  bytes: TokenBucket;
  now?: () => number;
  backoff?: { initialMs: number; maxMs: number };
  connectTimeoutMs?: number;
  /** Level of the first 'channel connected' line (default info): debug for the sockets found at start-up, summed up in one line. */
  firstConnectLevel?: 'info' | 'debug';
}

/** Reconnect delays unless given (one object shared by every connection). */
const DEFAULT_BACKOFF = Object.freeze({ initialMs: 100, maxMs: 10_000 });

/** A connection up this long counts as healthy: the next drop retries from the shortest delay. */
const STABLE_MS = 5000;

/** Unsent bytes past which the agent is taken to be not reading (we send a few hundred bytes a poll). */
const MAX_UNSENT_BYTES = 64 * 1024;

// Every channel reads into this one buffer (net's `onread`): a read allocates nothing and skips
// the stream machinery, which with a thousand polled agents was most of the daemon's idle CPU.
// Safe because handlers consume (or copy) a chunk synchronously, before the next read.
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

// Views of READ_BUFFER by length, each made on first use: a read hands its handler one of these
// rather than a new subarray (~100 bytes of garbage and a constructor call per read, for every
// agent message). Short reads only, where agents' messages are (a heartbeat is ~330 bytes): at
// most ~0.4 MB even if every length occurs.
const CACHED_VIEWS = 4096;
const readViews = new Array<Buffer | undefined>(CACHED_VIEWS + 1).fill(undefined);

function readView(n: number): Buffer {
  if (n > CACHED_VIEWS) return READ_BUFFER.subarray(0, n);
  return (readViews[n] ??= READ_BUFFER.subarray(0, n));
}

export class ChannelConnection {
  private socket: net.Socket | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private resumeTimer: NodeJS.Timeout | null = null;
  /** While connecting. Not the socket's own setTimeout(): that keeps a timer, a bound callback and a listener for the socket's life. */
  private connectTimer: NodeJS.Timeout | null = null;
  private attempt = 0;
  private stopped = false;
  /** errno of the current streak of failures (null: connected or not tried), so each cause is said once. */
  private failing: string | null = null;
  private connectedBefore = false;
  private readonly now: () => number;
  private readonly backoff: { initialMs: number; maxMs: number };

  constructor(private readonly opts: ChannelConnectionOptions) {
    this.now = opts.now ?? Date.now;
    this.backoff = opts.backoff ?? DEFAULT_BACKOFF;
  }

  start(): void {
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    this.clearTimers();
    this.socket?.destroy();
    this.socket = null;
  }

  /** The socket file was replaced: drop the old connection and connect to the new one now. */
  reconnectNow(): void {
    if (this.stopped) return;
    this.attempt = 0;
    this.clearTimers();
    if (this.socket)
      this.socket.destroy(); // 'close' reconnects
    else this.connect();
  }

  private clearTimers(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.resumeTimer) clearTimeout(this.resumeTimer);
    this.retryTimer = this.resumeTimer = null;
    this.clearConnectTimer();
  }

  private clearConnectTimer(): void {
    if (this.connectTimer) clearTimeout(this.connectTimer);
    this.connectTimer = null;
  }

  /** A line's fields with the channel's own first. */
  private with(fields: Record<string, unknown>): Record<string, unknown> {
    return this.opts.fields ? { ...this.opts.fields, ...fields } : fields;
  }

  private connect(): void {
    if (this.stopped) return;
    const { path, log, handler } = this.opts;
    const socket: net.Socket = net.createConnection({
      path,
      onread: {
        buffer: READ_BUFFER,
        callback: (n: number): boolean => this.received(socket, readView(n)),
      },
    });
    this.socket = socket;
    let up = false;
    let upSince = 0;
    this.clearConnectTimer();
    this.connectTimer = setTimeout(() => {
      this.connectTimer = null;
      if (!up) socket.destroy(Object.assign(new Error('connect timed out'), { code: 'ETIMEDOUT' }));
    }, this.opts.connectTimeoutMs ?? 5000);
    this.connectTimer.unref();
    socket.on('connect', () => {
      up = true;
      upSince = this.now();
      this.clearConnectTimer();
      this.failing = null;
      log[this.connectedBefore ? 'info' : (this.opts.firstConnectLevel ?? 'info')](
        this.with({ path }),
        'channel connected',
      );
      this.connectedBefore = true;
      this.guard(() => handler.connected({ write: (bytes) => this.write(socket, bytes) }));
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // Reported once per streak of failures; the retries behind it are debug.
      const code = up ? ChannelLogCode.failed : ChannelLogCode.unavailable;
      const errno = err.code ?? 'EUNKNOWN';
      // A socket we may not connect to is a setup problem (service user's groups), not a VM stopping.
      if (this.failing === errno || this.stopped) log.debug(this.with({ path, code, errno }), 'channel connect failed');
      else if (errno === 'EACCES' || errno === 'EPERM') {
        log.warn(
          this.with({ path, code, errno, err: err.message }),
          `may not connect to channel socket ${path} (${errno}): the service user needs the socket's group`,
        );
      } else
        log.info(this.with({ path, code, errno, err: err.message }), up ? 'channel failed' : 'channel not available');
      this.failing = errno;
    });
    socket.on('close', () => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.resumeTimer) clearTimeout(this.resumeTimer);
      this.clearConnectTimer();
      if (up) {
        log.info(this.with({ path }), 'channel disconnected');
        this.guard(() => handler.disconnected());
      }
      if (this.stopped) return;
      if (up) metrics.channelReconnect(path);
      // A connection that held for a while earns a fast retry; one that keeps dropping backs off.
      if (up && this.now() - upSince >= STABLE_MS) this.attempt = 0;
      const base = Math.min(this.backoff.maxMs, this.backoff.initialMs * 2 ** this.attempt);
      this.attempt = Math.min(this.attempt + 1, 20);
      this.retryTimer = setTimeout(() => this.connect(), Math.round(base * (0.8 + Math.random() * 0.4)));
    });
  }

  /** Always true: pausing for the byte budget goes through pause()/resume(), which `onread` honours. */
  private received(socket: net.Socket, chunk: Buffer): boolean {
    const waitMs = this.opts.bytes.charge(chunk.length, this.now());
    if (waitMs > 0 && !socket.isPaused()) {
      socket.pause();
      this.resumeTimer = setTimeout(() => socket.resume(), waitMs);
    }
    try {
      this.opts.handler.data(chunk); // inline, not through guard(): no closure per read
    } catch (err) {
      this.handlerFailed(err);
    }
    return true;
  }

  private write(socket: net.Socket, bytes: Buffer): boolean {
    if (socket.destroyed || this.socket !== socket || socket.writableLength > MAX_UNSENT_BYTES) return false;
    socket.write(bytes);
    return true;
  }

  /** A handler bug must cost one connection, never the daemon. */
  private guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.handlerFailed(err);
    }
  }

  private handlerFailed(err: unknown): void {
    this.opts.log.error(
      this.with({ err, path: this.opts.path, code: ChannelLogCode.handlerFailed }),
      'channel handler failed; reconnecting',
    );
    this.socket?.destroy();
  }
}
