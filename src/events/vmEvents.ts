// VM registry changes -> `|virt|VM_status|<vmId>` events in VDSM's shape. The registry already
// decided that something changed (once per update, on sanitised values); this only shapes the
// notification, and the hub serialises it once for every subscriber.
import type { VmStats } from '../wire.js';
import { eventTime } from '../vms/stats.js';
import type { EventHub } from './hub.js';

export interface VmChangeLike {
  vmId: string;
  stats: VmStats;
}

const VM_STATUS_PREFIX = '|virt|VM_status|';

function vmStatusEvent(change: VmChangeLike): { method: string; params: Record<string, unknown> } {
  const { vmId, stats } = change;
  const body =
    stats.status === 'Down'
      ? stats.exitCode === undefined
        ? { vmId, status: 'Down', statusTime: stats.statusTime }
        : {
            vmId,
            status: 'Down',
            statusTime: stats.statusTime,
            exitCode: stats.exitCode,
            exitMessage: stats.exitMessage,
            exitReason: stats.exitReason,
          }
      : {
          vmId,
          status: stats.status,
          statusTime: stats.statusTime,
          netIfaces: stats.netIfaces,
          guestIPs: stats.guestIPs,
          guestName: stats.guestName,
          guestFQDN: stats.guestFQDN,
          guestOs: stats.guestOs,
          guestAgentStatus: stats.guestAgentStatus,
        };
  return { method: VM_STATUS_PREFIX + vmId, params: { [vmId]: body, notify_time: eventTime() } };
}

/** Publishes every registry change; returns the function that stops it. */
export function publishVmChanges(
  hub: EventHub,
  onChange: (listener: (c: VmChangeLike) => void) => () => void,
): () => void {
  return onChange((change) => {
    const ev = vmStatusEvent(change);
    hub.publish(ev.method, ev.params);
  });
}
