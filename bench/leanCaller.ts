// A measuring JSON-RPC client that costs next to nothing per reply, for timing large replies
// (Host.getAllVmStats for a thousand VMs is ~840 KiB). The `ws` client allocates every socket
// read and concatenates each message into a fresh buffer: at hundreds of calls that is tens of
// megabytes of external memory, and the bench process's own mark-compact GCs (6-25 ms) then land
// inside the calls being timed. This one speaks just enough WebSocket (RFC 6455: the upgrade, a
// masked text frame out, frame headers in) and reads into ONE reused buffer (net's `onread`), so
// a reply is only counted, never kept: its first bytes are checked for the id and "result".
import { randomBytes } from 'node:crypto';
import net from 'node:net';

const HEAD_BYTES = 64;

export class LeanCaller {
  private handshake = '';
  private upgraded = false;
  private opened: ((err?: Error) => void) | null;
  /** Frame header bytes collected so far (a header can be split between reads). */
  private readonly header = Buffer.alloc(14);
  private headerLen = 0;
  private payloadLeft = 0;
  private fin = false;
  private control = false;
  private readonly head = Buffer.alloc(HEAD_BYTES);
  private headLen = 0;
  private messageBytes = 0;
  private waiting: ((size: number, head: string) => void) | null = null;
  private id = 0;

  private constructor(
    private readonly sock: net.Socket,
    opened: (err?: Error) => void,
  ) {
    this.opened = opened;
  }

  static open(url: string): Promise<LeanCaller> {
    const { hostname, port } = new URL(url);
    return new Promise((resolve, reject) => {
      let caller: LeanCaller | null = null;
      const readBuf = Buffer.allocUnsafe(256 * 1024);
      const sock = net.connect({
        host: hostname,
        port: Number(port),
        onread: {
          buffer: readBuf,
          callback: (n) => {
            caller!.onBytes(readBuf, n);
            return true;
          },
        },
      });
      caller = new LeanCaller(sock, (err) => (err ? reject(err) : resolve(caller!)));
      sock.once('error', (err) => caller.opened?.(err));
      sock.once('connect', () =>
        sock.write(
          `GET / HTTP/1.1\r\nHost: ${hostname}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
            `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
        ),
      );
    });
  }

  /** Calls `method`; resolves with the reply's size in bytes once all of it was read. */
  call(method: string, params?: unknown): Promise<number> {
    const id = ++this.id;
    return new Promise((resolve, reject) => {
      this.waiting = (size, head) => {
        const m = /"id":(\d+),"result":/.exec(head);
        if (!m || Number(m[1]) !== id) reject(new Error(`bad reply to ${method}: ${head}`));
        else resolve(size);
      };
      this.sendText(JSON.stringify({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) }));
    });
  }

  close(): void {
    this.sock.destroy();
  }

  private sendText(text: string): void {
    const payload = Buffer.from(text);
    const len = payload.length;
    const ext = len < 126 ? 0 : len < 65536 ? 2 : 8;
    const frame = Buffer.allocUnsafe(2 + ext + 4 + len);
    frame[0] = 0x81; // FIN, text
    frame[1] = 0x80 | (ext === 0 ? len : ext === 2 ? 126 : 127);
    if (ext === 2) frame.writeUInt16BE(len, 2);
    else if (ext === 8) frame.writeBigUInt64BE(BigInt(len), 2);
    const mask = randomBytes(4);
    mask.copy(frame, 2 + ext);
    for (let i = 0; i < len; i++) frame[2 + ext + 4 + i] = payload[i]! ^ mask[i & 3]!;
    this.sock.write(frame);
  }

  private onBytes(buf: Buffer, n: number): void {
    let i = 0;
    if (!this.upgraded) {
      // The 101 response is small; it may share a read with the first frame.
      const text = buf.toString('latin1', 0, n);
      const end = (this.handshake + text).indexOf('\r\n\r\n');
      if (end < 0) {
        this.handshake += text;
        return;
      }
      const status = (this.handshake + text).slice(0, end);
      i = end + 4 - this.handshake.length;
      this.upgraded = true;
      const opened = this.opened!;
      this.opened = null;
      if (!status.startsWith('HTTP/1.1 101')) return opened(new Error(`upgrade refused: ${status}`));
      opened();
    }
    while (i < n) {
      if (this.payloadLeft === 0) {
        // Collecting a header: 2 bytes, then the extended length (server frames are unmasked).
        this.header[this.headerLen++] = buf[i++]!;
        if (this.headerLen < 2) continue;
        const len7 = this.header[1]! & 0x7f;
        const need = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0);
        if (this.headerLen < need) continue;
        const len =
          len7 === 126 ? this.header.readUInt16BE(2) : len7 === 127 ? Number(this.header.readBigUInt64BE(2)) : len7;
        this.fin = (this.header[0]! & 0x80) !== 0;
        this.control = (this.header[0]! & 0x08) !== 0;
        this.headerLen = 0;
        this.payloadLeft = len;
        if (len === 0) this.frameDone();
        continue;
      }
      const take = Math.min(this.payloadLeft, n - i);
      if (!this.control) {
        const keep = Math.min(take, HEAD_BYTES - this.headLen);
        if (keep > 0) this.headLen += buf.copy(this.head, this.headLen, i, i + keep);
        this.messageBytes += take;
      }
      i += take;
      this.payloadLeft -= take;
      if (this.payloadLeft === 0) this.frameDone();
    }
  }

  private frameDone(): void {
    if (this.control || !this.fin) return; // pings and the like carry no reply; a fragment waits for the rest
    const size = this.messageBytes;
    const head = this.head.toString('utf8', 0, this.headLen);
    this.messageBytes = 0;
    this.headLen = 0;
    const w = this.waiting;
    this.waiting = null;
    w?.(size, head);
  }
}
