// What both lookup paths share: the kernel's route types by number, the errno names that mean
// "no route", and the error classes the facade and the RPC method tell apart. Keeping these in one
// place is what makes the netlink and `ip` answers identical for the same table.

/** RTN_* route types, by number (include/uapi/linux/rtnetlink.h); names as `ip` prints them. */
const ROUTE_TYPE_NAMES = [
  'unspec',
  'unicast',
  'local',
  'broadcast',
  'anycast',
  'multicast',
  'blackhole',
  'unreachable',
  'prohibit',
  'throw',
  'nat',
  'xresolve',
] as const;

export function routeTypeName(type: number | string | undefined): string {
  if (typeof type === 'string') return type.toLowerCase();
  if (type === undefined) return 'unspec';
  return ROUTE_TYPE_NAMES[type] ?? String(type);
}

/** Kernel answers that mean there is no usable route (SPEC section 3, error 1201). */
const NO_ROUTE_ERRNOS = ['ENETUNREACH', 'EHOSTUNREACH', 'EINVAL', 'EACCES'] as const;

/** The kernel answered the lookup with an error: a routing answer, never a reason to fall back. */
export class RouteRefused extends Error {
  override name = 'RouteRefused';
  constructor(readonly errno: string) {
    super(`kernel answered ${errno}`);
  }
  get isNoRoute(): boolean {
    return (NO_ROUTE_ERRNOS as readonly string[]).includes(this.errno);
  }
}

/** The zone of `fe80::1%NAME` names no interface here. */
export class UnknownZone extends Error {
  override name = 'UnknownZone';
  constructor(readonly zone: string) {
    super(`no interface named ${JSON.stringify(zone)}`);
  }
}

/** The lookup mechanism itself failed (socket, timeout, missing tool): not an answer about routes. */
export class LookupFailed extends Error {
  override name = 'LookupFailed';
}

/** strerror() texts `ip` prints after "RTNETLINK answers: " (LC_ALL=C), mapped back to errno names. */
export const ERRNO_BY_MESSAGE: Readonly<Record<string, string>> = {
  'Network is unreachable': 'ENETUNREACH',
  'No route to host': 'EHOSTUNREACH',
  'Invalid argument': 'EINVAL',
  'Permission denied': 'EACCES',
  'No such device': 'ENODEV',
  'Operation not permitted': 'EPERM',
  'Network is down': 'ENETDOWN',
  'Address family not supported by protocol': 'EAFNOSUPPORT',
};

export interface RouteFieldValues {
  device: string;
  gateway?: string | undefined;
  source?: string | undefined;
  table: number;
  type: string;
}

/** One shape and key order for both paths, so their answers serialise identically. */
export function routeFields(v: RouteFieldValues): RouteFieldValues & { gateway?: string; source?: string } {
  return {
    device: v.device,
    ...(v.gateway ? { gateway: v.gateway } : {}),
    ...(v.source ? { source: v.source } : {}),
    table: v.table,
    type: v.type,
  };
}
