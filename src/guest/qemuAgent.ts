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

/** The commands polled every interval, in order. */
export const QGA_POLLED = [QGA.interfaces, QGA.hostName, QGA.osInfo] as const;

/** Argument-less requests are the same bytes every poll: built once (never mutated; writes only read them). */
const plainCommands = new Map<string, Buffer>();

export function encodeCommand(execute: string, args?: Record<string, unknown>): Buffer {
  if (args === undefined) {
    let bytes = plainCommands.get(execute);
    if (!bytes) plainCommands.set(execute, (bytes = Buffer.from(JSON.stringify({ execute }) + '\n', 'utf8')));
    return bytes;
  }
  return Buffer.from(JSON.stringify({ execute, arguments: args }) + '\n', 'utf8');
}

/** The resync request, prefixed with 0xFF so the agent throws away any half-read input. */
export function encodeSync(id: number): Buffer {
  return Buffer.concat([Buffer.of(QGA_DELIMITER), encodeCommand(QGA.sync, { id })]);
}

export type QgaReply =
  | { kind: 'return'; value: unknown }
  | { kind: 'error'; errorClass: string; desc: string }
  | { kind: 'invalid' };

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
      const issues: IssueCounts = new Map();
      events.push({ type: 'reply', reply: parseQgaReply(frame.bytes, issues), issues });
    }
    return events;
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
  const text = (key: string): string | null => cleanOptionalText(own(value, key), GUEST_LIMITS.maxTextChars, issues) || null;
  const windows = own(value, 'id') === 'mswindows';
  const nameVersion = [text('name'), text('version')].filter((t): t is string => t !== null).join(' ');
  const kernel = text('kernel-release');
  const candidates = windows ? [text('pretty-name'), nameVersion, kernel] : [kernel, text('pretty-name'), nameVersion];
  const found = candidates.find((c) => c);
  return found ? cleanText(found, GUEST_LIMITS.maxTextChars, issues) : null;
}
