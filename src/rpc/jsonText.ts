// A method result that is already JSON (Host.getAllVmStats' reply, assembled from cached per-VM
// bytes). The transport has it written straight into the response envelope, in one buffer from
// its pool of reply buffers, instead of serialising a value; a serialiser that does not know
// about it still gets the right output through toJSON, only slower.
import type { JSONRPCResponse } from 'json-rpc-2.0';
import type { Reply } from './registry.js';

export type BufferAlloc = (size: number) => Buffer;

/** Writes the JSON value's UTF-8 bytes between `before` and `after`, into one buffer from `alloc`. */
export type JsonRender = (before: Buffer, after: Buffer, alloc: BufferAlloc) => Buffer;

const EMPTY = Buffer.alloc(0);
const CLOSE_BRACE = Buffer.from('}');
const plainAlloc: BufferAlloc = (size) => Buffer.allocUnsafe(size);

export class JsonText {
  constructor(readonly render: JsonRender) {}

  toJSON(): unknown {
    return JSON.parse(this.render(EMPTY, EMPTY, plainAlloc).toString('utf8'));
  }
}

/**
 * Large reply buffers, reused once the socket has written them: a client polling
 * Host.getAllVmStats for a thousand VMs then allocates nothing per call, and the garbage
 * collector is not driven by megabytes of short-lived buffers. Bounded: at most `maxFree` idle
 * buffers are kept; small replies are not pooled.
 */
export class ReplyBuffers {
  private readonly free: ArrayBuffer[] = [];

  constructor(
    private readonly maxFree = 4,
    private readonly minSize = 64 * 1024,
  ) {}

  readonly alloc: BufferAlloc = (size) => {
    if (size < this.minSize) return Buffer.allocUnsafe(size);
    const i = this.free.findIndex((b) => b.byteLength >= size);
    if (i >= 0) return Buffer.from(this.free.splice(i, 1)[0]!, 0, size);
    // None is large enough: the replies grew (VMs reported). The smallest idle buffer is the one
    // least likely to fit again; dropping it keeps the pool from holding megabytes it cannot use.
    if (this.free.length) this.free.splice(this.smallest(), 1);
    return Buffer.from(new ArrayBuffer(Math.ceil(size * 1.25)), 0, size);
  };

  /** Whether `buf` is one of ours (then release it once written). */
  pooled(buf: Buffer): boolean {
    return buf.length >= this.minSize && buf.byteOffset === 0;
  }

  /**
   * Call once the bytes were written (or the write failed): the buffer may be handed out again.
   * A full pool keeps its largest buffers: one filled by smaller replies (VMs still reporting at
   * start-up) would otherwise turn every later, larger reply into a fresh allocation.
   */
  release(buf: Buffer): void {
    if (!this.pooled(buf)) return;
    const ab = buf.buffer as ArrayBuffer;
    if (this.free.includes(ab)) return;
    if (this.free.length < this.maxFree) {
      this.free.push(ab);
      return;
    }
    const smallest = this.smallest();
    if (this.free[smallest]!.byteLength < ab.byteLength) this.free[smallest] = ab;
  }

  /** Index of the smallest idle buffer (the pool is not empty). */
  private smallest(): number {
    let k = 0;
    for (let i = 1; i < this.free.length; i++) if (this.free[i]!.byteLength < this.free[k]!.byteLength) k = i;
    return k;
  }
}

/** The pre-serialised result of a response, if it has one (json-rpc-2.0 types results as any). */
function jsonTextOf(r: JSONRPCResponse): JsonText | null {
  return 'result' in r && r.result instanceof JsonText ? r.result : null;
}

const hasJsonText = (r: JSONRPCResponse): boolean => jsonTextOf(r) !== null;

function responseBytes(r: JSONRPCResponse, alloc: BufferAlloc): Buffer {
  const text = jsonTextOf(r);
  if (!text) return Buffer.from(JSON.stringify(r));
  return text.render(Buffer.from(`{"jsonrpc":"2.0","id":${JSON.stringify(r.id)},"result":`), CLOSE_BRACE, alloc);
}

/** The UTF-8 text of a reply (a response or a batch of them); plain JSON.stringify when nothing is pre-serialised. */
export function replyText(reply: NonNullable<Reply>, alloc: BufferAlloc = plainAlloc): string | Buffer {
  if (!Array.isArray(reply)) return hasJsonText(reply) ? responseBytes(reply, alloc) : JSON.stringify(reply);
  if (!reply.some(hasJsonText)) return JSON.stringify(reply);
  const parts: Buffer[] = [Buffer.from('[')];
  reply.forEach((r, i) => parts.push(...(i ? [Buffer.from(',')] : []), responseBytes(r, plainAlloc)));
  parts.push(Buffer.from(']'));
  return Buffer.concat(parts);
}
