// What "sanitised" means, as a checker the fuzzer and the end-to-end tests share: every value a
// client can receive from a guest obeys SPEC section 4's rules.
import { isIP } from 'node:net';
import type { GuestNetworkDeviceInfo } from '../../src/wire.js';

const UNSAFE =
  // eslint-disable-next-line no-control-regex -- control characters are what it finds
  /[\u0000-\u001f\u007f-\u009f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const MAC = /^(?:[0-9a-f]{2}(?::[0-9a-f]{2}){5}|[0-9a-f]{2}(?::[0-9a-f]{2}){19})$/;

/** Returns the first rule broken, or null. */
export function textProblem(value: unknown, maxChars: number): string | null {
  if (typeof value !== 'string') return `not a string: ${typeof value}`;
  if (UNSAFE.test(value)) return `unsafe character in ${JSON.stringify(value.slice(0, 60))}`;
  if (Array.from(value).length > maxChars) return `longer than ${maxChars} characters`;
  return null;
}

function interfacesProblem(list: unknown): string | null {
  if (!Array.isArray(list)) return 'netIfaces is not an array';
  if (list.length > 128) return `${list.length} interfaces`;
  for (const i of list as GuestNetworkDeviceInfo[]) {
    if (Object.keys(i).sort().join() !== 'hw,inet,inet6,name') return `interface keys ${Object.keys(i).join()}`;
    const t = textProblem(i.name, 50);
    if (t) return `name: ${t}`;
    if (i.hw !== '' && !MAC.test(i.hw)) return `bad MAC ${JSON.stringify(i.hw)}`;
    if (!Array.isArray(i.inet) || !Array.isArray(i.inet6)) return 'inet/inet6 not arrays';
    if (i.inet.length + i.inet6.length > 64) return `${i.inet.length + i.inet6.length} addresses`;
    for (const a of i.inet) if (typeof a !== 'string' || isIP(a) !== 4) return `bad inet ${JSON.stringify(a)}`;
    for (const a of i.inet6)
      if (typeof a !== 'string' || isIP(a) !== 6 || a.includes('%')) return `bad inet6 ${JSON.stringify(a)}`;
  }
  return null;
}

/** Checks a GuestReport or the guest fields of a VmStats. */
export function guestDataProblem(data: Record<string, unknown>): string | null {
  for (const k of ['guestName', 'guestFQDN', 'guestOs']) {
    if (data[k] === undefined) continue;
    const t = textProblem(data[k], 255);
    if (t) return `${k}: ${t}`;
  }
  return data.netIfaces === undefined ? null : interfacesProblem(data.netIfaces);
}
