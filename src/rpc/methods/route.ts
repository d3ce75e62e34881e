// Host.getRoute (alias getRoute): which host device the kernel routes an address through
// (SPEC sections 3 and 5). The address is validated here, before either lookup path sees it.
import type { Logger } from 'pino';
import { parseRouteTarget, type RouteTarget } from '../../route/ipLiteral.js';
import { RouteRefused, UnknownZone } from '../../route/routeAnswer.js';
import type { RouteLookup } from '../../route/routeLookup.js';
import { ErrorCode } from '../../wire.js';
import { RpcError, invalidParams } from '../errors.js';
import { describe, fail, type Check } from '../params.js';
import type { MethodDef } from '../registry.js';

export const routeTarget: Check<RouteTarget> = (value, name) => {
  if (typeof value !== 'string') return fail(name, `must be an IPv4 or IPv6 address string, got ${describe(value)}`);
  const parsed = parseRouteTarget(value);
  return parsed.ok ? parsed.target : fail(name, parsed.reason);
};

const NO_ROUTE_WHY: Readonly<Record<string, string>> = {
  ENETUNREACH: 'network is unreachable',
  EHOSTUNREACH: 'host is unreachable (an unreachable route)',
  EINVAL: 'traffic is discarded (a blackhole route)',
  EACCES: 'administratively prohibited (a prohibit route)',
};

export function routeMethods(lookup: RouteLookup, log: Logger): MethodDef[] {
  return [
    {
      name: 'Host.getRoute',
      aliases: ['getRoute'],
      params: [{ name: 'ip', required: true, check: routeTarget }],
      handler: async (p) => {
        const target = p.ip as RouteTarget;
        const shown = target.zone === null ? target.text : `${target.text}%${target.zone}`;
        try {
          return await lookup.lookup(target);
        } catch (err) {
          if (err instanceof UnknownZone)
            throw invalidParams(`'ip' has the zone %${err.zone}, which names no interface on this host`);
          if (err instanceof RouteRefused && err.isNoRoute) {
            throw new RpcError(ErrorCode.noRoute, `No route to ${shown}: ${NO_ROUTE_WHY[err.errno]}`, {
              errno: err.errno,
            });
          }
          if (err instanceof RouteRefused) {
            throw new RpcError(
              ErrorCode.internalError,
              `Route lookup for ${shown} refused by the kernel: ${err.errno}`,
              { errno: err.errno },
            );
          }
          log.error({ err, ip: shown }, 'route lookup failed on every path');
          throw new RpcError(ErrorCode.internalError, 'Route lookup failed: neither netlink nor ip could answer');
        }
      },
    },
  ];
}
