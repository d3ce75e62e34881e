// The route lookup facade: netlink first, `ip route get` when netlink cannot answer. A kernel
// routing answer (no route, unknown zone) is final on either path; only failures of the mechanism
// itself (module not loadable, socket error, timeout) move a lookup to the fallback.
import type { Logger } from 'pino';
import type { Route } from '../wire.js';
import type { RouteTarget } from './ipLiteral.js';
import { IpRoute, type IpRouteOptions } from './ipRoute.js';
import { NetlinkRoute, type NetlinkRouteOptions } from './netlinkRoute.js';
import { RouteRefused, UnknownZone } from './routeAnswer.js';
import { metrics, type RouteLookupOutcome } from '../metrics/metrics.js';

export type RouteLookupMode = 'netlink' | 'ip';

export interface RouteLookupOptions {
  netlink?: NetlinkRouteOptions;
  ip?: IpRouteOptions;
}

export class RouteLookup {
  /** Opened on first use (ready() or a lookup): loading the native module costs ~80 ms of start-up. */
  private netlink: Promise<NetlinkRoute | null> | null = null;
  private readonly ip: IpRoute;
  /** True while lookups go to `ip` because netlink failed; the switch is logged once each way. */
  private degraded = false;
  private closed = false;

  constructor(
    readonly mode: RouteLookupMode,
    private readonly log: Logger,
    private readonly opts: RouteLookupOptions = {},
  ) {
    this.ip = new IpRoute(opts.ip);
    if (mode === 'ip') {
      log.info('route lookups use `ip route get` (route-lookup ip)');
      this.netlink = Promise.resolve(null);
    }
  }

  private openNetlink(): Promise<NetlinkRoute | null> {
    if (this.closed && !this.netlink) return Promise.resolve(null);
    this.netlink ??= NetlinkRoute.open(this.opts.netlink, (err) =>
      this.switchToIp(`netlink socket failed and was replaced: ${err.message}`),
    ).catch((err: unknown) => {
      this.switchToIp(err instanceof Error ? err.message : String(err));
      return null;
    });
    return this.netlink;
  }

  /** Opens the netlink side (the daemon calls it once serving, so the first lookup finds it open); resolves once open or known unavailable. */
  async ready(): Promise<void> {
    await this.openNetlink();
  }

  /**
   * Throws RouteRefused or UnknownZone (a kernel answer: final, from either path), or LookupFailed
   * from `ip` when it fails too; netlink's own failures never reach the caller, they switch to `ip`.
   */
  async lookup(target: RouteTarget): Promise<Route> {
    const nl = await this.openNetlink();
    if (nl && !this.closed) {
      try {
        const fields = await counted('netlink', nl.lookup(target));
        if (this.degraded) {
          this.degraded = false;
          this.log.info('route lookups use netlink again');
        }
        return { ...fields, via: 'netlink' };
      } catch (err) {
        if (err instanceof RouteRefused || err instanceof UnknownZone) throw err;
        this.switchToIp((err as Error).message);
      }
    }
    return { ...(await counted('ip', this.ip.lookup(target))), via: 'ip' };
  }

  async close(): Promise<void> {
    this.closed = true;
    (await this.netlink)?.close();
  }

  private switchToIp(reason: string): void {
    if (this.degraded) return;
    this.degraded = true;
    this.log.warn({ reason }, 'route lookups fall back to `ip route get`');
  }
}

/** Counts a lookup on `path` by how it ended (metrics); returns the same answer. */
async function counted<T>(path: 'netlink' | 'ip', answer: Promise<T>): Promise<T> {
  try {
    const value = await answer;
    metrics.routeLookup(path, 'ok');
    return value;
  } catch (err) {
    let outcome: RouteLookupOutcome = 'failed';
    if (err instanceof RouteRefused) outcome = err.isNoRoute ? 'no_route' : 'refused';
    else if (err instanceof UnknownZone) outcome = 'unknown_zone';
    metrics.routeLookup(path, outcome);
    throw err;
  }
}
