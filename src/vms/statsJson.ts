// VmStats as JSON bytes, serialised once per change. A VM's cached stats object (VmStatsBase) is
// replaced, never mutated, whenever something in it changes, so its serialisation is cached by
// object identity and dropped with it. The VMs' bytes are assembled into one array, kept while
// no VM changes; a call copies it into the reply and writes the two per-call numbers (statusTime,
// on VDSM's event clock, and elapsedTime) into the places kept for them: Host.getAllVmStats for
// a thousand VMs stringifies nothing and builds no large string.
import { eventTime, type VmStatsBase } from './stats.js';

interface Chunk {
  /** `{"vmId":…,"status":…,"statusTime":"<T>","elapsedTime":"<E>",…}` with digit slots T and E. */
  bytes: Buffer;
  timeAt: number;
  timeWidth: number;
  elapsedAt: number;
  elapsedWidth: number;
}

export interface StatsSource {
  base: VmStatsBase;
  firstSeenMs: number;
}

const chunks = new WeakMap<VmStatsBase, Chunk>();
const OPEN = 0x5b;
const COMMA = 0x2c;
const CLOSE = 0x5d;
const EMPTY = Buffer.alloc(0);

/**
 * The last multi-VM array, assembled: while the same VMs (same stats objects, same digit widths)
 * are asked for again, a call copies this one contiguous buffer and rewrites only the time digits
 * that moved, instead of gathering a thousand chunks from all over the heap (half of the
 * daemon's time per Host.getAllVmStats call at 1,000 VMs). Any change of a VM reassembles it.
 * It holds the stats objects it was built from (identity is the check) and ~0.8 KiB per VM.
 */
const asm = {
  bytes: EMPTY,
  size: 0,
  count: 0,
  statusTime: -1,
  timeWidth: 0,
  bases: [] as (VmStatsBase | null)[],
  timeAt: new Int32Array(0),
  elapsedAt: new Int32Array(0),
  elapsedWidth: new Uint8Array(0),
  elapsed: new Float64Array(0),
};

/**
 * Per-call scratch, reused: a call allocates no arrays and no typed-array views (Buffer#copy makes
 * a view per call; TypedArray#set does not), so it adds next to nothing to the young generation
 * the daemon keeps small (youngGeneration.ts), and scavenges stay rare during calls.
 */
const scratchBases: (VmStatsBase | null)[] = [];
let scratchElapsed = new Float64Array(1024);
let scratchWidth = new Uint8Array(1024);

function digitCount(n: number): number {
  let w = 1;
  while (n >= 10) {
    n = Math.floor(n / 10);
    w++;
  }
  return w;
}

/** The VM's cached bytes with slots of the given widths, (re)built when missing or of other widths. */
function chunkOf(base: VmStatsBase, timeWidth: number, elapsedWidth: number): Chunk {
  const cached = chunks.get(base);
  if (cached && cached.timeWidth === timeWidth && cached.elapsedWidth === elapsedWidth) return cached;
  // Member order as stampStats builds VmStats: vmId, status, statusTime, elapsedTime, then the rest.
  const { vmId, status, ...rest } = base;
  const restJson = withFraction(JSON.stringify(rest));
  const head = `{"vmId":${JSON.stringify(vmId)},"status":${JSON.stringify(status)},"statusTime":"`;
  const middle = '","elapsedTime":"';
  const tail = restJson === '{}' ? '"}' : '",' + restJson.slice(1);
  const bytes = Buffer.from(head + '0'.repeat(timeWidth) + middle + '0'.repeat(elapsedWidth) + tail);
  const timeAt = Buffer.byteLength(head);
  const chunk = { bytes, timeAt, timeWidth, elapsedAt: timeAt + timeWidth + middle.length, elapsedWidth };
  chunks.set(base, chunk);
  return chunk;
}

/**
 * `network[].sampleTime` with a fraction, always: the engine's JSON reader takes `4711` for an
 * Integer and drops it (no rates), `4711.0` for the Double it casts to. Only our own keys can match:
 * inside a JSON string a quote is escaped.
 */
function withFraction(json: string): string {
  return json.includes('"sampleTime":') ? json.replace(/"sampleTime":(-?\d+)(?=[,}])/g, '"sampleTime":$1.0') : json;
}

function writeDigits(out: Buffer, at: number, width: number, n: number): void {
  for (let i = at + width - 1; i >= at; i--) {
    out[i] = 0x30 + (n % 10);
    n = Math.floor(n / 10);
  }
}

/** Writes '[' chunk ',' chunk … ']' for the scratch's first `n` VMs at `at`; records the slots in asm when `record`. */
function assemble(out: Buffer, at: number, n: number, timeWidth: number, statusTime: number, record: boolean): number {
  let pos = at;
  out[pos++] = OPEN;
  for (let i = 0; i < n; i++) {
    const c = chunkOf(scratchBases[i]!, timeWidth, scratchWidth[i]!);
    if (i) out[pos++] = COMMA;
    out.set(c.bytes, pos);
    writeDigits(out, pos + c.timeAt, c.timeWidth, statusTime);
    writeDigits(out, pos + c.elapsedAt, c.elapsedWidth, scratchElapsed[i]!);
    if (record) {
      asm.timeAt[i] = pos + c.timeAt;
      asm.elapsedAt[i] = pos + c.elapsedAt;
    }
    pos += c.bytes.length;
  }
  out[pos++] = CLOSE;
  return pos - at;
}

