// STOMP 1.2 framing, pure: bytes in, frames out (FrameParser), frames in, bytes out
// (encodeFrame). The parser is a small state machine fed chunk by chunk, so a frame split
// anywhere (even byte by byte) parses the same; every limit is checked the moment the
// length it bounds is known, and every failure carries a stable code.

export interface StompFrame {
  command: string;
  /** First occurrence of a repeated header wins (STOMP 1.2). */
  headers: Map<string, string>;
  body: Buffer;
}

export type FrameErrorCode =
  | 'frame-too-large' // the frame passed maxFrameBytes
  | 'bad-content-length' // content-length is not a decimal byte count
  | 'missing-nul' // the byte after content-length bytes of body is not NUL
  | 'bad-header' // a header line without ':'
  | 'bad-escape'; // a header escape other than \c \n \r \\

export type ParsedItem =
  | { kind: 'frame'; frame: StompFrame }
  | { kind: 'heartbeat' }
  | { kind: 'error'; code: FrameErrorCode; message: string };

export interface ParserLimits {
  /** Largest frame, counted from the command's first byte to the byte before the NUL. */
  maxFrameBytes: number;
}

const LF = 0x0a;
const NUL = 0x00;

type State = 'command' | 'headers' | 'body' | 'nul' | 'failed';

/** CONNECT and CONNECTED frames carry their header values unescaped (STOMP 1.2, "Value Encoding"). */
function escapesApply(command: string): boolean {
  return command !== 'CONNECT' && command !== 'CONNECTED';
}

export class FrameParser {
  private state: State = 'command';
  private lineParts: Buffer[] = [];
  private lineBytes = 0;
  /** Bytes of the current frame already consumed (command and header lines). */
  private frameBytes = 0;
  private command = '';
  private headers = new Map<string, string>();
  private bodyParts: Buffer[] = [];
  private bodyBytes = 0;
  private contentLength: number | null = null;

  constructor(private readonly limits: ParserLimits) {}

  get failed(): boolean {
    return this.state === 'failed';
  }

  /** Parses one chunk; after an error item the parser stays failed and returns nothing more. */
  push(chunk: Buffer): ParsedItem[] {
    const out: ParsedItem[] = [];
    let pos = 0;
    while (pos < chunk.length && this.state !== 'failed') {
      if (this.state === 'command' || this.state === 'headers') pos = this.takeLine(chunk, pos, out);
      else if (this.state === 'body') pos = this.takeBody(chunk, pos, out);
      else {
        if (chunk[pos] !== NUL)
          this.fail(
            out,
            'missing-nul',
            `frame ${this.command} does not end with NUL after content-length ${this.contentLength} bytes`,
          );
        else {
          pos++;
          this.emit(out);
        }
      }
    }
    return out;
  }

  private takeLine(chunk: Buffer, pos: number, out: ParsedItem[]): number {
    const lf = chunk.indexOf(LF, pos);
    if (this.state === 'command' && lf === pos && this.lineBytes === 0) {
      out.push({ kind: 'heartbeat' });
      return pos + 1;
    }
    const end = lf === -1 ? chunk.length : lf;
    if (!this.hold(this.lineParts, this.lineBytes, chunk, pos, end, out)) return chunk.length;
    this.lineBytes += end - pos;
    if (lf === -1) return chunk.length;
    let line = this.lineParts.length === 1 ? this.lineParts[0]! : Buffer.concat(this.lineParts);
    this.frameBytes += this.lineBytes + 1;
    this.lineParts = [];
    this.lineBytes = 0;
    if (line.length > 0 && line[line.length - 1] === 0x0d) line = line.subarray(0, line.length - 1);
    if (this.state === 'command') this.onCommandLine(line, out);
    else this.onHeaderLine(line, out);
    return lf + 1;
  }

  private onCommandLine(line: Buffer, out: ParsedItem[]): void {
    if (line.length === 0) {
      // CRLF between frames: a heart-beat too.
      this.frameBytes = 0;
      out.push({ kind: 'heartbeat' });
      return;
    }
    this.command = line.toString('utf8');
    this.state = 'headers';
  }

  private onHeaderLine(line: Buffer, out: ParsedItem[]): void {
    if (line.length === 0) return this.endHeaders(out);
    const text = line.toString('utf8');
    const colon = text.indexOf(':');
    if (colon === -1) return this.fail(out, 'bad-header', `header line without ':' in ${this.command} frame`);
    // Values may contain further ':' (lenient, as peers that never escape send them).
    let name = text.slice(0, colon);
    let value = text.slice(colon + 1);
    if (escapesApply(this.command)) {
      const n = unescapeHeader(name);
      const v = unescapeHeader(value);
      if (n === null || v === null)
        return this.fail(out, 'bad-escape', `invalid escape sequence in a header of ${this.command} frame`);
      name = n;
      value = v;
    }
    if (!this.headers.has(name)) this.headers.set(name, value);
  }

