// The QEMU guest agent protocol, pure: request bytes, the resync state machine over the reply
// stream, reply parsing, and the mapping of replies to VDSM's shapes. Shared by every way of
// reaching qemu-ga (the direct socket link here; libvirt's agent-command call elsewhere), which
// is why the mapping functions take the already-parsed `return` value.
import type { GuestNetworkDeviceInfo } from '../wire.js';
import { LineFramer, QGA_DELIMITER, isBlank, type FrameSink } from './framing.js';
import { GuestIssue, NO_ISSUES, noteIssue, type GuestIssueCode, type IssueCounts } from './issues.js';
import {
  GUEST_LIMITS,
  arrayField,
  cleanOptionalText,
  cleanText,
  decodeUtf8,
  isPlainObject,
  own,
  parseJson,
  sanitizeInterfaces,
  type RawInterface,
} from './sanitize.js';

export const QGA = {
  sync: 'guest-sync-delimited',
  interfaces: 'guest-network-get-interfaces',
  hostName: 'guest-get-host-name',
  osInfo: 'guest-get-osinfo',
} as const;

/** The commands polled, in order (the first every interval, the others less often: channels/qgaPoller.ts). */
export const QGA_POLLED = [QGA.interfaces, QGA.hostName, QGA.osInfo] as const;

/** Argument-less requests are the same bytes every poll: built once (never mutated; writes only read them). */
const plainCommands = new Map<string, Buffer>();

/** A qemu-ga request as JSON text: `arguments` only when there are some (as libvirt takes it). */
export function commandJson(execute: string, args?: Record<string, unknown>): string {
  return JSON.stringify(args === undefined ? { execute } : { execute, arguments: args });
}

/** A qemu-ga request as the bytes written to its channel: the JSON text and a newline. */
export function encodeCommand(execute: string, args?: Record<string, unknown>): Buffer {
  if (args === undefined) {
    let bytes = plainCommands.get(execute);
    if (!bytes) plainCommands.set(execute, (bytes = Buffer.from(commandJson(execute) + '\n', 'utf8')));
    return bytes;
  }
  return Buffer.from(commandJson(execute, args) + '\n', 'utf8');
}

/** The resync request, prefixed with 0xFF so the agent throws away any half-read input. */
export function encodeSync(id: number): Buffer {
  return Buffer.concat([Buffer.of(QGA_DELIMITER), encodeCommand(QGA.sync, { id })]);
}

/** A reply line, parsed. */
export type ParsedQgaReply =
  { kind: 'return'; value: unknown } | { kind: 'error'; errorClass: string; desc: string } | { kind: 'invalid' };
/** `same`: the same reply (counters aside) as the last one to the same command, not parsed again (QgaReader). */
export type QgaReply = ParsedQgaReply | { kind: 'same' };

/** One reply line -> return value, agent error (class and desc sanitised) or invalid. */
export function parseQgaReply(line: Uint8Array, issues: IssueCounts): ParsedQgaReply {
  const value = parseJson(decodeUtf8(line, issues), issues);
  if (value === undefined) return { kind: 'invalid' };
  if (!isPlainObject(value)) {
    noteIssue(issues, GuestIssue.notObject);
    return { kind: 'invalid' };
  }
  if (Object.prototype.hasOwnProperty.call(value, 'return')) return { kind: 'return', value: own(value, 'return') };
  const error = own(value, 'error');
  if (isPlainObject(error)) {
    return {
      kind: 'error',
      errorClass: cleanOptionalText(own(error, 'class'), GUEST_LIMITS.maxNameChars, issues) ?? 'GenericError',
      desc: cleanOptionalText(own(error, 'desc'), GUEST_LIMITS.maxTextChars, issues) ?? '',
    };
  }
  noteIssue(issues, GuestIssue.qgaUnexpectedReply);
  return { kind: 'invalid' };
}