/** The size of the array for the scratch's first `n` VMs. */
function arraySize(n: number, timeWidth: number): number {
  let size = 2 + Math.max(0, n - 1);
  for (let i = 0; i < n; i++) size += chunkOf(scratchBases[i]!, timeWidth, scratchWidth[i]!).bytes.length;
  return size;
}

/** Reassembles asm from the scratch's first `n` VMs. */
function reassemble(n: number, timeWidth: number, statusTime: number): void {
  const size = arraySize(n, timeWidth);
  // Reuse the buffer unless it is too small, or far too large for what the VMs now need.
  if (asm.bytes.length < size || asm.bytes.length > size * 2) asm.bytes = Buffer.allocUnsafe(Math.ceil(size * 1.1));
  if (asm.timeAt.length < n) {
    const cap = Math.ceil(n * 1.25);
    asm.timeAt = new Int32Array(cap);
    asm.elapsedAt = new Int32Array(cap);
    asm.elapsedWidth = new Uint8Array(cap);
    asm.elapsed = new Float64Array(cap);
  }
  asm.size = assemble(asm.bytes, 0, n, timeWidth, statusTime, true);
  for (let i = 0; i < n; i++) {
    asm.bases[i] = scratchBases[i]!;
    asm.elapsedWidth[i] = scratchWidth[i]!;
    asm.elapsed[i] = scratchElapsed[i]!;
  }
  asm.bases.length = n;
  asm.count = n;
  asm.statusTime = statusTime;
  asm.timeWidth = timeWidth;
}

/** Brings asm's time digits to this call's values (same VMs, same widths). */
function restamp(statusTime: number): void {
  if (statusTime !== asm.statusTime) {
    // The same digits in every VM: written once, then byte by byte (no call per VM).
    const w = asm.timeWidth;
    const bytes = asm.bytes;
    writeDigits(bytes, asm.timeAt[0]!, w, statusTime);
    const at0 = asm.timeAt[0]!;
    for (let i = 1; i < asm.count; i++) {
      const at = asm.timeAt[i]!;
      for (let j = 0; j < w; j++) bytes[at + j] = bytes[at0 + j]!;
    }
    asm.statusTime = statusTime;
  }
  for (let i = 0; i < asm.count; i++) {
    const e = scratchElapsed[i]!;
    if (e !== asm.elapsed[i]) {
      writeDigits(asm.bytes, asm.elapsedAt[i]!, asm.elapsedWidth[i]!, e);
      asm.elapsed[i] = e;
    }
  }
}

/**
 * The JSON array of the VMs' stats as stampStats would give them at `nowMs` (one-element for
 * VM.getStats), as UTF-8 bytes, with `before` and `after` around it in the same buffer (the
 * response envelope: one buffer, from `alloc`).
 */
export function statsArrayJson(
  vms: Iterable<StatsSource>,
  nowMs: number,
  before: Buffer = EMPTY,
  after: Buffer = EMPTY,
  alloc: (size: number) => Buffer = (size) => Buffer.allocUnsafe(size),
): Buffer {
  const statusTime = eventTime(nowMs);
  const timeWidth = digitCount(statusTime);
  let n = 0;
  let same = timeWidth === asm.timeWidth;
  for (const v of vms) {
    if (n === scratchElapsed.length) {
      const elapsed = new Float64Array(n * 2);
      elapsed.set(scratchElapsed);
      scratchElapsed = elapsed;
      const width = new Uint8Array(n * 2);
      width.set(scratchWidth);
      scratchWidth = width;
    }
    const e = Math.max(0, Math.floor((nowMs - v.firstSeenMs) / 1000));
    const w = digitCount(e);
    scratchBases[n] = v.base;
    scratchElapsed[n] = e;
    scratchWidth[n] = w;
    if (same && (n >= asm.count || asm.bases[n] !== v.base || asm.elapsedWidth[n] !== w)) same = false;
    n++;
  }
  let out: Buffer;
  if (n < 2) {
    // VM.getStats (or no VMs): too small to be worth keeping.
    out = alloc(before.length + arraySize(n, timeWidth) + after.length);
    out.set(before, 0);
    const size = assemble(out, before.length, n, timeWidth, statusTime, false);
    out.set(after, before.length + size);
  } else {
    if (same && n === asm.count) restamp(statusTime);
    else reassemble(n, timeWidth, statusTime);
    out = alloc(before.length + asm.size + after.length);
    out.set(before, 0);
    out.set(asm.bytes.subarray(0, asm.size), before.length);
    out.set(after, before.length + asm.size);
  }
  scratchBases.fill(null, 0, n); // the scratch must not keep a replaced VM's stats alive
  return out;
}
