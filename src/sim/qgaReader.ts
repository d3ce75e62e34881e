// The simulated qemu-ga's input side, pure: bytes in, requests and parse errors out. Like the
// real agent's streaming JSON parser it is not line-based: values may be split across reads or
// packed several to a read; a 0xFF byte (invalid UTF-8) throws away any half-read value and is
// reported as the real agent reports it; stray words between values are errors too.

export type QgaInput = { kind: 'request'; value: unknown } | { kind: 'error'; desc: string };

const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const SYNC_BYTE = 0xff;

/** Bounds one value, as the real agent bounds its token buffer; larger input is dropped. */
const MAX_REQUEST_BYTES = 1 << 20;

function isSpace(b: number): boolean {
  return b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d;
}

function isWordByte(b: number): boolean {
  return (
    (b >= 0x30 && b <= 0x39) ||
    (b >= 0x41 && b <= 0x5a) ||
    (b >= 0x61 && b <= 0x7a) ||
    b === 0x2d ||
    b === 0x2b ||
    b === 0x2e ||
    b === 0x5f
  );
}

export class QgaRequestReader {
  private parts: Buffer[] = [];
  private size = 0;
  private depth = 0;
  private inString = false;
  private escaped = false;
  private word = '';
  private oversized = false;

  /** Feeds bytes; returns every complete request or error they finish. */
  push(chunk: Buffer): QgaInput[] {
    const out: QgaInput[] = [];
    let start = this.depth > 0 ? 0 : -1; // where the current value's bytes begin within this chunk
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      if (b === SYNC_BYTE) {
        this.flushWord(out);
        this.reset();
        start = -1;
        out.push({ kind: 'error', desc: "JSON parse error, stray '\uFFFD'" });
        continue;
      }
      if (this.depth === 0) {
        if (b === OPEN_BRACE || b === OPEN_BRACKET) {
          this.flushWord(out);
          this.depth = 1;
          start = i;
        } else if (isWordByte(b)) {
          this.word += String.fromCharCode(b);
        } else {
          this.flushWord(out);
          if (b === CLOSE_BRACE || b === CLOSE_BRACKET)
            out.push({ kind: 'error', desc: 'JSON parse error, expecting value' });
          else if (!isSpace(b))
            out.push({ kind: 'error', desc: `JSON parse error, stray '${String.fromCharCode(b)}'` });
        }
        continue;
      }
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (b === BACKSLASH) this.escaped = true;
        else if (b === QUOTE) this.inString = false;
        continue;
      }
      if (b === QUOTE) this.inString = true;
      else if (b === OPEN_BRACE || b === OPEN_BRACKET) this.depth++;
      else if (b === CLOSE_BRACE || b === CLOSE_BRACKET) {
        this.depth--;
        if (this.depth === 0) {
          this.append(chunk.subarray(start, i + 1));
          out.push(this.finish());
          start = -1;
        }
      }
    }
    if (this.depth > 0 && start !== -1) this.append(chunk.subarray(start));
    return out;
  }

  private append(bytes: Buffer): void {
    if (this.oversized) return;
    this.size += bytes.length;
    if (this.size > MAX_REQUEST_BYTES) {
      this.oversized = true;
      this.parts = [];
      return;
    }
    this.parts.push(bytes);
  }

  private finish(): QgaInput {
    const oversized = this.oversized;
    const text = Buffer.concat(this.parts).toString('utf8');
    this.reset();
    if (oversized) return { kind: 'error', desc: 'JSON parse error, token too large' };
    try {
      return { kind: 'request', value: JSON.parse(text) };
    } catch {
      return { kind: 'error', desc: 'JSON parse error, invalid JSON value' };
    }
  }

  private flushWord(out: QgaInput[]): void {
    if (this.word === '') return;
    const word = this.word;
    this.word = '';
    if (/^-?\d/.test(word)) out.push({ kind: 'error', desc: 'QMP input must be a JSON object' });
    else out.push({ kind: 'error', desc: `JSON parse error, invalid keyword '${word.slice(0, 64)}'` });
  }

  private reset(): void {
    this.parts = [];
    this.size = 0;
    this.depth = 0;
    this.inString = false;
    this.escaped = false;
    this.oversized = false;
  }
}
