// libvirt's domain states and lifecycle events in VDSM's words, pure (REFERENCE.md "VDSM's VM
// status, clock and exit reasons"): the status of a domain, what each lifecycle event changes,
// the exit fields of a stopped VM, and the host-side vNIC stats in VDSM's vmstats shape.
import type { VmExit, VmNetworkStats, VmStatus } from '../wire.js';
import type { DomainNic } from './domainXml.js';
import { DomainState, LifecycleEvent, ShutdownDetail, StoppedDetail, type InterfaceCounters } from './wire.js';

/** VDSM's status word for a libvirt domain state (null: not running any more). */
export function statusOfState(state: number): VmStatus | null {
  switch (state) {
    case DomainState.paused:
    case DomainState.pmsuspended:
      return 'Paused';
    case DomainState.shutdown:
      return 'Powering down';
    case DomainState.shutoff:
    case DomainState.crashed:
      return null;
    default:
      // running, blocked (on a resource, still running), nostate (libvirt does not know yet)
      return 'Up';
  }
}

/** vmexitreason.py codes used here. */
const ExitReason = {
  succeeded: 0,
  error: 1,
  lostQemuConnection: 2,
  migrationSucceeded: 4,
  saveStateSucceeded: 5,
  adminShutdown: 6,
  userShutdown: 7,
  destroyedOnHost: 11,
} as const;

const EXIT_MESSAGES: Record<number, string> = {
  [ExitReason.succeeded]: 'VM terminated succesfully',
  [ExitReason.error]: 'VM terminated with error',
  [ExitReason.lostQemuConnection]: 'Lost connection with qemu process',
  [ExitReason.migrationSucceeded]: 'Migration succeeded',
  [ExitReason.saveStateSucceeded]: 'SaveState succeeded',
  [ExitReason.adminShutdown]: 'Admin shut down from the engine',
  [ExitReason.userShutdown]: 'User shut down from within the guest',
  [ExitReason.destroyedOnHost]: 'VM has been terminated on the host',
};

function exit(code: 0 | 1, reason: number): VmExit {
  return { exitCode: code, exitMessage: EXIT_MESSAGES[reason] ?? EXIT_MESSAGES[code] ?? '', exitReason: reason };
}

/** The exit fields for a STOPPED event's detail (the engine takes exitCode 0 or 1 only). */
export function exitOfStopped(detail: number): VmExit {
  switch (detail) {
    case StoppedDetail.shutdown:
      return exit(0, ExitReason.userShutdown);
    case StoppedDetail.destroyed:
      return exit(0, ExitReason.adminShutdown);
    case StoppedDetail.crashed:
    case StoppedDetail.failed:
      return exit(1, ExitReason.lostQemuConnection);
    case StoppedDetail.migrated:
      return exit(0, ExitReason.migrationSucceeded);
    case StoppedDetail.saved:
      return exit(0, ExitReason.saveStateSucceeded);
    default:
      return exit(0, ExitReason.destroyedOnHost);
  }
}

/** A domain libvirt no longer lists after it was away (it stopped while libvirtd was down). */
export const EXIT_GONE_WHILE_AWAY: VmExit = exit(0, ExitReason.destroyedOnHost);

export type LifecycleChange =
  { kind: 'status'; status: VmStatus } | { kind: 'started' } | { kind: 'stopped'; exit: VmExit } | { kind: 'none' };

/** What one lifecycle event means for the VM (DEFINED/UNDEFINED/CRASHED change no status; VDSM's mapping). */
export function lifecycleChange(event: number, detail: number): LifecycleChange {
  switch (event) {
    case LifecycleEvent.started:
      return { kind: 'started' };
    case LifecycleEvent.suspended:
    case LifecycleEvent.pmsuspended:
      return { kind: 'status', status: 'Paused' };
    case LifecycleEvent.resumed:
      return { kind: 'status', status: 'Up' };
    case LifecycleEvent.shutdown:
      // HOST: QEMU was told to quit or killed (virsh destroy), not a guest shutting down.
      return detail === ShutdownDetail.host ? { kind: 'none' } : { kind: 'status', status: 'Powering down' };
    case LifecycleEvent.stopped:
      return { kind: 'stopped', exit: exitOfStopped(detail) };
    default:
      return { kind: 'none' };
  }
}

