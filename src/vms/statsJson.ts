// VmStats as JSON bytes, serialised once per change. A VM's cached stats object (VmStatsBase) is
// replaced, never mutated, whenever something in it changes, so the VM's bytes are kept with the
// object they were made from and made again when it is replaced. The VMs' bytes are assembled
// into one array, kept while no VM changes; a call copies it into the reply and writes the two
// per-call numbers (statusTime, on VDSM's event clock, and elapsedTime) into the places kept for
// them: Host.getAllVmStats for a thousand VMs stringifies nothing and builds no large string.
// libvirt's vNIC counters replace every busy VM's stats object at every sample: the `network`
// value has a place of its own in the VM's bytes, so a VM whose only change is its counters gets
// new bytes by splicing the new `network` JSON (serialised by the inventory before the sample
// lands, off any call) into its old ones, and the inventory has the array reassembled right after
// the sample lands (`warmStatsJson`): no call re-serialises a thousand VMs.
import type { VmNetworkStats } from '../wire.js';
import { eventTime, type VmStatsBase } from './stats.js';

interface Chunk {
  /** `{"vmId":…,"status":…,"statusTime":"<T>","elapsedTime":"<E>",…}` with digit slots T and E. */
  bytes: Buffer;
  timeAt: number;
  timeWidth: number;
  elapsedAt: number;
  elapsedWidth: number;
  /** The `network` value's bytes are [netAt, netEnd) (netAt -1: no `network` member). */
  netAt: number;
  netEnd: number;
  /** The stats these bytes say: the check that they are still the VM's. */
  base: VmStatsBase;
  /** The last reassembly that used it (older ones belong to VMs gone). */
  used: number;
}

export interface StatsSource {
  base: VmStatsBase;
  firstSeenMs: number;
}

/**
 * Each VM's bytes, by vmId. A Map by id rather than a WeakMap by stats object: at 1,000 VMs whose
 * counters move, the WeakMap's lookups and its ephemeron upkeep in the GC were a large part of a
 * sample's cost. Entries of VMs gone are dropped at the next reassembly.
 */
const chunks = new Map<string, Chunk>();
/**
 * A VM's next `network`, serialised ahead of use (prepareNetworkJson) and spliced into a copy of
 * its bytes then (`from`: the bytes copied); taken by the VM's next bytes, by vmId.
 */
interface PreparedNetwork {
  network: Record<string, VmNetworkStats>;
  /** The JSON when not spliced (no `from`); else it is the bytes' [from.netAt, netEnd). */
  json: string;
  from: Chunk | null;
  bytes: Buffer;
  netEnd: number;
}
const preparedNetworks = new Map<string, PreparedNetwork>();
let reassemblies = 0;
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
/** The chunks arraySize found, for assemble to copy without looking them up again. */
const scratchChunks: (Chunk | null)[] = [];
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

/**
 * The VM's bytes with slots of the given widths, (re)made when missing, made from another stats
 * object or of other widths: if only `network` changed, spliced from the bytes it had (or taken
 * as prepareNetworkJson spliced them).
 */
function chunkOf(base: VmStatsBase, timeWidth: number, elapsedWidth: number): Chunk {
  const had = chunks.get(base.vmId);
  const sameWidths = had !== undefined && had.timeWidth === timeWidth && had.elapsedWidth === elapsedWidth;
  if (sameWidths && had.base === base) return had;
  let chunk: Chunk;
  if (sameWidths && had.netAt >= 0 && onlyNetworkDiffers(had.base, base)) {
    const ready = preparedNetworks.get(base.vmId);
    if (ready?.from === had && ready.network === base.network) {
      preparedNetworks.delete(base.vmId);
      chunk = respliced(had, ready.bytes, ready.netEnd, base);
    } else chunk = splice(had, base);
  } else chunk = build(base, timeWidth, elapsedWidth);
  chunks.set(base.vmId, chunk);
  return chunk;
}

/** `from` with other bytes of the same head (one object shape for every chunk: built by literals in one order). */
function respliced(from: Chunk, bytes: Buffer, netEnd: number, base: VmStatsBase): Chunk {
  return {
    bytes,
    timeAt: from.timeAt,
    timeWidth: from.timeWidth,
    elapsedAt: from.elapsedAt,
    elapsedWidth: from.elapsedWidth,
    netAt: from.netAt,
    netEnd,
    base,
    used: from.used,
  };
}