  private endHeaders(out: ParsedItem[]): void {
    const cl = this.headers.get('content-length');
    if (cl !== undefined) {
      if (!/^\d{1,15}$/.test(cl))
        return this.fail(
          out,
          'bad-content-length',
          `content-length ${JSON.stringify(cl.slice(0, 40))} is not a byte count`,
        );
      this.contentLength = Number(cl);
      if (this.frameBytes + this.contentLength > this.limits.maxFrameBytes) {
        return this.fail(
          out,
          'frame-too-large',
          `frame exceeds the limit of ${this.limits.maxFrameBytes} bytes (content-length ${cl})`,
        );
      }
    }
    this.state = this.contentLength === 0 ? 'nul' : 'body';
  }

  private takeBody(chunk: Buffer, pos: number, out: ParsedItem[]): number {
    if (this.contentLength !== null) {
      const take = Math.min(this.contentLength - this.bodyBytes, chunk.length - pos);
      this.bodyParts.push(chunk.subarray(pos, pos + take));
      this.bodyBytes += take;
      if (this.bodyBytes === this.contentLength) this.state = 'nul';
      return pos + take;
    }
    const nul = chunk.indexOf(NUL, pos);
    const end = nul === -1 ? chunk.length : nul;
    if (!this.hold(this.bodyParts, this.bodyBytes, chunk, pos, end, out)) return chunk.length;
    this.bodyBytes += end - pos;
    if (nul === -1) return chunk.length;
    this.emit(out);
    return nul + 1;
  }

  /** Keeps chunk[pos, end) in `parts` unless the frame would pass the limit (then fails). */
  private hold(parts: Buffer[], held: number, chunk: Buffer, pos: number, end: number, out: ParsedItem[]): boolean {
    if (this.frameBytes + held + (end - pos) > this.limits.maxFrameBytes) {
      this.fail(out, 'frame-too-large', `frame exceeds the limit of ${this.limits.maxFrameBytes} bytes`);
      return false;
    }
    parts.push(chunk.subarray(pos, end));
    return true;
  }

  private emit(out: ParsedItem[]): void {
    // Copy: the body must not pin (or alias) the caller's chunk buffers.
    const body = Buffer.alloc(this.bodyBytes);
    let at = 0;
    for (const p of this.bodyParts) at += p.copy(body, at);
    out.push({ kind: 'frame', frame: { command: this.command, headers: this.headers, body } });
    this.state = 'command';
    this.frameBytes = 0;
    this.command = '';
    this.headers = new Map();
    this.bodyParts = [];
    this.bodyBytes = 0;
    this.contentLength = null;
  }

  private fail(out: ParsedItem[], code: FrameErrorCode, message: string): void {
    this.state = 'failed';
    this.lineParts = [];
    this.bodyParts = [];
    out.push({ kind: 'error', code, message });
  }
}

/** Decodes STOMP 1.2 header escapes; null on an undefined escape (a fatal error per the spec). */
export function unescapeHeader(s: string): string | null {
  if (!s.includes('\\')) return s;
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c !== '\\') {
      out += c;
      continue;
    }
    const next = s[++i];
    if (next === 'c') out += ':';
    else if (next === 'n') out += '\n';
    else if (next === 'r') out += '\r';
    else if (next === '\\') out += '\\';
    else return null;
  }
  return out;
}

export function escapeHeader(s: string): string {
  return s.replace(/[\\\r\n:]/g, (c) => (c === '\\' ? '\\\\' : c === '\r' ? '\\r' : c === '\n' ? '\\n' : '\\c'));
}

export interface OutgoingFrame {
  command: string;
  /** In wire order. */
  headers: readonly (readonly [string, string])[];
  /** When given (even empty), content-length is added after the other headers. */
  body?: Buffer | string;
}

/** One frame as bytes: LF line ends, escaped headers (except CONNECT/CONNECTED), NUL last. */
export function encodeFrame(frame: OutgoingFrame): Buffer {
  const escape = escapesApply(frame.command) ? escapeHeader : (s: string): string => s;
  let head = frame.command + '\n';
  for (const [k, v] of frame.headers) head += `${escape(k)}:${escape(v)}\n`;
  const body =
    frame.body === undefined ? null : typeof frame.body === 'string' ? Buffer.from(frame.body, 'utf8') : frame.body;
  if (body) head += `content-length:${body.length}\n`;
  head += '\n';
  const headBytes = Buffer.from(head, 'utf8');
  const parts = body ? [headBytes, body, Buffer.of(NUL)] : [headBytes, Buffer.of(NUL)];
  return Buffer.concat(parts);
}
