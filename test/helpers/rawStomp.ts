// A bare TCP/TLS socket for STOMP tests that need exact bytes: what we write goes out as
// given (garbage, one byte at a time, oversized), and what the daemon sends is kept verbatim.
import net from 'node:net';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';

export class RawStomp {
  /** NUL bytes received so far: complete frames, counted as they arrive (cheap to poll). */
  nulCount = 0;
  readonly closed: Promise<void>;
  private chunks: Buffer[] = [];
  isClosed = false;
  private waiters: (() => void)[] = [];

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.chunks.push(d);
      for (let i = d.indexOf(0); i !== -1; i = d.indexOf(0, i + 1)) this.nulCount++;
      for (const w of this.waiters.splice(0)) w();
    });
    socket.on('error', () => {});
    this.closed = new Promise((resolve) =>
      socket.on('close', () => {
        this.isClosed = true;
        for (const w of this.waiters.splice(0)) w();
        resolve();
      }),
    );
  }

  static connect(
    port: number,
    opts: { host?: string; tls?: { cert: string; key: string; ca: string } } = {},
  ): Promise<RawStomp> {
    const host = opts.host ?? '127.0.0.1';
    return new Promise((resolve, reject) => {
      const socket = opts.tls
        ? tls.connect(
            {
              host,
              port,
              cert: readFileSync(opts.tls.cert),
              key: readFileSync(opts.tls.key),
              ca: readFileSync(opts.tls.ca),
            },
            () => resolve(new RawStomp(socket)),
          )
        : net.connect(port, host, () => resolve(new RawStomp(socket)));
      socket.once('error', reject);
    });
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** Writes one byte per write, waiting a moment between them so they arrive apart. */
  async writeBytewise(data: string | Buffer, gapMs = 2): Promise<void> {
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    for (const b of bytes) {
      this.socket.write(Buffer.of(b));
      await new Promise((r) => setTimeout(r, gapMs));
    }
  }

  /** Every byte received so far. */
  get received(): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0] ?? Buffer.alloc(0);
  }

  /** The received text. */
  text(): string {
    return this.received.toString('utf8');
  }

  /** Complete frames received so far, as text up to (not including) the NUL, heart-beats before them dropped. */
  frames(): string[] {
    const parts = this.text().split('\0');
    parts.pop();
    return parts.map((p) => p.replace(/^[\r\n]+/, ''));
  }

  /** Resolves once `pred` holds (checked on every arrival and on close); rejects after `timeoutMs`. */
  until(pred: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(`${what} not met within ${timeoutMs} ms; received ${JSON.stringify(this.text().slice(-500))}`),
          ),
        timeoutMs,
      );
      const check = (): void => {
        if (pred()) {
          clearTimeout(timer);
          resolve();
        } else if (this.isClosed) {
          clearTimeout(timer);
          if (pred()) resolve();
          else
            reject(new Error(`connection closed before ${what}; received ${JSON.stringify(this.text().slice(-500))}`));
        } else this.waiters.push(check);
      };
      check();
    });
  }

  /** Waits for `n` complete frames and returns them. */
  async nextFrames(n: number, timeoutMs = 5000): Promise<string[]> {
    await this.until(() => this.nulCount >= n, timeoutMs, `${n} frame(s)`);
    return this.frames();
  }

  close(): void {
    this.socket.destroy();
  }
}

/** A STOMP frame as bytes, content-length added for bodies. */
export function frame(command: string, headers: Record<string, string> = {}, body?: string): string {
  let s = command + '\n';
  for (const [k, v] of Object.entries(headers)) s += `${k}:${v}\n`;
  if (body !== undefined) s += `content-length:${Buffer.byteLength(body)}\n`;
  return s + '\n' + (body ?? '') + '\0';
}
