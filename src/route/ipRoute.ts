// The fallback: `ip -d -N -j route get ADDR [oif DEV]` run with execa (no shell; ADDR and DEV were
// validated by ipLiteral). `-N` prints table and type as numbers, `-d` prints them always, so the
// answer maps onto the same fields as the netlink reply without reading /etc/iproute2/rt_tables.
import { ConcurrencyLimit } from './concurrencyLimit.js';
import type { RouteTarget } from './ipLiteral.js';
import type { RouteFields } from './netlinkRoute.js';
import {
  ERRNO_BY_MESSAGE,
  LookupFailed,
  RouteRefused,
  UnknownZone,
  routeFields,
  routeTypeName,
} from './routeAnswer.js';

export function ipRouteGetArgs(target: RouteTarget): string[] {
  return ['-d', '-N', '-j', 'route', 'get', target.text, ...(target.zone === null ? [] : ['oif', target.zone])];
}

/** Pure: the JSON `ip -d -N -j route get` prints, to route fields. Throws on anything else. */
export function parseIpRouteGet(stdout: string): RouteFields {
  let json: unknown;
  try {
    json = JSON.parse(stdout);
  } catch {
    throw new Error('ip printed no JSON');
  }
  const r = Array.isArray(json) ? (json[0] as Record<string, unknown> | undefined) : undefined;
  if (!r || typeof r !== 'object' || typeof r.dev !== 'string') throw new Error('ip printed no route with a device');
  return routeFields({
    device: r.dev,
    gateway: typeof r.gateway === 'string' ? r.gateway : undefined,
    source: typeof r.prefsrc === 'string' ? r.prefsrc : undefined,
    table: numberField(r.table, 0),
    type: routeTypeName(numberField(r.type, 0)),
  });
}

function numberField(v: unknown, absent: number): number {
  if (v === undefined) return absent; // ip leaves out table 0 (none) even with -d
  const n = typeof v === 'number' ? v : Number(v);
  if (!Number.isInteger(n)) throw new Error(`ip printed a non-numeric field: ${JSON.stringify(v)}`);
  return n;
}

export type IpFailure =
  { kind: 'refused'; errno: string } | { kind: 'unknown-device'; device: string } | { kind: 'other'; message: string };

/** Pure: what a failed `ip route get` said on stderr (run with LC_ALL=C). */
export function parseIpRouteError(stderr: string): IpFailure {
  const answer = /RTNETLINK answers: (.+)/.exec(stderr);
  if (answer) {
    const text = answer[1]!.trim();
    return { kind: 'refused', errno: ERRNO_BY_MESSAGE[text] ?? text };
  }
  const dev = /Cannot find device "([^"]*)"/.exec(stderr);
  if (dev) return { kind: 'unknown-device', device: dev[1]! };
  return { kind: 'other', message: stderr.trim().split('\n')[0] ?? '' };
}

export interface IpRouteOptions {
  ipCommand?: string;
  maxConcurrent?: number;
  timeoutMs?: number;
}

export class IpRoute {
  private readonly limit: ConcurrencyLimit;
  private readonly ipCommand: string;
  private readonly timeoutMs: number;

  constructor(opts: IpRouteOptions = {}) {
    this.ipCommand = opts.ipCommand ?? 'ip';
    this.limit = new ConcurrencyLimit(opts.maxConcurrent ?? 8);
    this.timeoutMs = opts.timeoutMs ?? 5000;
  }

  /** Throws RouteRefused, UnknownZone, or LookupFailed. */
  lookup(target: RouteTarget): Promise<RouteFields> {
    return this.limit.run(async () => {
      // Loaded on first use: execa costs ~130 ms of start-up, and netlink answers most hosts' lookups.
      const { execa } = await import('execa');
      const res = await execa(this.ipCommand, ipRouteGetArgs(target), {
        reject: false,
        timeout: this.timeoutMs,
        env: { LC_ALL: 'C' },
        stdin: 'ignore',
      });
      if (res.exitCode === 0 && !res.failed) {
        try {
          return parseIpRouteGet(res.stdout);
        } catch (err) {
          throw new LookupFailed(`${this.ipCommand} route get: ${(err as Error).message}`);
        }
      }
      const failure = parseIpRouteError(res.stderr);
      if (failure.kind === 'refused') throw new RouteRefused(failure.errno);
      if (failure.kind === 'unknown-device' && target.zone !== null) throw new UnknownZone(target.zone);
      throw new LookupFailed(
        `${this.ipCommand} route get failed: ${failure.kind === 'other' && failure.message ? failure.message : res.shortMessage}`,
      );
    });
  }
}
