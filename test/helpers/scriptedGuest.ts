// A scripted guest agent on a real UNIX socket, listening as QEMU does for a channel: it accepts
// the daemon's connection, records every line the daemon sends, and writes whatever bytes the
// test tells it to (valid messages, fixtures replayed, or raw hostile bytes). Closed after the
// test file, even on failure.
import net from 'node:net';
import { rmSync } from 'node:fs';
import { atFileEnd } from './fileCleanup.js';

const open = new Set<ScriptedGuest>();
// Registered at import: vitest ignores hooks added later (from inside beforeAll), and cleanup
// must run even when a file's set-up fails.
atFileEnd(async () => {
  for (const g of [...open]) await g.close();
});

export class ScriptedGuest {
  readonly received: string[] = [];
  private client: net.Socket | null = null;
  private connWaiters: ((s: net.Socket) => void)[] = [];
  private lineWaiters: { pred: (l: string) => boolean; resolve: (l: string) => void }[] = [];
  private buf = '';
  connections = 0;
  /** Called for every line the daemon sends; may answer through `write`. */
  onLine: ((line: string, guest: ScriptedGuest) => void) | null = null;

  private constructor(
    readonly path: string,
    private readonly server: net.Server,
  ) {
    server.on('connection', (s) => {
      this.connections++;
      this.client?.destroy();
      this.client = s;
      s.on('error', () => {});
      s.on('data', (chunk: Buffer) => this.onData(chunk));
      for (const w of this.connWaiters.splice(0)) w(s);
    });
  }

  static async listen(path: string): Promise<ScriptedGuest> {
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
    const g = new ScriptedGuest(path, server);
    open.add(g);
    return g;
  }

  private onData(chunk: Buffer): void {
    this.buf += chunk.toString('latin1');
    let nl;
    while ((nl = this.buf.indexOf('\n')) !== -1) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      this.received.push(line);
      for (const w of [...this.lineWaiters]) {
        if (w.pred(line)) {
          this.lineWaiters.splice(this.lineWaiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
      this.onLine?.(line, this);
    }
  }

  /** Resolves when the daemon is connected (now or later). */
  connected(timeoutMs = 10_000): Promise<net.Socket> {
    if (this.client && !this.client.destroyed) return Promise.resolve(this.client);
    return withTimeout(
      new Promise((resolve) => this.connWaiters.push(resolve)),
      timeoutMs,
      `no connection to ${this.path}`,
    );
  }

  /** A connection made after this call. */
  nextConnection(timeoutMs = 10_000): Promise<net.Socket> {
    return withTimeout(
      new Promise((resolve) => this.connWaiters.push(resolve)),
      timeoutMs,
      `no new connection to ${this.path}`,
    );
  }

  waitForLine(pred: (l: string) => boolean, timeoutMs = 10_000, fromIndex = 0): Promise<string> {
    const found = this.received.slice(fromIndex).find(pred);
    if (found !== undefined) return Promise.resolve(found);
    return withTimeout(
      new Promise((resolve) => this.lineWaiters.push({ pred, resolve })),
      timeoutMs,
      `line not received on ${this.path}`,
    );
  }

  /** Writes raw bytes to the connected daemon; resolves when the kernel took them. */
  async write(bytes: Buffer | string): Promise<void> {
    const s = await this.connected();
    await new Promise<void>((resolve, reject) => s.write(bytes, (err) => (err ? reject(err) : resolve())));
  }

  /** Sends one oVirt message (an object gets `__name__` and a newline). */
  send(name: string, args: Record<string, unknown> = {}): Promise<void> {
    return this.write(JSON.stringify({ __name__: name, ...args }) + '\n');
  }

  /** Drops the daemon's connection (the listener stays). */
  hangUp(): void {
    this.client?.destroy();
    this.client = null;
  }

  async close(unlink = true): Promise<void> {
    open.delete(this);
    this.client?.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    if (unlink) rmSync(this.path, { force: true });
  }
}

export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms))),
  ]);
}

/** Polls `fn` until it returns a value that satisfies `ok`; returns that value. */
export async function eventually<T>(
  fn: () => Promise<T> | T,
  ok: (v: T) => boolean,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: T | undefined;
  let lastErr: unknown;
  while (Date.now() < end) {
    try {
      last = await fn();
      if (ok(last)) return last;
    } catch (err) {
      lastErr = err;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(
    `${what} not met within ${timeoutMs} ms; last value: ${JSON.stringify(last)?.slice(0, 2000)}${lastErr === undefined ? '' : `; last error: ${lastErr instanceof Error ? lastErr.message : JSON.stringify(lastErr)}`}`,
  );
}

/**
 * Makes a ScriptedGuest answer as qemu-ga does: 0xFF + `{"return": id}` to guest-sync-delimited,
 * `reply(command)` bytes to anything else (null: no answer). `beforeSync` / `afterDelimiter` are
 * written around the 0xFF of the next sync only (stale replies a real agent may still send).
 */
export function actAsQemuGa(
  guest: ScriptedGuest,
  reply: (command: string) => Buffer | string | null,
): { stale: (beforeSync: string, afterDelimiter: string) => void; silent: boolean } {
  let stale: [string, string] | null = null;
  const controls = { stale: (b: string, a: string) => void (stale = [b, a]), silent: false };
  guest.onLine = (line, g) => {
    if (controls.silent) return; // a stalled agent: reads, never answers
    const req = JSON.parse(line.replace(/^\xff/, '')) as { execute: string; arguments?: { id: number } };
    if (req.execute === 'guest-sync-delimited') {
      const [before, after] = stale ?? ['', ''];
      stale = null;
      void g.write(
        Buffer.concat([
          Buffer.from(before),
          Buffer.of(0xff),
          Buffer.from(`${after}{"return": ${req.arguments!.id}}\n`),
        ]),
      );
      return;
    }
    const bytes = reply(req.execute);
    if (bytes !== null) void g.write(bytes);
  };
  return controls;
}