// A poll asks the same three questions every few seconds and the answers rarely change, except
// for the interface statistics counters, which the daemon never reads. A reply to a command that
// equals the last reply to that command, counters aside, is not decoded, parsed or mapped again:
// the reader says `same` and the poller reuses its earlier mapping. With a thousand VMs that work
// was the bulk of the daemon's idle CPU. What is remembered is a fingerprint, not the reply: the
// lengths of the parts between counter objects and a 64-bit hash of their bytes (~0.1 KiB per
// command instead of a copy of the line and its parsed value, ~2.5 KiB per VM polled). A hash
// that two different replies share would only keep that VM's earlier data, which the guest could
// as well keep by sending its earlier reply: no guest can harm another through it.
const WS = (c: number | undefined): boolean => c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0a;
const COUNTERS_KEY = Buffer.from('"statistics"');
/** Replies longer than this are not remembered (bounds the parts kept, and the hashing per reply). */
const MAX_REMEMBERED_BYTES = 32 * 1024;

/**
 * Where a counters object starting at `at` (its "{") ends (exclusive), or -1 unless it is
 * exactly `{"name": integer, ...}` as qemu-ga writes it: keys [a-z0-9_-], integers without sign
 * or leading zeros. Any other content is compared byte by byte like the rest of the line.
 */
function countersEnd(b: Uint8Array, at: number): number {
  let i = at + 1;
  while (WS(b[i])) i++;
  if (b[i] === 0x7d) return i + 1;
  for (;;) {
    if (b[i++] !== 0x22) return -1;
    const keyStart = i;
    for (
      let c = b[i];
      c !== undefined && ((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f);
      c = b[++i]
    );
    if (i === keyStart || b[i++] !== 0x22) return -1;
    while (WS(b[i])) i++;
    if (b[i++] !== 0x3a) return -1;
    while (WS(b[i])) i++;
    const c0 = b[i];
    if (c0 === 0x30) i++;
    else if (c0 !== undefined && c0 >= 0x31 && c0 <= 0x39)
      for (i++; b[i] !== undefined && b[i]! >= 0x30 && b[i]! <= 0x39; i++);
    else return -1;
    while (WS(b[i])) i++;
    const sep = b[i++];
    if (sep === 0x7d) return i;
    if (sep !== 0x2c) return -1;
    while (WS(b[i])) i++;
  }
}

/**
 * The counter objects of a reply line that parsed: [start, end) pairs, each a `{…}` that is the
 * value of a `"statistics"` member and passes countersEnd. Strings are tracked (with their
 * escapes) so a key is only taken for a key.
 */
function counterHoles(line: Uint8Array): number[] {
  const holes: number[] = [];
  let inString = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
      continue;
    }
    if (c !== 0x22) continue;
    if (startsWith(line, i, COUNTERS_KEY)) {
      let p = i + COUNTERS_KEY.length;
      while (WS(line[p])) p++;
      if (line[p] === 0x3a) {
        p++;
        while (WS(line[p])) p++;
        const end = line[p] === 0x7b ? countersEnd(line, p) : -1;
        if (end !== -1) {
          holes.push(p, end);
          i = end - 1;
          continue;
        }
      }
    }
    inString = true;
  }
  return holes;
}

function startsWith(b: Uint8Array, at: number, prefix: Uint8Array): boolean {
  if (at + prefix.length > b.length) return false;
  for (let k = 0; k < prefix.length; k++) if (b[at + k] !== prefix[k]) return false;
  return true;
}

/** A remembered reply: the byte lengths of its parts between counter objects, their hash, and its parse issues. */
interface Fingerprint {
  parts: number[];
  h1: number;
  h2: number;
  /** Counted again each time the reply repeats, as if it had been parsed. */
  issues: IssueCounts;
}

