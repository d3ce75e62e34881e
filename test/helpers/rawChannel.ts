// A host-side client of one channel socket, as raw as the daemon's view of it: the bytes that
// arrived, split into JSON lines on request, and waits for a condition on them.
import net from 'node:net';

export class RawChannel {
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  closed = false;

  private constructor(readonly sock: net.Socket) {
    sock.on('data', (chunk: Buffer) => {
      this.buf = Buffer.concat([this.buf, chunk]);
      for (const w of this.waiters.splice(0)) w();
    });
    sock.on('close', () => {
      this.closed = true;
      for (const w of this.waiters.splice(0)) w();
    });
    sock.on('error', () => {});
  }

  static connect(path: string): Promise<RawChannel> {
    return new Promise((resolve, reject) => {
      const sock = net.createConnection(path);
      sock.once('connect', () => {
        sock.off('error', reject);
        resolve(new RawChannel(sock));
      });
      sock.once('error', reject);
    });
  }

  bytes(): Buffer {
    return this.buf;
  }

  /** Everything received so far, as text lines parsed as JSON (0xFF bytes removed). */
  messages(): Record<string, unknown>[] {
    const text = Buffer.from(this.buf.filter((b) => b !== 0xff)).toString('utf8');
    return text
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  /** Forgets what was received so far. */
  clear(): void {
    this.buf = Buffer.alloc(0);
  }

  write(data: string | Buffer): void {
    this.sock.write(data);
  }

  /** Resolves once `pred` holds for what was received; rejects after `timeoutMs`. */
  async waitFor(pred: (c: RawChannel) => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred(this)) {
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`timed out waiting for ${what}; received: ${this.buf.toString('utf8').slice(0, 2000)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Sends `data` and waits for `count` more complete lines than before. */
  async request(data: string | Buffer, count = 1, timeoutMs = 5000): Promise<Record<string, unknown>[]> {
    const before = this.lineCount();
    this.write(data);
    await this.waitFor(
      (c) => c.lineCount() >= before + count,
      timeoutMs,
      `${count} reply line(s) to ${String(data).slice(0, 80)}`,
    );
    return this.messages().slice(before, before + count);
  }

  lineCount(): number {
    let n = 0;
    for (const b of this.buf) if (b === 0x0a) n++;
    return n;
  }

  close(): void {
    this.sock.destroy();
  }
}
