// The one boundary where untrusted guest data becomes trusted (SPEC section 4, "The guest is
// untrusted"). Both agent protocols reduce their messages to RawInterface lists and plain
// strings, and everything kept goes through here exactly once; what comes out is a
// GuestReport whose every string is clean, capped UTF-16 and whose addresses are IP literals.
import { isIP } from 'node:net';
import type { GuestNetworkDeviceInfo } from '../wire.js';
import { GuestIssue, noteIssue, type IssueCounts } from './issues.js';

export const GUEST_LIMITS = {
  /** Longest line (bytes, without the newline) read from a channel; VDSM's cap. */
  maxLineBytes: 1024 * 1024,
  /** Interface names: the engine's VARCHAR(50). */
  maxNameChars: 50,
  /** Host name, FQDN, OS string: a DNS name is at most 253 characters; 255 leaves room. */
  maxTextChars: 255,
  maxInterfaces: 128,
  /** inet and inet6 together, per interface. */
  maxAddressesPerInterface: 64,
} as const;

/** Sanitised guest data from one message or poll round; absent fields were not reported. */
export interface GuestReport {
  netIfaces?: GuestNetworkDeviceInfo[];
  guestName?: string;
  guestFQDN?: string;
  guestOs?: string;
}

/** One interface as a protocol extracted it, before any value is trusted. */
export interface RawInterface {
  name: unknown;
  hw: unknown;
  inet: unknown[];
  inet6: unknown[];
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const lenientUtf8 = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

/** Bytes (`bytes[start, end)`) -> string; invalid UTF-8 sequences become U+FFFD (and are counted). */
export function decodeUtf8(bytes: Uint8Array, issues: IssueCounts, start = 0, end = bytes.length): string {
  // Buffer's decoder (one native call, cheaper than TextDecoder's) turns every invalid sequence
  // into U+FFFD, so a result without one came from valid UTF-8 and is what the strict decoder
  // gives. A result with one (invalid bytes, or a U+FFFD the guest really sent) is decoded again
  // below, exactly as before.
  if (Buffer.isBuffer(bytes)) {
    const text = bytes.toString('utf8', start, end);
    if (!text.includes('\ufffd')) return text;
  }
  const part = start === 0 && end === bytes.length ? bytes : bytes.subarray(start, end);
  try {
    return strictUtf8.decode(part);
  } catch {
    noteIssue(issues, GuestIssue.textReplaced);
    return lenientUtf8.decode(part);
  }
}

// What never reaches a client: C0 controls (tab/CR/LF too: every field we keep is one line),
// DEL and C1 controls, lone surrogates, and the non-characters U+FFFE/U+FFFF. A superset of the
// XML-invalid set VDSM replaces.
const UNSAFE =
  // eslint-disable-next-line no-control-regex -- control characters are what it finds
  /[\u0000-\u001f\u007f-\u009f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** Replaces unsafe characters with U+FFFD and cuts to `maxChars` code points. */
export function cleanText(text: string, maxChars: number, issues: IssueCounts): string {
  let out = text;
  if (out.length > maxChars) out = cutCodePoints(out, maxChars, issues);
  UNSAFE.lastIndex = 0;
  if (UNSAFE.test(out)) {
    noteIssue(issues, GuestIssue.textReplaced);
    UNSAFE.lastIndex = 0;
    out = out.replace(UNSAFE, '\ufffd');
  }
  return out;
}

function cutCodePoints(text: string, maxChars: number, issues: IssueCounts): string {
  let count = 0;
  let i = 0;
  while (i < text.length && count < maxChars) {
    const c = text.charCodeAt(i);
    // A high surrogate followed by a low one is one code point: never split the pair.
    i += c >= 0xd800 && c <= 0xdbff && i + 1 < text.length && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00 ? 2 : 1;
    count++;
  }
  if (i < text.length) noteIssue(issues, GuestIssue.textTruncated);
  return text.slice(0, i);
}

/** A text field the guest may omit: absent/null gives null; any other non-string is a bad field. */
export function cleanOptionalText(value: unknown, maxChars: number, issues: IssueCounts): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string') {
    noteIssue(issues, GuestIssue.badField);
    return null;
  }
  return cleanText(value, maxChars, issues);
}

