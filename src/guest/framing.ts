// Byte stream -> lines. Both agents end each message with "\n" (qemu-ga's parser is streaming,
// but its replies are one per line). The cap is enforced as bytes arrive: a line that grows past
// it is discarded at once and everything up to the next newline is skipped, so a channel never
// holds more than `maxLineBytes` of pending input. qemu-ga's resync marker (a 0xFF byte, which
// never occurs in UTF-8) is reported as its own frame and discards any partial line before it.
import { GuestIssue } from './issues.js';

export type Frame =
  /**
   * A line that came whole in one chunk is a view of that chunk (channels read into one shared
   * buffer): use it, or copy what you keep, before the chunk's memory is reused. A line that
   * spanned chunks is the framer's own copy.
   */
  { kind: 'line'; bytes: Buffer } | { kind: 'dropped'; code: typeof GuestIssue.lineTooLong } | { kind: 'delimiter' };

/** Takes frames as the framer finds them (see LineFramer.feed), in the order push() lists them. */
export interface FrameSink {
  /**
   * A line: `chunk[start, end)`, valid as long as a `line` Frame's bytes are (see Frame). A range,
   * not a view: a view per line was ~100 bytes of garbage and a constructor call.
   */
  line(chunk: Buffer, start: number, end: number): void;
  dropped(code: typeof GuestIssue.lineTooLong): void;
  delimiter(): void;
}

/** push()'s sink between calls: never added to. */
const NO_FRAMES: Frame[] = [];

/** push()'s sink: collects the frames into a list. */
class FrameList implements FrameSink {
  frames: Frame[] = NO_FRAMES;
  line(chunk: Buffer, start: number, end: number): void {
    this.frames.push({ kind: 'line', bytes: start === 0 && end === chunk.length ? chunk : chunk.subarray(start, end) });
  }
  dropped(code: typeof GuestIssue.lineTooLong): void {
    this.frames.push({ kind: 'dropped', code });
  }
  delimiter(): void {
    this.frames.push({ kind: 'delimiter' });
  }
}

// One for every framer: push() gives it a fresh list and hands that over before returning.
const frameList = new FrameList();

const NEWLINE = 0x0a;
export const QGA_DELIMITER = 0xff;

export class LineFramer {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Inside an over-long line: bytes are thrown away until its newline. */
  private skipping = false;

  constructor(
    private readonly maxLineBytes: number,
    /** A byte that is a frame of its own (qemu-ga's 0xFF), or null. */
    private readonly delimiter: number | null = null,
  ) {}

  /** Bytes held for an unfinished line (never more than the cap). */
  get bufferedBytes(): number {
    return this.pendingBytes;
  }

  reset(): void {
    this.pending = [];
    this.pendingBytes = 0;
    this.skipping = false;
  }

  push(chunk: Uint8Array): Frame[] {
    const frames: Frame[] = [];
    frameList.frames = frames;
    this.feed(chunk, frameList);
    frameList.frames = NO_FRAMES; // not to hold a spanning line's copy until the next push
    return frames;
  }

  /**
   * push() without the list: hands each frame to `sink` as it is found (an object and a list per
   * chunk were a visible part of the idle cost of a thousand agents). The sink must not push to
   * this framer from inside a call.
   */
  feed(chunk: Uint8Array, sink: FrameSink): void {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let start = 0;
    while (start < buf.length) {
      const nl = buf.indexOf(NEWLINE, start);
      const dl = this.delimiter === null ? -1 : buf.indexOf(this.delimiter, start);
      const end = nl === -1 ? dl : dl === -1 ? nl : Math.min(nl, dl);
      if (end === -1) {
        this.append(buf.subarray(start), sink);
        break;
      }
      if (end === dl) {
        // Whatever came before the marker is a half-sent message the agent itself discards.
        this.reset();
        sink.delimiter();
      } else if (this.pendingBytes === 0 && !this.skipping) {
        // A whole line inside this chunk: a view of it, not a copy (see Frame).
        const len = end - start;
        if (len > this.maxLineBytes) sink.dropped(GuestIssue.lineTooLong);
        else if (len > 0) sink.line(buf, start, end);
      } else {
        this.append(buf.subarray(start, end), sink);
        if (!this.skipping && this.pendingBytes > 0) {
          const line = this.take();
          this.reset();
          sink.line(line, 0, line.length);
        } else this.reset();
      }
      start = end + 1;
    }
  }

  private append(part: Buffer, sink: FrameSink): void {
    if (this.skipping || part.length === 0) return;
    if (this.pendingBytes + part.length > this.maxLineBytes) {
      this.pending = [];
      this.pendingBytes = 0;
      this.skipping = true;
      sink.dropped(GuestIssue.lineTooLong);
      return;
    }
    // Copy: a slice would pin the whole socket chunk it came from.
    this.pending.push(Buffer.from(part));
    this.pendingBytes += part.length;
  }

  private take(): Buffer {
    return this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
  }
}

/** True for a line (`bytes[start, end)`) of only spaces/tabs/CR (a keep-alive or a CRLF leftover): not a message. */
export function isBlank(bytes: Uint8Array, start = 0, end = bytes.length): boolean {
  for (let i = start; i < end; i++) {
    const b = bytes[i];
    if (b !== 0x20 && b !== 0x09 && b !== 0x0d) return false;
  }
  return true;
}