function build(base: VmStatsBase, timeWidth: number, elapsedWidth: number): Chunk {
  // Member order as stampStats builds VmStats: vmId, status, statusTime, elapsedTime, then the
  // rest as JSON.stringify writes it, the `network` value in a place of its own.
  const { vmId, status, ...rest } = base;
  const head = `{"vmId":${JSON.stringify(vmId)},"status":${JSON.stringify(status)},"statusTime":"`;
  const middle = '","elapsedTime":"';
  const slots = head + '0'.repeat(timeWidth) + middle + '0'.repeat(elapsedWidth) + '"';
  const timeAt = Buffer.byteLength(head);
  const elapsedAt = timeAt + timeWidth + middle.length;
  let before = '';
  let after = '';
  let network: string | null = null;
  for (const [k, v] of Object.entries(rest) as [string, unknown][]) {
    if (v === undefined) continue; // as JSON.stringify leaves it out
    if (k === 'network' && network === null) {
      network = networkJson(vmId, v as Record<string, VmNetworkStats>);
      continue;
    }
    const member = `,${JSON.stringify(k)}:${JSON.stringify(v)}`;
    if (network === null) before += member;
    else after += member;
  }
  if (network === null) {
    const bytes = Buffer.from(slots + before + '}');
    return { bytes, timeAt, timeWidth, elapsedAt, elapsedWidth, netAt: -1, netEnd: -1, base, used: 0 };
  }
  const prefix = `${slots}${before},"network":`;
  const bytes = Buffer.from(prefix + network + after + '}');
  const netAt = Buffer.byteLength(prefix);
  const netEnd = netAt + Buffer.byteLength(network);
  return { bytes, timeAt, timeWidth, elapsedAt, elapsedWidth, netAt, netEnd, base, used: 0 };
}

/** `from`'s bytes with `base.network`'s JSON in place of its `network` value (the slots come before it). */
function splice(from: Chunk, base: VmStatsBase): Chunk {
  const [bytes, netEnd] = splicedBytes(from, networkJson(base.vmId, base.network));
  return respliced(from, bytes, netEnd, base);
}

function splicedBytes(from: Chunk, network: string): [Buffer, number] {
  const netAt = from.netAt;
  const netLen = Buffer.byteLength(network);
  const bytes = Buffer.allocUnsafe(netAt + netLen + from.bytes.length - from.netEnd);
  from.bytes.copy(bytes, 0, 0, netAt);
  bytes.write(network, netAt);
  from.bytes.copy(bytes, netAt + netLen, from.netEnd);
  return [bytes, netAt + netLen];
}

/**
 * Whether two stats objects say the same but for `network`: the same members with the same
 * values (the registry makes every stats object with its members in one order).
 */
function onlyNetworkDiffers(a: VmStatsBase, b: VmStatsBase): boolean {
  const x = a as unknown as Record<string, unknown>;
  const y = b as unknown as Record<string, unknown>;
  let members = 0;
  for (const k in y) {
    if (k !== 'network' && x[k] !== y[k]) return false;
    members++;
  }
  for (const k in x) if (k in y) members--;
  return members === 0;
}

/** The VM's `network` as JSON: prepared ahead (and now taken) or serialised here. */
function networkJson(vmId: string, network: Record<string, VmNetworkStats>): string {
  const ready = preparedNetworks.get(vmId);
  if (ready) {
    preparedNetworks.delete(vmId);
    if (ready.network === network)
      return ready.from ? ready.bytes.toString('utf8', ready.from.netAt, ready.netEnd) : ready.json;
  }
  return networkToJson(network);
}

/**
 * Serialises the `network` map a VM's stats are about to get, and splices it into a copy of the
 * VM's bytes: the libvirt inventory does this for a sample's VMs a slice per event-loop turn
 * before the sample lands, so that neither the landing nor a call serialises a thousand VMs.
 * Taken by the VM's next bytes; what is not taken by then is dropped by warmStatsJson.
 */
export function prepareNetworkJson(vmId: string, network: Record<string, VmNetworkStats>): void {
  const json = networkToJson(network);
  const had = chunks.get(vmId);
  if (had && had.netAt >= 0) {
    const [bytes, netEnd] = splicedBytes(had, json);
    preparedNetworks.set(vmId, { network, json: '', from: had, bytes, netEnd }); // the JSON is in the bytes
  } else preparedNetworks.set(vmId, { network, json, from: null, bytes: EMPTY, netEnd: -1 });
}

/**
 * `network[].sampleTime` with a fraction, always: the engine's JSON reader takes `4711` for an
 * Integer and drops it (no rates), `4711.0` for the Double it casts to. Only our own keys can match:
 * inside a JSON string a quote is escaped.
 */