// Two 32-bit multiply-xor lanes over the bytes, four at a time (cyrb53's round; each step is a
// bijection of the state, so replies of equal length that differ in one place never collide).
// Module state: no allocation per reply. A word at a time took the unchanged-reply check from
// the daemon's largest function at idle to a third of that.
let lane1 = 0;
let lane2 = 0;
function hashInit(): void {
  lane1 = 0xdeadbeef;
  lane2 = 0x41c6ce57;
}
/** A DataView of the last ArrayBuffer hashed (lines are mostly views of the channels' one read buffer). */
let words: DataView = new DataView(new ArrayBuffer(0));
function hashBytes(b: Uint8Array, from: number, to: number): void {
  let h1 = lane1;
  let h2 = lane2;
  let i = from;
  const wordsEnd = from + ((to - from) & ~3);
  if (wordsEnd > from) {
    if (words.buffer !== b.buffer) words = new DataView(b.buffer);
    const dv = words;
    for (let at = b.byteOffset + i; i < wordsEnd; i += 4, at += 4) {
      const w = dv.getUint32(at, true);
      h1 = Math.imul(h1 ^ w, 2654435761);
      h2 = Math.imul(h2 ^ w, 1597334677);
    }
  }
  for (; i < to; i++) {
    const c = b[i]!;
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  lane1 = h1;
  lane2 = h2;
}

/** The fingerprint of a reply line that parsed. */
function fingerprint(line: Uint8Array, issues: IssueCounts): Fingerprint {
  const holes = counterHoles(line);
  const parts: number[] = [];
  hashInit();
  let at = 0;
  for (let h = 0; h < holes.length; h += 2) {
    hashBytes(line, at, holes[h]!);
    parts.push(holes[h]! - at);
    at = holes[h + 1]!;
  }
  hashBytes(line, at, line.length);
  parts.push(line.length - at);
  return { parts: parts.slice(), h1: lane1, h2: lane2, issues: issues.size ? new Map(issues) : NO_ISSUES };
}

/**
 * True when `line` is the line `f` was taken of with other counter objects in the same places:
 * it then parses to the same value but for the counters.
 */
function matches(f: Fingerprint, line: Uint8Array): boolean {
  hashInit();
  let b = 0;
  const last = f.parts.length - 1;
  for (let p = 0; p < last; p++) {
    const end = b + f.parts[p]!;
    if (end >= line.length || line[end] !== 0x7b) return false;
    hashBytes(line, b, end);
    b = countersEnd(line, end);
    if (b === -1) return false;
  }
  if (line.length - b !== f.parts[last]) return false;
  hashBytes(line, b, line.length);
  return lane1 === f.h1 && lane2 === f.h2;
}

/** What a reply to a command is when it repeats the last reply to that command (QgaReader.push). */
export const SAME_REPLY: QgaReply = Object.freeze({ kind: 'same' });

export type QgaEvent =
  | { type: 'synced' }
  | { type: 'reply'; reply: QgaReply; issues: IssueCounts }
  /** Input thrown away: stale replies while resyncing, or an over-long line. */
  | { type: 'discarded'; code: GuestIssueCode };

/** Where QgaReader.read() hands what it finds, in stream order: what push() lists as QgaEvents. */
export interface QgaEventSink {
  synced(): void;
  /** `issues` may be shared (a repeated reply's are the remembered ones): read them, never change them. */
  reply(reply: QgaReply, issues: IssueCounts): void;
  /** Input thrown away: stale replies while resyncing, or an over-long line. */
  discarded(code: GuestIssueCode): void;
}

/** push()'s sink: collects the events into a list. */
class QgaEventList implements QgaEventSink {
  readonly events: QgaEvent[] = [];
  synced(): void {
    this.events.push({ type: 'synced' });
  }
  reply(reply: QgaReply, issues: IssueCounts): void {
    this.events.push({ type: 'reply', reply, issues });
  }
  discarded(code: GuestIssueCode): void {
    this.events.push({ type: 'discarded', code });
  }
}

/** The lines' sink between reads: nothing comes then. */
const NO_EVENTS: QgaEventSink = { synced: () => undefined, reply: () => undefined, discarded: () => undefined };

/** The reader's state machine over the framer's frames (LineFramer.feed's sink). */
class QgaLines implements FrameSink {
  syncId: number | null = null;
  sawDelimiter = false;
  /** Per command, the last reply to it (a `return` that was remembered); at most one per command polled. */
  readonly known = new Map<string, Fingerprint>();
  /** Where events go during a read (set by QgaReader). */
  out: QgaEventSink = NO_EVENTS;
  /** The command the next reply line answers, or null (see QgaReader.read). */
  answering: string | null = null;

  dropped(code: GuestIssueCode): void {
    this.out.discarded(code);
    // An over-long line answers the command too (with nothing usable): the earlier reply is
    // still the last one the caller got.
    if (this.syncId === null) this.answering = null;
  }

  delimiter(): void {
    if (this.syncId !== null) this.sawDelimiter = true;
  }

  line(chunk: Buffer, start: number, end: number): void {
    if (isBlank(chunk, start, end)) return;
    if (this.syncId !== null) {
      if (this.sawDelimiter && isSyncReply(chunk.subarray(start, end), this.syncId)) {
        this.syncId = null;
        this.out.synced();
      } else {
        this.out.discarded(GuestIssue.qgaUnexpectedReply);
      }
      return;
    }
    const command = this.answering;
    this.answering = null;
    this.reply(start === 0 && end === chunk.length ? chunk : chunk.subarray(start, end), command);
  }

  private reply(line: Buffer, command: string | null): void {
    const known = command === null ? undefined : this.known.get(command);
    if (known && matches(known, line)) {
      this.out.reply(SAME_REPLY, known.issues);
      return;
    }
    const issues: IssueCounts = new Map();
    const reply = parseQgaReply(line, issues);
    if (command !== null) {
      // Whatever this reply is, the earlier one is no longer the last one the caller got.
      if (reply.kind === 'return' && line.length <= MAX_REMEMBERED_BYTES)
        this.known.set(command, fingerprint(line, issues));
      else this.known.delete(command);
    }
    this.out.reply(reply, issues);
  }
}

function isSyncReply(line: Buffer, id: number): boolean {
  const reply = parseQgaReply(line, new Map());
  return reply.kind === 'return' && reply.value === id;
}

/**
 * The host's read side of a qemu-ga stream. After `beginSync(id)` everything is discarded up to
 * the agent's 0xFF, then replies are skipped until `{"return": id}`; only then do replies flow.
 */
export class QgaReader {
  private readonly framer = new LineFramer(GUEST_LIMITS.maxLineBytes, QGA_DELIMITER);
  private readonly lines = new QgaLines();

  get syncing(): boolean {
    return this.lines.syncId !== null;
  }

  beginSync(id: number): void {
    this.lines.syncId = id;
    this.lines.sawDelimiter = false;
  }

  /** A new connection: nothing half-read survives it. */
  reset(): void {
    this.framer.reset();
    this.lines.known.clear();
    this.lines.syncId = null;
    this.lines.sawDelimiter = false;
  }

  get bufferedBytes(): number {
    return this.framer.bufferedBytes;
  }

  /**
   * `answering`: the command whose reply the next reply line is (its caller's command in flight),
   * or null. That line is compared with the last reply to the same command and, when it repeats
   * it (counters aside), comes out as SAME_REPLY, unparsed; its caller must then still have what
   * it made of that earlier reply. Every other line is parsed. Events go to `sink` as they are
   * found (a list and an object per reply were a visible part of the idle cost of a thousand
   * agents); `sink` must not call this reader back from inside.
   */
  read(chunk: Uint8Array, answering: string | null, sink: QgaEventSink): void {
    const lines = this.lines;
    lines.out = sink;
    lines.answering = answering;
    try {
      this.framer.feed(chunk, lines);
    } finally {
      lines.out = NO_EVENTS;
      lines.answering = null;
    }
  }

  /** read() as a list, through the framer's list (the general path: tests and tools). */
  push(chunk: Uint8Array, answering: string | null = null): QgaEvent[] {
    const list = new QgaEventList();
    const lines = this.lines;
    lines.out = list;
    lines.answering = answering;
    try {
      for (const frame of this.framer.push(chunk)) {
        if (frame.kind === 'dropped') lines.dropped(frame.code);
        else if (frame.kind === 'delimiter') lines.delimiter();
        else lines.line(frame.bytes, 0, frame.bytes.length);
      }
    } finally {
      lines.out = NO_EVENTS;
      lines.answering = null;
    }
    return list.events;
  }
}

/**
 * `guest-network-get-interfaces` -> netIfaces. Every field may be missing; `eth0:1` label aliases
 * merge into `eth0` (as libvirt does); an IPv6 `%zone` is removed; then the common sanitiser.
 */
export function mapQgaInterfaces(value: unknown, issues: IssueCounts): GuestNetworkDeviceInfo[] | null {
  if (!Array.isArray(value)) {
    noteIssue(issues, GuestIssue.badField);
    return null;
  }
  const byName = new Map<string, RawInterface>();
  const raw: RawInterface[] = [];
  for (const entry of value) {
    if (!isPlainObject(entry)) {
      noteIssue(issues, GuestIssue.badField);
      continue;
    }
    const rawName = own(entry, 'name');
    const hw = own(entry, 'hardware-address');
    let iface: RawInterface;
    if (typeof rawName === 'string') {
      const colon = rawName.indexOf(':');
      const base = colon > 0 ? rawName.slice(0, colon) : rawName;
      const known = byName.get(base);
      if (known) {
        iface = known;
        if ((known.hw === undefined || known.hw === null || known.hw === '') && typeof hw === 'string') known.hw = hw;
      } else {
        iface = { name: base, hw, inet: [], inet6: [] };
        byName.set(base, iface);
        raw.push(iface);
      }
    } else {
      iface = { name: rawName, hw, inet: [], inet6: [] };
      raw.push(iface);
    }
    for (const a of arrayField(own(entry, 'ip-addresses'), issues)) {
      if (!isPlainObject(a)) {
        noteIssue(issues, GuestIssue.badAddress);
        continue;
      }
      const type = own(a, 'ip-address-type');
      const addr = own(a, 'ip-address');
      if (type === 'ipv4') iface.inet.push(addr);
      else if (type === 'ipv6') iface.inet6.push(addr);
      else noteIssue(issues, GuestIssue.badAddress);
    }
  }
  return sanitizeInterfaces(raw, issues);
}

/** `guest-get-host-name` -> guestName. */
export function mapQgaHostName(value: unknown, issues: IssueCounts): string | null {
  if (!isPlainObject(value)) {
    noteIssue(issues, GuestIssue.badField);
    return null;
  }
  return cleanOptionalText(own(value, 'host-name'), GUEST_LIMITS.maxTextChars, issues);
}

/**
 * `guest-get-osinfo` -> guestOs, with the oVirt agent's meaning of `os-version`: the kernel
 * release on Linux, the Windows version name on Windows. Fallbacks: `pretty-name`, then
 * `name version`, then the kernel release.
 */
export function mapQgaOsInfo(value: unknown, issues: IssueCounts): string | null {
  if (!isPlainObject(value)) {
    noteIssue(issues, GuestIssue.badField);
    return null;
  }
  const text = (key: string): string | null =>
    cleanOptionalText(own(value, key), GUEST_LIMITS.maxTextChars, issues) || null;
  const windows = own(value, 'id') === 'mswindows';
  const nameVersion = [text('name'), text('version')].filter((t): t is string => t !== null).join(' ');
  const kernel = text('kernel-release');
  const candidates = windows ? [text('pretty-name'), nameVersion, kernel] : [kernel, text('pretty-name'), nameVersion];
  const found = candidates.find((c) => c);
  return found ? cleanText(found, GUEST_LIMITS.maxTextChars, issues) : null;
}
