// The oVirt guest agent protocol, pure: one line in, one sanitised message out; and the bytes the
// host sends. No sockets here (ovirtChannel.ts feeds this from a connection).
import { GuestIssue, NO_ISSUES, noteIssue, type IssueCounts } from './issues.js';
import {
  GUEST_LIMITS,
  arrayField,
  cleanOptionalText,
  decodeUtf8,
  isPlainObject,
  own,
  parseJson,
  sanitizeInterfaces,
  type GuestReport,
  type RawInterface,
} from './sanitize.js';

/** The highest protocol version this host speaks (as VDSM). */
export const OVIRT_API_VERSION = 3;

export interface OvirtMessage {
  /** `__name__`, sanitised; null when the line was not a named message. */
  name: string | null;
  /** Guest data to apply; null when the message carries none (heartbeat, unknown, invalid). */
  report: GuestReport | null;
  /** The `apiVersion` a heartbeat announced, when it is a usable number. */
  apiVersion: number | null;
  /** A valid message (known or not): the agent is alive. */
  valid: boolean;
  /** What was dropped or replaced; the shared, never-modified NO_ISSUES when nothing was. */
  issues: IssueCounts;
}

function encodeOvirt(name: string, args: Record<string, unknown> = {}): Buffer {
  return Buffer.from(JSON.stringify({ __name__: name, ...args }) + '\n', 'utf8');
}

/** Sent on every connect: asks the agent for its full state. */
export function encodeRefresh(apiVersion: number = OVIRT_API_VERSION): Buffer {
  return encodeOvirt('refresh', { apiVersion });
}

export function encodeApiVersion(apiVersion: number): Buffer {
  return encodeOvirt('api-version', { apiVersion });
}

/**
 * The version both sides speak after a heartbeat: min(agent's, ours). Returns the new version
 * when it differs from `current` (the host then sends `api-version`), else null. The first
 * heartbeat of an agent says 0, so nothing is sent until it announces more.
 */
export function negotiateApiVersion(current: number, announced: number | null): number | null {
  if (announced === null) return null;
  const agreed = Math.min(announced, OVIRT_API_VERSION);
  return agreed === current ? null : agreed;
}

// Issues are noted here while a line is read and copied out only when there are some: a heartbeat
// has none, and a Map per line was a visible part of the daemon's idle cost. Module state: the
// parser is synchronous, and the Map is emptied before each line (also after a throw).
const lineIssues: IssueCounts = new Map();

/** One line (`line[start, end)`, without its newline) -> the message it is. */
export function parseOvirtLine(line: Uint8Array, start = 0, end = line.length): OvirtMessage {
  if (lineIssues.size) lineIssues.clear();
  const result = readLine(line, start, end, lineIssues);
  if (lineIssues.size) {
    result.issues = new Map(lineIssues);
    lineIssues.clear();
  }
  return result;
}

function readLine(line: Uint8Array, start: number, end: number, issues: IssueCounts): OvirtMessage {
  const result: OvirtMessage = { name: null, report: null, apiVersion: null, valid: false, issues: NO_ISSUES };
  const value = parseJson(decodeUtf8(line, issues, start, end), issues);
  if (value === undefined) return result;
  if (!isPlainObject(value)) {
    noteIssue(issues, GuestIssue.notObject);
    return result;
  }
  const rawName = own(value, '__name__');
  if (typeof rawName !== 'string') {
    noteIssue(issues, GuestIssue.noName);
    return result;
  }
  // The commonest name is clean as it is: cleaning it would only run the unsafe-text scan.
  const name =
    rawName === 'heartbeat' ? rawName : (cleanOptionalText(rawName, GUEST_LIMITS.maxNameChars, issues) ?? '');
  result.name = name;
  result.valid = true;
  switch (name) {
    case 'heartbeat': {
      const v = own(value, 'apiVersion');
      if (typeof v === 'number' && Number.isInteger(v) && v >= 0) result.apiVersion = v;
      else if (v !== undefined) noteIssue(issues, GuestIssue.badField);
      break;
    }
    case 'network-interfaces':
      result.report = interfacesReport(own(value, 'interfaces'), issues);
      break;
    case 'host-name':
      result.report = textReport('guestName', own(value, 'name'), issues);
      break;
    case 'fqdn':
      result.report = textReport('guestFQDN', own(value, 'fqdn'), issues);
      break;
    case 'os-version':
      result.report = textReport('guestOs', own(value, 'version'), issues);
      break;
    default:
      noteIssue(issues, GuestIssue.unknownMessage);
  }
  return result;
}

function interfacesReport(value: unknown, issues: IssueCounts): GuestReport | null {
  if (!Array.isArray(value)) {
    noteIssue(issues, GuestIssue.badField);
    return null;
  }
  const raw: RawInterface[] = [];
  for (const entry of value) {
    if (!isPlainObject(entry)) {
      noteIssue(issues, GuestIssue.badField);
      continue;
    }
    raw.push({
      name: own(entry, 'name'),
      hw: own(entry, 'hw'),
      inet: arrayField(own(entry, 'inet'), issues),
      inet6: arrayField(own(entry, 'inet6'), issues),
    });
  }
  return { netIfaces: sanitizeInterfaces(raw, issues) };
}

function textReport(
  field: 'guestName' | 'guestFQDN' | 'guestOs',
  value: unknown,
  issues: IssueCounts,
): GuestReport | null {
  const text = cleanOptionalText(value, GUEST_LIMITS.maxTextChars, issues);
  if (text === null) {
    if (value === undefined || value === null) noteIssue(issues, GuestIssue.badField);
    return null;
  }
  return { [field]: text };
}