function withFraction(json: string): string {
  return json.includes('"sampleTime":') ? json.replace(/"sampleTime":(-?\d+)(?=[,}])/g, '"sampleTime":$1.0') : json;
}

/** `network` as JSON, sample times with a fraction (the pattern is searched only when one is whole). */
function networkToJson(network: Record<string, VmNetworkStats>): string {
  const json = JSON.stringify(network);
  for (const k in network) if (Number.isInteger(network[k]?.sampleTime)) return withFraction(json);
  return json;
}

function writeDigits(out: Buffer, at: number, width: number, n: number): void {
  for (let i = at + width - 1; i >= at; i--) {
    out[i] = 0x30 + (n % 10);
    n = Math.floor(n / 10);
  }
}

/**
 * Writes '[' chunk ',' chunk … ']' for the scratch's first `n` VMs at `at` (their chunks as
 * arraySize just found them); records the slots in asm when `record`.
 */
function assemble(out: Buffer, at: number, n: number, statusTime: number, record: boolean): number {
  let pos = at;
  out[pos++] = OPEN;
  for (let i = 0; i < n; i++) {
    const c = scratchChunks[i]!;
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

/** The size of the array for the scratch's first `n` VMs; marks their bytes used by reassembly `mark` (0: none). */
function arraySize(n: number, timeWidth: number, mark: number): number {
  let size = 2 + Math.max(0, n - 1);
  for (let i = 0; i < n; i++) {
    const c = chunkOf(scratchBases[i]!, timeWidth, scratchWidth[i]!);
    scratchChunks[i] = c;
    if (mark) c.used = mark;
    size += c.bytes.length;
  }
  return size;
}

/** Reassembles asm from the scratch's first `n` VMs. */
function reassemble(n: number, timeWidth: number, statusTime: number): void {
  const mark = ++reassemblies;
  const size = arraySize(n, timeWidth, mark);
  // Bytes no VM listed now used: those of VMs gone.
  if (chunks.size > n) for (const [id, c] of chunks) if (c.used !== mark) chunks.delete(id);
  // Reuse the buffer unless it is too small, or far too large for what the VMs now need.
  if (asm.bytes.length < size || asm.bytes.length > size * 2) asm.bytes = Buffer.allocUnsafe(Math.ceil(size * 1.1));
  if (asm.timeAt.length < n) {
    const cap = Math.ceil(n * 1.25);
    asm.timeAt = new Int32Array(cap);
    asm.elapsedAt = new Int32Array(cap);
    asm.elapsedWidth = new Uint8Array(cap);
    asm.elapsed = new Float64Array(cap);
  }
  asm.size = assemble(asm.bytes, 0, n, statusTime, true);
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

/** Whether the VMs gather() last put into the scratch are the ones asm holds (same objects, same widths). */
let sameAsAsm = false;

/** Puts the VMs' stats objects, elapsed times and their widths at `nowMs` into the scratch; returns how many. */
function gather(vms: Iterable<StatsSource>, nowMs: number, timeWidth: number): number {
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
  sameAsAsm = same && n === asm.count;
  return n;
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
  const n = gather(vms, nowMs, timeWidth);
  let out: Buffer;
  if (n < 2) {
    // VM.getStats (or no VMs): too small to be worth keeping.
    out = alloc(before.length + arraySize(n, timeWidth, 0) + after.length);
    out.set(before, 0);
    const size = assemble(out, before.length, n, statusTime, false);
    out.set(after, before.length + size);
  } else {
    if (sameAsAsm) restamp(statusTime);
    else reassemble(n, timeWidth, statusTime);
    out = alloc(before.length + asm.size + after.length);
    out.set(before, 0);
    out.set(asm.bytes.subarray(0, asm.size), before.length);
    out.set(after, before.length + asm.size);
  }
  scratchBases.fill(null, 0, n); // the scratch must not keep a replaced VM's stats alive
  scratchChunks.fill(null, 0, n);
  return out;
}

/**
 * Brings the assembled array up to date with the VMs now (what the next multi-VM call would do
 * first), writing no reply: called right after many VMs changed at once (a counter sample), so
 * that no call pays for it.
 */
export function warmStatsJson(vms: Iterable<StatsSource>, nowMs: number): void {
  const statusTime = eventTime(nowMs);
  const timeWidth = digitCount(statusTime);
  const n = gather(vms, nowMs, timeWidth);
  if (n >= 2 && !sameAsAsm) reassemble(n, timeWidth, statusTime);
  scratchBases.fill(null, 0, n);
  scratchChunks.fill(null, 0, n);
  preparedNetworks.clear(); // what no VM took (a VM gone meanwhile) is not kept
}
