// The known VMs and what their guest agents said, sanitised. A VM is known while libvirt has it
// active (its hypervisor view: status, start, vNICs) or, for a VM libvirt does not know, while at
// least one of its channel sockets exists. Each update rebuilds that VM's cached stats once, compares the
// watched fields once, and tells listeners only when something really changed; a report that
// repeats what is known (heartbeat, same interfaces in the same order) changes nothing.
import type { Logger } from 'pino';
import {
  channelProtocol,
  type ChannelName,
  type VmExit,
  type VmNetworkStats,
  type VmStats,
  type VmStatus,
} from '../wire.js';
import type { GuestReport } from '../guest/sanitize.js';
import {
  buildStats,
  changedFields,
  emptyChannelState,
  monotonicMs,
  NO_NETWORK,
  sameInterfaces,
  stampStats,
  type ChannelGuestState,
  type VmStatsBase,
  type WatchedField,
} from './stats.js';
import { statsArrayJson, warmStatsJson } from './statsJson.js';

export interface VmChange {
  vmId: string;
  stats: VmStats;
  /** Among status, netIfaces, guestIPs, guestName, guestFQDN, guestAgentStatus. */
  changed: string[];
}

interface VmEntry {
  vmId: string;
  firstSeenMs: number;
  channels: Map<ChannelName, ChannelGuestState>;
  base: VmStatsBase;
  /** What libvirt says of the VM, or null for a VM known by its channel sockets only. */
  hv: HypervisorView | null;
}

/** A VM as libvirt sees it. */
export interface HypervisorView {
  status: VmStatus;
  /** When the domain started, on the registry's clock (elapsedTime counts from it). */
  startMs: number;
  network: Record<string, VmNetworkStats>;
}

export interface VmRegistryOptions {
  clock?: () => number;
  log?: Logger;
}

export class VmRegistry {
  private readonly vms = new Map<string, VmEntry>();
  /** Channels of VMs libvirt stopped whose sockets are still there: not listed again for them. */
  private readonly parked = new Map<string, Map<ChannelName, ChannelGuestState>>();
  private readonly listeners = new Set<(change: VmChange) => void>();
  /** When stats were last asked for (clock ms); never: -Infinity. */
  private statsAskedAt = -Infinity;
  private readonly clock: () => number;
  private readonly log: Logger | undefined;

  constructor(opts: VmRegistryOptions = {}) {
    this.clock = opts.clock ?? monotonicMs;
    this.log = opts.log;
  }

  /** The registry's clock (monotonic ms): what firstSeenMs and a hypervisor view's startMs are on. */
  now(): number {
    return this.clock();
  }

  get size(): number {
    return this.vms.size;
  }

  all(): VmStats[] {
    const now = this.clock();
    return [...this.vms.values()].map((e) => stampStats(e.base, e.firstSeenMs, now));
  }

  get(vmId: string): VmStats | undefined {
    const e = this.vms.get(vmId.toLowerCase());
    return e ? stampStats(e.base, e.firstSeenMs, this.clock()) : undefined;
  }

  /** Host.getAllVmStats' result as JSON bytes between `before` and `after`, each VM serialised once per change (statsJson.ts). */
  allJson(before?: Buffer, after?: Buffer, alloc?: (size: number) => Buffer): Buffer {
    this.statsAskedAt = this.clock();
    return statsArrayJson(this.vms.values(), this.statsAskedAt, before, after, alloc);
  }

  /** VM.getStats' result (a one-element array) as JSON bytes, or undefined for an unknown VM. */
  getJson(vmId: string, before?: Buffer, after?: Buffer): Buffer | undefined {
    const e = this.vms.get(vmId.toLowerCase());
    if (!e) return undefined;
    this.statsAskedAt = this.clock();
    return statsArrayJson([e], this.statsAskedAt, before, after);
  }

