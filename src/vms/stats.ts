// VmStats from per-channel guest state, pure. The registry keeps the result cached per VM and
// calls these only when something changed; statusTime/elapsedTime are stamped per call.
import { isIP } from 'node:net';
import {
  CHANNEL_NAMES,
  type ChannelName,
  type GuestAgentStatus,
  type GuestNetworkDeviceInfo,
  type VmNetworkStats,
  type VmStats,
  type VmStatus,
} from '../wire.js';

/** What one channel has told us, already sanitised. null = never reported. */
export interface ChannelGuestState {
  netIfaces: GuestNetworkDeviceInfo[] | null;
  guestName: string | null;
  guestFQDN: string | null;
  guestOs: string | null;
  agentStatus: GuestAgentStatus;
}

/** VmStats without the per-call time stamps. */
export type VmStatsBase = Omit<VmStats, 'statusTime' | 'elapsedTime'>;

/** The fields whose change is announced (SPEC section 3, Events). */
const WATCHED_FIELDS = ['status', 'netIfaces', 'guestIPs', 'guestName', 'guestFQDN', 'guestAgentStatus'] as const;
export type WatchedField = (typeof WATCHED_FIELDS)[number];

export function emptyChannelState(): ChannelGuestState {
  return { netIfaces: null, guestName: null, guestFQDN: null, guestOs: null, agentStatus: 'unknown' };
}

/** qemu-ga first, then the oVirt channels: the first channel that reported a field wins it. */
const CHANNEL_PRIORITY: readonly ChannelName[] = [
  'org.qemu.guest_agent.0',
  ...CHANNEL_NAMES.filter((c) => c !== 'org.qemu.guest_agent.0'),
];

/** IPv4 addresses of netIfaces, in order, loopback (127/8) left out, space-separated. */
function guestIPsOf(netIfaces: readonly GuestNetworkDeviceInfo[] | null): string {
  if (!netIfaces) return '';
  const ips: string[] = [];
  for (const iface of netIfaces) for (const a of iface.inet) if (isIP(a) === 4 && !a.startsWith('127.')) ips.push(a);
  return ips.join(' ');
}

/** Any agent answering makes the VM responsive; any heard-from agent gone quiet, unresponsive. */
function mergeAgentStatus(states: Iterable<ChannelGuestState>): GuestAgentStatus {
  let result: GuestAgentStatus = 'unknown';
  for (const s of states) {
    if (s.agentStatus === 'responsive') return 'responsive';
    if (s.agentStatus === 'unresponsive') result = 'unresponsive';
  }
  return result;
}

/** What a VM reports before any agent has: empty, never null (the engine's casts throw on null). */
const NO_INTERFACES = Object.freeze([]) as readonly GuestNetworkDeviceInfo[] as GuestNetworkDeviceInfo[];
/** No host-side vNICs known (shared, never mutated). */
export const NO_NETWORK: Record<string, VmNetworkStats> = Object.freeze({});

export function buildStats(
  vmId: string,
  status: VmStatus,
  channels: ReadonlyMap<ChannelName, ChannelGuestState>,
  network: Record<string, VmNetworkStats> = NO_NETWORK,
): VmStatsBase {
  const ordered = CHANNEL_PRIORITY.map((c) => channels.get(c)).filter((s): s is ChannelGuestState => s !== undefined);
  const pick = <K extends 'netIfaces' | 'guestName' | 'guestFQDN' | 'guestOs'>(k: K): ChannelGuestState[K] | null => {
    for (const s of ordered) if (s[k] !== null) return s[k];
    return null;
  };
  const netIfaces = pick('netIfaces') ?? NO_INTERFACES;
  return {
    vmId,
    status,
    netIfaces,
    network,
    guestIPs: guestIPsOf(netIfaces),
    guestName: pick('guestName') ?? '',
    guestFQDN: pick('guestFQDN') ?? '',
    guestOs: pick('guestOs') ?? '',
    guestAgentStatus: mergeAgentStatus(ordered),
  };
}

/** The watched fields that differ between two builds (deep for netIfaces). */
export function changedFields(before: VmStatsBase | null, after: VmStatsBase): WatchedField[] {
  if (!before) return ['status'];
  return WATCHED_FIELDS.filter((f) =>
    f === 'netIfaces' ? !sameInterfaces(before.netIfaces, after.netIfaces) : before[f] !== after[f],
  );
}

export function sameInterfaces(
  a: readonly GuestNetworkDeviceInfo[] | null,
  b: readonly GuestNetworkDeviceInfo[] | null,
): boolean {
  if (a === b) return true;
  if (a === null || b === null || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x.name !== y.name || x.hw !== y.hw || !sameStrings(x.inet, y.inet) || !sameStrings(x.inet6, y.inet6))
      return false;
  }
  return true;
}

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** Monotonic milliseconds (CLOCK_MONOTONIC, as VDSM's monotonic_time). */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint() / 1_000_000n);
}

/** 2**31 - 1: engines before 4.4 reject event times not above INT_MAX. */
const EVENT_CLOCK_BASE = 2147483647;

/**
 * VDSM's event clock (vdsm/common/time.py event_time): INT_MAX + monotonic ms, an integer. Used
 * for statusTime and notify_time alike, so the engine can order polls against events.
 */
export function eventTime(monoMs: number = monotonicMs()): number {
  return EVENT_CLOCK_BASE + monoMs;
}

export function stampStats(base: VmStatsBase, firstSeenMs: number, nowMs: number): VmStats {
  return {
    vmId: base.vmId,
    status: base.status,
    statusTime: String(eventTime(nowMs)),
    elapsedTime: String(Math.max(0, Math.floor((nowMs - firstSeenMs) / 1000))),
    netIfaces: base.netIfaces,
    network: base.network,
    guestIPs: base.guestIPs,
    guestName: base.guestName,
    guestFQDN: base.guestFQDN,
    guestOs: base.guestOs,
    guestAgentStatus: base.guestAgentStatus,
    ...exitOf(base),
  };
}

function exitOf(base: VmStatsBase): Partial<VmStats> {
  return base.exitCode === undefined
    ? {}
    : { exitCode: base.exitCode, exitMessage: base.exitMessage, exitReason: base.exitReason };
}
