// Pure parsing and formatting of IP address literals for route lookups. Everything a client sends
// is checked here before the kernel or `ip` is asked: `ip` itself accepts `10.1` and `1.2.3.4/24`,
// so neither path may see unvalidated text.

/** A destination the kernel can be asked about: one address, optionally bound to an interface. */
export interface RouteTarget {
  family: 4 | 6;
  /** Network-order address bytes (4 or 16). */
  bytes: Uint8Array;
  /** Canonical text (dotted quad, or RFC 5952 IPv6 as glibc's inet_ntop writes it). */
  text: string;
  /** Output interface name from an IPv6 zone (`fe80::1%eth0`), else null. */
  zone: string | null;
}

export type ParseResult = { ok: true; target: RouteTarget } | { ok: false; reason: string };

const MAX_LENGTH = 64; // the longest IPv6 literal with a 15-character zone is 61
// Linux interface names: at most 15 bytes, no '/', ':' or whitespace. We accept the usual
// subset and refuse a leading '-' so a name can never read as an option to `ip`.
const ZONE_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/;
const ALLOWED_RE = /^[0-9A-Za-z.:%_-]*$/;

export function parseRouteTarget(input: string): ParseResult {
  const bad = (reason: string): ParseResult => ({ ok: false, reason });
  if (input === '') return bad('is empty; expected an IPv4 or IPv6 address');
  if (input.length > MAX_LENGTH) return bad(`is too long to be an IP address (${input.length} characters)`);
  if (input.includes('/')) return bad(`is a prefix (${show(input)}), not an address; give one address without '/len'`);
  if (!ALLOWED_RE.test(input)) {
    const ch = Array.from(input).find((c) => !ALLOWED_RE.test(c))!;
    return bad(`contains ${JSON.stringify(ch)}, which cannot appear in an IP address: ${show(input)}`);
  }
  const pct = input.indexOf('%');
  const addr = pct === -1 ? input : input.slice(0, pct);
  const zone = pct === -1 ? null : input.slice(pct + 1);

  if (!addr.includes(':')) {
    const v4 = parseIPv4(addr);
    if (!v4) {
      if (/[A-Za-z_-]/.test(addr)) {
        return bad(
          `looks like a host name (${show(input)}); host names are not resolved, give an IPv4 or IPv6 literal`,
        );
      }
      return bad(`is not an IPv4 address (${show(input)}); expected four decimal numbers 0-255 such as 192.0.2.1`);
    }
    if (zone !== null) return bad(`has a zone (%${show(zone)}), but zones apply only to IPv6 addresses`);
    return { ok: true, target: { family: 4, bytes: v4, text: formatIPv4(v4), zone: null } };
  }

  const v6 = parseIPv6(addr);
  if (!v6) return bad(`is not a valid IPv6 address: ${show(input)}`);
  if (zone !== null && !ZONE_RE.test(zone))
    return bad(`has a zone (%${show(zone)}) that is not a valid interface name`);
  if (isV4Mapped(v6)) {
    // The kernel routes ::ffff:a.b.c.d through the IPv6 table (normally unreachable); what the
    // caller means is the IPv4 address.
    if (zone !== null) return bad(`is an IPv4-mapped address with a zone (%${show(zone)}); zones apply only to IPv6`);
    const v4 = v6.slice(12);
    return { ok: true, target: { family: 4, bytes: v4, text: formatIPv4(v4), zone: null } };
  }
  return { ok: true, target: { family: 6, bytes: v6, text: formatIPv6(v6), zone } };
}

function show(text: string): string {
  return JSON.stringify(text.length > 40 ? text.slice(0, 40) + '…' : text);
}

/** Strict dotted quad: exactly four decimal parts 0-255, no leading zeros (inet_aton reads them as octal). */
function parseIPv4(text: string): Uint8Array | null {
  const parts = text.split('.');
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    out[i] = n;
  }
  return out;
}

/** RFC 4291 text forms, including one '::' and a trailing dotted quad. No zone, no brackets. */
export function parseIPv6(text: string): Uint8Array | null {
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const groups = (s: string): number[] | null => {
    if (s === '') return [];
    const out: number[] = [];
    const parts = s.split(':');
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      if (i === parts.length - 1 && p.includes('.')) {
        const v4 = parseIPv4(p);
        if (!v4) return null;
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else if (/^[0-9A-Fa-f]{1,4}$/.test(p)) {
        out.push(parseInt(p, 16));
      } else {
        return null;
      }
    }
    return out;
  };
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  if (!head || !tail) return null;
  // A dotted quad may only end the address.
  if (halves.length === 2 && halves[0]!.includes('.')) return null;
  let words: number[];
  if (halves.length === 2) {
    const missing = 8 - head.length - tail.length;
    if (missing < 1) return null;
    words = [...head, ...new Array<number>(missing).fill(0), ...tail];
  } else {
    if (head.length !== 8) return null;
    words = head;
  }
  const out = new Uint8Array(16);
  words.forEach((w, i) => {
    out[2 * i] = w >> 8;
    out[2 * i + 1] = w & 0xff;
  });
  return out;
}

function isV4Mapped(b: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

function formatIPv4(b: Uint8Array): string {
  return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
}

/**
 * IPv6 text exactly as glibc's inet_ntop (and therefore `ip`) writes it, so both lookup paths
 * answer with the same strings: lower-case hex, the longest run of two or more zero groups
 * (the first one on a tie) as '::', and a dotted-quad tail for IPv4-mapped/compatible addresses.
 */
export function formatIPv6(b: Uint8Array): string {
  const w: number[] = [];
  for (let i = 0; i < 8; i++) w.push((b[2 * i]! << 8) | b[2 * i + 1]!);
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8;) {
    if (w[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (bestLen < 2) bestStart = -1;
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (i === bestStart) {
      out += i === 0 ? '::' : ':';
      i += bestLen - 1;
      continue;
    }
    if (i === 6 && bestStart === 0 && (bestLen === 6 || (bestLen === 5 && w[5] === 0xffff))) {
      out += `${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
      break;
    }
    out += w[i]!.toString(16) + (i < 7 ? ':' : '');
  }
  return out;
}

export function formatAddress(b: Uint8Array): string {
  return b.length === 4 ? formatIPv4(b) : formatIPv6(b);
}