  /** Whether anyone asked for stats in the last `ms` (libvirt's samples are serialised ahead only then). */
  statsAskedWithin(ms: number): boolean {
    return this.clock() - this.statsAskedAt <= ms;
  }

  has(vmId: string): boolean {
    return this.vms.has(vmId.toLowerCase());
  }

  onChange(listener: (change: VmChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** A channel socket appeared: the VM is known (Up) from now on. */
  channelAdded(vmId: string, channel: ChannelName): void {
    const id = keyOf(vmId);
    const parked = this.parked.get(id);
    if (parked) {
      parked.set(channel, emptyChannelState());
      return;
    }
    let e = this.vms.get(id);
    if (!e) {
      const channels = new Map([[channel, emptyChannelState()]]);
      e = { vmId: id, firstSeenMs: this.clock(), channels, base: buildStats(id, 'Up', channels), hv: null };
      this.vms.set(id, e);
      this.emit(e, ['status']);
      return;
    }
    if (e.channels.has(channel)) return;
    e.channels.set(channel, emptyChannelState());
    this.rebuild(e);
  }

  /** A channel socket went away: its data goes with it; the last one takes the VM (Down). */
  channelRemoved(vmId: string, channel: ChannelName): void {
    const id = vmId.toLowerCase();
    const parked = this.parked.get(id);
    if (parked) {
      parked.delete(channel);
      if (parked.size === 0) this.parked.delete(id);
      return;
    }
    const e = this.vms.get(id);
    if (!e || !e.channels.delete(channel)) return;
    // libvirt decides when its VMs stop: a socket going away only takes its data.
    if (e.channels.size > 0 || e.hv) {
      this.rebuild(e);
      return;
    }
    this.vms.delete(id);
    e.base = { ...e.base, status: 'Down' };
    this.emit(e, ['status']);
  }

  /** Sanitised data from a channel; hearing it also makes that agent responsive. */
  report(vmId: string, channel: ChannelName, report: GuestReport): void {
    const e = this.entryOf(vmId);
    const s = e?.channels.get(channel);
    if (!s) return;
    let touched = s.agentStatus !== 'responsive';
    s.agentStatus = 'responsive';
    if (report.netIfaces !== undefined && !sameInterfaces(s.netIfaces, report.netIfaces)) {
      s.netIfaces = freezeInterfaces(report.netIfaces);
      touched = true;
    }
    for (const k of TEXT_FIELDS) {
      const v = report[k];
      if (v !== undefined && v !== s[k]) {
        s[k] = v;
        touched = true;
      }
    }
    if (touched) this.rebuild(e!);
  }

  /**
   * An agent answered (responsive) or stopped answering (unresponsive; its data is kept).
   * Responsive is also what a report without data (an oVirt heartbeat) comes to.
   */
  setAgentStatus(vmId: string, channel: ChannelName, status: 'responsive' | 'unresponsive'): void {
    const e = this.entryOf(vmId);
    const s = e?.channels.get(channel);
    if (!s || s.agentStatus === status) return;
    // An oVirt agent never heard from stays "unknown": silence from one that never spoke is not
    // news. qemu-ga is asked, so a command it failed to answer is "qga not answering" (SPEC 3).
    if (status === 'unresponsive' && s.agentStatus === 'unknown' && channelProtocol(channel) === 'ovirt') return;
    s.agentStatus = status;
    this.rebuild(e!);
  }

  /** The VMs libvirt has told of (for its inventory's reconciliation after a reconnect). */
  hypervisorVmIds(): string[] {
    return [...this.vms.values()].filter((e) => e.hv).map((e) => e.vmId);
  }

  /** libvirt has this VM active: listed, with libvirt's status, start and vNICs. */
  hypervisorSet(vmId: string, view: HypervisorView): void {
    const id = keyOf(vmId);
    const e = this.vms.get(id);
    if (!e) {
      // Sockets left from a previous run of the domain: kept, but what they said is not this run's.
      const channels = new Map<ChannelName, ChannelGuestState>();
      for (const ch of this.parked.get(id)?.keys() ?? []) channels.set(ch, emptyChannelState());
      this.parked.delete(id);
      const fresh: VmEntry = {
        vmId: id,
        firstSeenMs: view.startMs,
        channels,
        base: buildStats(id, view.status, channels, view.network),
        hv: view,
      };
      this.vms.set(id, fresh);
      this.emit(fresh, ['status']);
      return;
    }
    e.hv = view;
    e.firstSeenMs = view.startMs;
    this.rebuild(e);
  }

  /** New host-side vNIC data for a libvirt VM (not announced: VDSM sends it with the stats only). */
  hypervisorNetwork(vmId: string, network: Record<string, VmNetworkStats>): void {
    const e = this.vms.get(vmId.toLowerCase());
    if (!e?.hv) return;
    // Nothing else changed and `network` is not announced: copies with the new map (a full
    // rebuild per VM per sample was most of a sample's landing at 1,000 VMs; copy-then-set is
    // ~3x cheaper in V8 than `{ ...x, network }`, which redefines the copied member).
    const hv = { ...e.hv };
    hv.network = network;
    e.hv = hv;
    const base = { ...e.base };
    base.network = network;
    e.base = base;
  }

  /** Brings Host.getAllVmStats' cached bytes up to date now, off any call (after a counter sample). */
  warmJson(): void {
    warmStatsJson(this.vms.values(), this.clock());
  }

  /** libvirt stopped the VM: reported once as Down with why, then gone from the list. */
  hypervisorStopped(vmId: string, exit: VmExit): void {
    const id = vmId.toLowerCase();
    const e = this.vms.get(id);
    if (!e?.hv) return;
    this.vms.delete(id);
    if (e.channels.size > 0) this.parked.set(id, e.channels);
    e.base = { ...e.base, status: 'Down', ...exit };
    this.emit(e, ['status']);
  }

  /**
   * Ids are kept lower-case and callers mostly have them so already: one lookup, and lower-casing
   * (a new string to hash on every agent message) only for an id that did not match as it is.
   */
  private entryOf(vmId: string): VmEntry | undefined {
    return this.vms.get(vmId) ?? this.vms.get(vmId.toLowerCase());
  }

  private rebuild(e: VmEntry): void {
    const next = buildStats(e.vmId, e.hv?.status ?? 'Up', e.channels, e.hv?.network ?? NO_NETWORK);
    const changed = changedFields(e.base, next);
    // guestOs is not announced but must still be served fresh.
    e.base = next;
    if (changed.length) this.emit(e, changed);
  }

  private emit(e: VmEntry, changed: WatchedField[]): void {
    if (this.listeners.size === 0) return;
    const change: VmChange = { vmId: e.vmId, stats: stampStats(e.base, e.firstSeenMs, this.clock()), changed };
    for (const l of [...this.listeners]) {
      try {
        l(change);
      } catch (err) {
        this.log?.error({ err, vmId: e.vmId }, 'VM change listener failed');
      }
    }
  }
}

/**
 * The key a VM is kept under: its id in lower case, as the very string given when that is already
 * lower-case, so that lookups with the string a channel was found under match it by identity
 * rather than by comparing 36 characters in a cold hash table on every agent message.
 */
function keyOf(vmId: string): string {
  const id = vmId.toLowerCase();
  return id === vmId ? vmId : id;
}

/** The text fields a report may carry (one list, not a literal per report). */
const TEXT_FIELDS = ['guestName', 'guestFQDN', 'guestOs'] as const;

function freezeInterfaces(list: GuestReport['netIfaces'] & object): NonNullable<GuestReport['netIfaces']> {
  for (const i of list) {
    Object.freeze(i.inet);
    Object.freeze(i.inet6);
    Object.freeze(i);
  }
  return Object.freeze(list);
}
