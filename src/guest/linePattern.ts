// An agent line kept as a pattern, so that a line like it need not be parsed again. An oVirt
// agent repeats itself: a heartbeat every 5 s that differs from the last only in its numbers
// (free memory, page faults), and its network data every 120 s, mostly unchanged.
//
// A pattern is a line's bytes, either exact or with each run of digits as a hole ("numbers
// aside"); a line matches when it has the same bytes outside the holes and a run of digits in each
// hole. The digits of an `"apiVersion":` value are never a hole: the agent's version is what a
// heartbeat tells the host.
//
// A line that matches parses to the same message as the pattern's line (numbers aside) because a
// pattern with holes is made only of a line without a backslash (a `\u` escape needs exactly four
// hex digits, and a hole could give it three or five), and a match never has a digit run starting
// with 0 unless it is a lone 0 (a JSON number may not have a leading zero; "05" in a string is fine
// but is simply not matched). Then any digit run in place of any other keeps a number a number and
// a string a string.

const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;
const BACKSLASH = 0x5c;
const API_VERSION_KEY = Buffer.from('"apiVersion"', 'latin1');

const isDigit = (b: number): boolean => b >= DIGIT_0 && b <= DIGIT_9;

const NO_HOLES = new Int32Array(0);

export class LinePattern {
  private constructor(
    /** The line's own copy (lines are mostly views of the channels' one read buffer). */
    private readonly bytes: Buffer,
    /** [start, end) of each hole in `bytes`, in order. */
    private readonly holes: Int32Array,
  ) {}

  /** `line[start, end)` exactly. */
  static exact(line: Uint8Array, start: number, end: number): LinePattern {
    return new LinePattern(ownCopy(line, start, end), NO_HOLES);
  }

  /**
   * `line[start, end)` with its numbers as holes (an `apiVersion` value kept); null when the line
   * cannot be a pattern (it has a backslash or a number with a leading zero).
   */
  static numbersAside(line: Uint8Array, start: number, end: number): LinePattern | null {
    const holes: number[] = [];
    for (let i = start; i < end; i++) {
      const b = line[i]!;
      if (b === BACKSLASH) return null;
      if (!isDigit(b)) continue;
      let runEnd = i + 1;
      while (runEnd < end && isDigit(line[runEnd]!)) runEnd++;
      if (!leadsCleanly(line, i, runEnd)) return null;
      if (!isApiVersionValue(line, start, i)) holes.push(i - start, runEnd - start);
      i = runEnd - 1;
    }
    return new LinePattern(ownCopy(line, start, end), Int32Array.from(holes));
  }

  /** True when `line[start, end)` is the pattern's line, with any digit runs in its holes. */
  matches(line: Uint8Array, start: number, end: number): boolean {
    const { bytes, holes } = this;
    let at = start;
    let from = 0;
    for (let h = 0; h < holes.length; h += 2) {
      const holeStart = holes[h]!;
      if (!sameBytes(line, at, end, bytes, from, holeStart - from)) return false;
      at += holeStart - from;
      const digits = at;
      while (at < end && isDigit(line[at]!)) at++;
      if (at === digits || !leadsCleanly(line, digits, at)) return false;
      from = holes[h + 1]!;
    }
    return end - at === bytes.length - from && sameBytes(line, at, end, bytes, from, end - at);
  }
}

/**
 * A copy in memory of its own: Buffer.from would take a slice of a shared 8 KiB pool slab, and a
 * pattern kept for hours would keep its whole slab alive.
 */
function ownCopy(line: Uint8Array, start: number, end: number): Buffer {
  const copy = Buffer.allocUnsafeSlow(end - start);
  copy.set(line.subarray(start, end));
  return copy;
}

/** A digit run that is not a number with a leading zero. */
function leadsCleanly(line: Uint8Array, start: number, end: number): boolean {
  return line[start] !== DIGIT_0 || end - start === 1;
}

/** `a[aStart, aStart + length)`, within `a[..., aEnd)`, holds the bytes of `b` from `bStart`. */
function sameBytes(
  a: Uint8Array,
  aStart: number,
  aEnd: number,
  b: Uint8Array,
  bStart: number,
  length: number,
): boolean {
  if (aStart + length > aEnd) return false;
  for (let k = 0; k < length; k++) if (a[aStart + k] !== b[bStart + k]) return false;
  return true;
}

/**
 * True when the digit run at `at` is part of the value of an `"apiVersion"` key: `line[start, at)`
 * ends with the key, optional blanks, `:`, optional blanks and the number's other characters
 * (`-3`, `3e1`: every digit of the value is kept as it is).
 */
function isApiVersionValue(line: Uint8Array, start: number, at: number): boolean {
  let k = at - 1;
  while (k >= start && isNumberChar(line[k]!)) k--;
  while (k >= start && isJsonBlank(line[k]!)) k--;
  if (k < start || line[k] !== 0x3a) return false;
  k--;
  while (k >= start && isJsonBlank(line[k]!)) k--;
  const keyStart = k - API_VERSION_KEY.length + 1;
  if (keyStart < start) return false;
  for (let j = 0; j < API_VERSION_KEY.length; j++) if (line[keyStart + j] !== API_VERSION_KEY[j]) return false;
  return true;
}

function isNumberChar(b: number): boolean {
  return isDigit(b) || b === 0x2d || b === 0x2b || b === 0x2e || b === 0x65 || b === 0x45;
}

function isJsonBlank(b: number): boolean {
  return b === 0x20 || b === 0x09 || b === 0x0d || b === 0x0a;
}