/** VDSM's link speed by NIC model. */
function nicSpeed(model: string): string {
  return model === 'virtio' || model === 'e1000' || model === 'e1000e' ? '1000' : '100';
}

/** A counter as VDSM sends it: decimal text, "0" where the driver does not know (-1). */
function counter(v: string | undefined): string {
  return v === undefined || v.startsWith('-') ? '0' : v;
}

/**
 * The `network` map: one entry per vNIC that has a host device, counters from `counters` (by host
 * device) or "0" until the first sample. A second vNIC with the same host device is left out.
 */
export function networkStats(
  nics: readonly DomainNic[],
  counters: ReadonlyMap<string, Partial<InterfaceCounters>>,
  sampleTimeSec: number,
): Record<string, VmNetworkStats> {
  const out: Record<string, VmNetworkStats> = {};
  for (const n of nics) {
    if (!n.device || Object.prototype.hasOwnProperty.call(out, n.device)) continue;
    const c = counters.get(n.device) ?? {};
    out[n.device] = {
      name: n.device,
      macAddr: n.mac,
      speed: nicSpeed(n.model),
      state: 'unknown',
      rx: counter(c.rxBytes),
      tx: counter(c.txBytes),
      rxErrors: counter(c.rxErrs),
      rxDropped: counter(c.rxDrop),
      txErrors: counter(c.txErrs),
      txDropped: counter(c.txDrop),
      sampleTime: sampleTimeSec,
      model: n.model,
      bridge: n.bridge,
      alias: n.alias,
    };
  }
  return out;
}

/** Counters by host device from one bulk-stats record's `net.N.*` parameters. */
export function countersFromBulk(
  params: ReadonlyMap<string, number | string | boolean>,
): Map<string, Partial<InterfaceCounters>> {
  const out = new Map<string, Partial<InterfaceCounters>>();
  const n = Number(params.get('net.count') ?? 0);
  const text = (v: number | string | boolean | undefined): string | undefined =>
    v === undefined || typeof v === 'boolean' ? undefined : String(v);
  for (let i = 0; i < Math.min(n, 1024); i++) {
    const key = netKeys(i);
    const name = params.get(key.name);
    if (typeof name !== 'string' || !name) continue;
    out.set(name, {
      rxBytes: text(params.get(key.rxBytes)),
      rxErrs: text(params.get(key.rxErrs)),
      rxDrop: text(params.get(key.rxDrop)),
      txBytes: text(params.get(key.txBytes)),
      txErrs: text(params.get(key.txErrs)),
      txDrop: text(params.get(key.txDrop)),
    });
  }
  return out;
}

/** The `net.N.*` parameter names for vNIC N, made once (a sample looks them up for every domain). */
const NET_KEYS: ReturnType<typeof makeNetKeys>[] = [];

function netKeys(i: number): ReturnType<typeof makeNetKeys> {
  return (NET_KEYS[i] ??= makeNetKeys(i));
}

function makeNetKeys(i: number) {
  const k = (f: string): string => `net.${i}.${f}`;
  return {
    name: k('name'),
    rxBytes: k('rx.bytes'),
    rxErrs: k('rx.errs'),
    rxDrop: k('rx.drop'),
    txBytes: k('tx.bytes'),
    txErrs: k('tx.errs'),
    txDrop: k('tx.drop'),
  };
}

/** Whether two network maps say the same but for the sample time (no rebuild, no new bytes). */
export function sameNetwork(a: Record<string, VmNetworkStats>, b: Record<string, VmNetworkStats>): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) {
    const x = a[k];
    const y = b[k];
    if (!x || !y) return false;
    for (const f of [
      'name',
      'macAddr',
      'speed',
      'rx',
      'tx',
      'rxErrors',
      'rxDropped',
      'txErrors',
      'txDropped',
      'model',
      'bridge',
      'alias',
    ] as const) {
      if (x[f] !== y[f]) return false;
    }
  }
  return true;
}
