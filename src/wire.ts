// Every shape that crosses the wire, in one place: what clients receive (SPEC section 3), the
// error codes, the VM id format and the guest channel names (SPEC section 4, REFERENCE.md).

// ---- JSON-RPC results -------------------------------------------------------------------

/** One guest interface, exactly VDSM's `netIfaces` element. */
export interface GuestNetworkDeviceInfo {
  name: string;
  hw: string;
  inet: string[];
  inet6: string[];
}

export type GuestAgentStatus = 'responsive' | 'unresponsive' | 'unknown';

/** VDSM's status words (vmstatus.py) this daemon reports. */
export type VmStatus = 'Up' | 'Down' | 'Paused' | 'Powering down';

/**
 * One host-side vNIC in VDSM's `network` map (SPEC section 3): counters are strings, as VDSM
 * sends them; `sampleTime` monotonic seconds; `model`, `bridge`, `alias` are extensions.
 */
export interface VmNetworkStats {
  name: string;
  macAddr: string;
  speed: string;
  state: string;
  rx: string;
  tx: string;
  rxErrors: string;
  rxDropped: string;
  txErrors: string;
  txDropped: string;
  /** Monotonic seconds; serialised with a fraction (the engine needs a Double). */
  sampleTime: number;
  model: string;
  bridge: string;
  alias: string;
}

/** Why a VM stopped, as VDSM reports it with `Down` (exitCode 0 or 1 only: the engine takes no other). */
export interface VmExit {
  exitCode: 0 | 1;
  exitMessage: string;
  exitReason: number;
}

/**
 * VDSM's RunningVmStats, the guest-related subset; numbers that VDSM sends as strings stay strings.
 * The engine casts these without checks (docs/engine-compatibility.md): lists are never null.
 */
export interface VmStats {
  vmId: string;
  status: VmStatus;
  /** VDSM's event clock (2147483647 + monotonic ms), as a string. */
  statusTime: string;
  elapsedTime: string;
  /** `[]` until an agent reports, never null. */
  netIfaces: GuestNetworkDeviceInfo[];
  /** Host-side vNICs keyed by host device; `{}` when unknown. */
  network: Record<string, VmNetworkStats>;
  guestIPs: string;
  guestName: string;
  guestFQDN: string;
  guestOs: string;
  guestAgentStatus: GuestAgentStatus;
  /** With `Down` only, when libvirt said why. */
  exitCode?: VmExit['exitCode'];
  exitMessage?: string;
  exitReason?: number;
}

/**
 * `Host.getRoute` result (SPEC section 3). `table` is the kernel's table number (254 main, 255
 * local, 0 when the kernel names none); `type` the RTN_* name as `ip` prints it ("unicast", "local").
 */
export interface Route {
  device: string;
  gateway?: string;
  source?: string;
  table: number;
  type: string;
  via: 'netlink' | 'ip';
}

// ---- Error codes (SPEC section 3) -------------------------------------------------------

export const ErrorCode = {
  noSuchVm: 1,
  noRoute: 1201,
  parseError: -32700,
  invalidRequest: -32600,
  methodNotFound: -32601,
  invalidParams: -32602,
  internalError: -32603,
  /** A configured limit (requests in flight) was hit; the JSON-RPC 2.0 server-error range. */
  serverBusy: -32000,
} as const;

export interface RpcErrorObject {
  code: number;
  message: string;
  data?: unknown;
}

// ---- VM ids ------------------------------------------------------------------------------

/** A VM id as VDSM and libvirt write it, a UUID (either case): the pattern's source, to embed. */
export const UUID_PATTERN = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';
const UUID_RE = new RegExp(`^${UUID_PATTERN}$`, 'i');

export function isUuid(text: string): boolean {
  return UUID_RE.test(text);
}

// ---- Guest agents (channels) -----------------------------------------------------------

export const CHANNEL_NAMES = ['ovirt-guest-agent.0', 'com.redhat.rhevm.vdsm', 'org.qemu.guest_agent.0'] as const;
export type ChannelName = (typeof CHANNEL_NAMES)[number];
export type ChannelProtocol = 'ovirt' | 'qemu';

export function channelProtocol(channel: ChannelName): ChannelProtocol {
  return channel === 'org.qemu.guest_agent.0' ? 'qemu' : 'ovirt';
}
