// The QEMU guest agent protocol, pure: request bytes, the resync state machine over the reply
// stream, reply parsing, and the mapping of replies to VDSM's shapes. Shared by every way of
// reaching qemu-ga (the direct socket link here; libvirt's agent-command call elsewhere), which
// is why the mapping functions take the already-parsed `return` value.
import type { GuestNetworkDeviceInfo } from '../wire.js';
import { LineFramer, QGA_DELIMITER, isBlank } from './framing.js';
import { GuestIssue, noteIssue, type GuestIssueCode, type IssueCounts } from './issues.js';
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

export type QgaReply =
  { kind: 'return'; value: unknown } | { kind: 'error'; errorClass: string; desc: string } | { kind: 'invalid' };

/** One reply line -> return value, agent error (class and desc sanitised) or invalid. */
export function parseQgaReply(line: Uint8Array, issues: IssueCounts): QgaReply {
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
// for the interface statistics counters, which the daemon never reads. A reply line equal to a
// recent one, counters aside, is not decoded, parsed or mapped again: the reader hands back the
// earlier reply object (its `statistics` stale) and the poller its earlier mapping. With a
// thousand VMs that work was the bulk of the daemon's idle CPU.
const WS = (c: number | undefined): boolean => c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0a;
const COUNTERS_KEY = Buffer.from('"statistics"');
/** Replies longer than this are not remembered, so a hostile agent cannot make us hold much. */
const MAX_REMEMBERED_BYTES = 32 * 1024;
const REMEMBERED_REPLIES = 3;

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

/**
 * True when `line` is `known` (a line that parsed, whose counterHoles are `holes`) with other
 * counter objects in those places: it then parses to the same value but for the counters.
 */
function sameReplyButCounters(known: Buffer, holes: readonly number[], line: Buffer): boolean {
  let a = 0;
  let b = 0;
  for (let h = 0; h < holes.length; h += 2) {
    const len = holes[h]! - a;
    if (b + len > line.length || known.compare(line, b, b + len, a, a + len) !== 0) return false;
    b += len;
    if (line[b] !== 0x7b) return false;
    b = countersEnd(line, b);
    if (b === -1) return false;
    a = holes[h + 1]!;
  }
  return line.length - b === known.length - a && known.compare(line, b, line.length, a, known.length) === 0;
}

function startsWith(b: Uint8Array, at: number, prefix: Uint8Array): boolean {
  if (at + prefix.length > b.length) return false;
  for (let k = 0; k < prefix.length; k++) if (b[at + k] !== prefix[k]) return false;
  return true;
}

interface RememberedReply {
  line: Buffer;
  holes: number[];
  event: QgaEvent & { type: 'reply' };
}

export type QgaEvent =
  | { type: 'synced' }
  | { type: 'reply'; reply: QgaReply; issues: IssueCounts }
  /** Input thrown away: stale replies while resyncing, or an over-long line. */
  | { type: 'discarded'; code: GuestIssueCode };

/**
 * The host's read side of a qemu-ga stream. After `beginSync(id)` everything is discarded up to
 * the agent's 0xFF, then replies are skipped until `{"return": id}`; only then do replies flow.
 */
export class QgaReader {
  private readonly framer = new LineFramer(GUEST_LIMITS.maxLineBytes, QGA_DELIMITER);
  private syncId: number | null = null;
  private sawDelimiter = false;
  /** Recent successful replies, newest first. */
  private remembered: RememberedReply[] = [];

  get syncing(): boolean {
    return this.syncId !== null;
  }

  beginSync(id: number): void {
    this.syncId = id;
    this.sawDelimiter = false;
  }

  /** A new connection: nothing half-read survives it. */
  reset(): void {
    this.framer.reset();
    this.remembered = [];
    this.syncId = null;
    this.sawDelimiter = false;
  }

  get bufferedBytes(): number {
    return this.framer.bufferedBytes;
  }

  push(chunk: Uint8Array): QgaEvent[] {
    const events: QgaEvent[] = [];
    for (const frame of this.framer.push(chunk)) {
      if (frame.kind === 'dropped') {
        events.push({ type: 'discarded', code: frame.code });
        continue;
      }
      if (frame.kind === 'delimiter') {
        if (this.syncId !== null) this.sawDelimiter = true;
        continue;
      }
      if (isBlank(frame.bytes)) continue;
      if (this.syncId !== null) {
        if (this.sawDelimiter && this.isSyncReply(frame.bytes, this.syncId)) {
          this.syncId = null;
          events.push({ type: 'synced' });
        } else {
          events.push({ type: 'discarded', code: GuestIssue.qgaUnexpectedReply });
        }
        continue;
      }
      events.push(this.reply(frame.bytes));
    }
    return events;
  }

  private reply(line: Buffer): QgaEvent {
    const known = this.remembered.find((r) => sameReplyButCounters(r.line, r.holes, line));
    if (known) return known.event;
    const issues: IssueCounts = new Map();
    const reply = parseQgaReply(line, issues);
    if (reply.kind === 'return' && line.length <= MAX_REMEMBERED_BYTES) {
      // Its own exact-size copy: a slice of a pooled buffer would keep the whole 8 KiB slab alive.
      const own = Buffer.allocUnsafeSlow(line.length);
      line.copy(own);
      // The event itself is handed out again: its readers never modify it (issues are read-only).
      this.remembered.unshift({
        line: own,
        holes: counterHoles(line),
        event: { type: 'reply', reply, issues: new Map(issues) },
      });
      if (this.remembered.length > REMEMBERED_REPLIES) this.remembered.pop();
    }
    return { type: 'reply', reply, issues };
  }

  private isSyncReply(line: Buffer, id: number): boolean {
    const reply = parseQgaReply(line, new Map());
    return reply.kind === 'return' && reply.value === id;
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
