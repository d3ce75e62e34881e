// A bare qemu-ga client for tests: raw commands over a channel socket, independent of the
// daemon's own protocol code, so a test can check what the real agent says (and what a second
// client of a busy channel gets: nothing).
import net from 'node:net';
import { randomInt } from 'node:crypto';

interface Waiter {
  accept: (reply: Record<string, unknown>) => boolean;
  resolve: (reply: Record<string, unknown>) => void;
}

export class QgaSocket {
  private buf = Buffer.alloc(0);
  private skipToDelimiter = false;
  private waiter: Waiter | undefined;
  private closedError: Error | undefined;

  private constructor(private readonly sock: net.Socket) {
    sock.on('data', (chunk: Buffer) => this.onData(chunk));
    sock.on('error', (err) => (this.closedError = err));
    sock.on('close', () => (this.closedError ??= new Error('qemu-ga socket closed')));
  }

  static connect(socketPath: string): Promise<QgaSocket> {
    return new Promise((resolve, reject) => {
      const sock = net.connect(socketPath);
      sock.once('connect', () => {
        sock.off('error', reject);
        resolve(new QgaSocket(sock));
      });
      sock.once('error', reject);
    });
  }

  /** Connects and resynchronises, retrying until the agent answers (the guest may still boot). */
  static async connectWhenAnswering(socketPath: string, timeoutMs = 60_000): Promise<QgaSocket> {
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    const q = await QgaSocket.connect(socketPath);
    while (Date.now() < deadline) {
      try {
        await q.sync(3_000);
        return q;
      } catch (err) {
        last = err;
      }
    }
    q.close();
    throw new Error(`qemu-ga on ${socketPath} did not answer within ${timeoutMs} ms: ${String(last)}`);
  }

  private onData(chunk: Buffer): void {
    this.buf = Buffer.concat([this.buf, chunk]);
    if (this.skipToDelimiter) {
      const ff = this.buf.indexOf(0xff);
      if (ff === -1) {
        this.buf = Buffer.alloc(0);
        return;
      }
      this.buf = this.buf.subarray(ff + 1);
      this.skipToDelimiter = false;
    }
    let nl;
    while ((nl = this.buf.indexOf(0x0a)) !== -1) {
      const line = this.buf.subarray(0, nl).toString('utf8').trim();
      this.buf = this.buf.subarray(nl + 1);
      if (line === '') continue;
      let reply: Record<string, unknown>;
      try {
        reply = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      const w = this.waiter;
      if (w && w.accept(reply)) {
        this.waiter = undefined;
        w.resolve(reply);
      }
    }
  }

  private send(
    payload: Buffer,
    accept: Waiter['accept'],
    timeoutMs: number,
    what: string,
  ): Promise<Record<string, unknown>> {
    if (this.closedError) return Promise.reject(this.closedError);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new Error(`no answer to ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiter = {
        accept,
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
      };
      this.sock.write(payload);
    });
  }

  /** guest-sync-delimited with a random id, prefixed by 0xFF; skips everything up to its answer. */
  async sync(timeoutMs = 5_000): Promise<void> {
    const id = randomInt(1, 2 ** 31);
    this.skipToDelimiter = true;
    this.buf = Buffer.alloc(0);
    const body = JSON.stringify({ execute: 'guest-sync-delimited', arguments: { id } });
    await this.send(
      Buffer.concat([Buffer.from([0xff]), Buffer.from(body)]),
      (r) => r.return === id,
      timeoutMs,
      'guest-sync-delimited',
    );
  }

  /** One command; resolves with the whole reply object ({return} or {error}). */
  command(execute: string, args?: Record<string, unknown>, timeoutMs = 5_000): Promise<Record<string, unknown>> {
    const body = JSON.stringify(args ? { execute, arguments: args } : { execute });
    return this.send(Buffer.from(body), () => true, timeoutMs, execute);
  }

  close(): void {
    this.sock.destroy();
  }
}
