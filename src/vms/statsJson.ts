// VmStats as JSON bytes, serialised once per change. A VM's cached stats object (VmStatsBase) is
// replaced, never mutated, whenever something in it changes, so its serialisation is cached by
// object identity and dropped with it. A call copies each VM's cached bytes into the reply and
// writes the two per-call numbers (statusTime, on VDSM's event clock, and elapsedTime) into the
// places kept for them: Host.getAllVmStats for a thousand VMs stringifies nothing and builds no
// large string.
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
 * Per-call scratch, reused: a call for a thousand VMs allocates no arrays and no typed-array views
 * (Buffer#copy makes a view per call; TypedArray#set does not), so it adds next to nothing to the
 * young generation the daemon keeps small, and scavenges stay rare during calls.
 */
const picked: (Chunk | null)[] = [];
let elapsedScratch = new Float64Array(1024);

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

/**
 * The JSON array of the VMs' stats as stampStats would give them at `nowMs` (one-element for
 * VM.getStats), as UTF-8 bytes, with `before` and `after` around it in the same buffer (the
 * response envelope: one buffer, from `alloc`, and one copy of each VM's bytes per call).
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
  let size = before.length + 2 + after.length;
  for (const v of vms) {
    const e = Math.max(0, Math.floor((nowMs - v.firstSeenMs) / 1000));
    if (n === elapsedScratch.length) {
      const grown = new Float64Array(n * 2);
      grown.set(elapsedScratch);
      elapsedScratch = grown;
    }
    elapsedScratch[n] = e;
    const c = chunkOf(v.base, timeWidth, digitCount(e));
    picked[n++] = c;
    size += c.bytes.length;
  }
  size += Math.max(0, n - 1);
  const out = alloc(size);
  out.set(before, 0);
  let pos = before.length;
  out[pos++] = OPEN;
  for (let i = 0; i < n; i++) {
    const c = picked[i]!;
    picked[i] = null; // the scratch must not keep a replaced VM's bytes alive
    if (i) out[pos++] = COMMA;
    out.set(c.bytes, pos);
    writeDigits(out, pos + c.timeAt, c.timeWidth, statusTime);
    writeDigits(out, pos + c.elapsedAt, c.elapsedWidth, elapsedScratch[i]!);
    pos += c.bytes.length;
  }
  out[pos++] = CLOSE;
  out.set(after, pos);
  return out;
}