const MAC_6 = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/i;
const MAC_20 = /^[0-9a-f]{2}(?::[0-9a-f]{2}){19}$/i; // InfiniBand (IPoIB) hardware addresses

/** A MAC of 6 or 20 colon-separated hex octets, lower-cased; anything else is "". */
export function cleanMac(value: unknown, issues: IssueCounts): string {
  if (value === undefined || value === null || value === '') return '';
  if (typeof value === 'string' && value.length <= 59 && (MAC_6.test(value) || MAC_20.test(value)))
    return value.toLowerCase();
  noteIssue(issues, GuestIssue.badMac);
  return '';
}

// Longest IPv6 text ("ffff:...:255.255.255.255") is 45 characters: anything longer is not an IP.
const MAX_IP_TEXT = 45;

/** An IP literal of `family`, with an IPv6 `%zone` removed; null (and counted) otherwise. */
export function cleanAddress(value: unknown, family: 4 | 6, issues: IssueCounts): string | null {
  if (typeof value === 'string') {
    let text = value;
    if (family === 6) {
      const zone = text.indexOf('%');
      if (zone > 0) text = text.slice(0, zone);
    }
    if (text.length <= MAX_IP_TEXT && isIP(text) === family) return text;
  }
  noteIssue(issues, GuestIssue.badAddress);
  return null;
}

/** Applies every interface rule: names, MACs, addresses, and both caps. */
export function sanitizeInterfaces(raw: readonly RawInterface[], issues: IssueCounts): GuestNetworkDeviceInfo[] {
  if (raw.length > GUEST_LIMITS.maxInterfaces)
    noteIssue(issues, GuestIssue.tooManyInterfaces, raw.length - GUEST_LIMITS.maxInterfaces);
  const out: GuestNetworkDeviceInfo[] = [];
  for (const r of raw.slice(0, GUEST_LIMITS.maxInterfaces)) {
    let room: number = GUEST_LIMITS.maxAddressesPerInterface;
    const take = (list: unknown[], family: 4 | 6): string[] => {
      const kept: string[] = [];
      for (const a of list) {
        const addr = cleanAddress(a, family, issues);
        if (addr === null) continue;
        if (room === 0) {
          noteIssue(issues, GuestIssue.tooManyAddresses);
          continue;
        }
        kept.push(addr);
        room--;
      }
      return kept.slice(); // exact size: a pushed-to array keeps room for 17 (kept for as long as the VM reports it)
    };
    const name =
      typeof r.name === 'string' ? cleanText(r.name, GUEST_LIMITS.maxNameChars, issues) : missingName(r.name, issues);
    const hw = cleanMac(r.hw, issues);
    const inet = take(r.inet, 4);
    const inet6 = take(r.inet6, 6);
    out.push({ name, hw, inet, inet6 });
  }
  return out.slice();
}

function missingName(value: unknown, issues: IssueCounts): string {
  if (value !== undefined && value !== null) noteIssue(issues, GuestIssue.badField);
  return '';
}

/** An array field the guest may omit or garble: not an array gives [] (counted unless absent). */
export function arrayField(value: unknown, issues: IssueCounts): unknown[] {
  if (Array.isArray(value)) return value;
  if (value !== undefined && value !== null) noteIssue(issues, GuestIssue.badField);
  return [];
}

/** Reads an own property only: a guest's `__proto__` or `constructor` key is just data. */
export function own(obj: object, key: string): unknown {
  return Object.prototype.hasOwnProperty.call(obj, key) ? (obj as Record<string, unknown>)[key] : undefined;
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** JSON text -> value, or undefined (counted) when it is not JSON. */
export function parseJson(text: string, issues: IssueCounts): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    noteIssue(issues, GuestIssue.badJson);
    return undefined;
  }
}
