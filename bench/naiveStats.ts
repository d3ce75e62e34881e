// The benchmark's naive baseline, as a daemon of its own: `node --import tsx bench/naiveStats.ts
// FLAGS` runs the real Daemon with the VM stats methods swapped for ones that rebuild every VM's
// stats from its channel state and serialise the whole reply with JSON.stringify on each call,
// as if nothing were cached. Bench-only: the production daemon has no such mode.
import type { ChannelName, VmStats } from '../src/wire.js';
import { loadConfig } from '../src/config.js';
import { Daemon } from '../src/daemon.js';
import { createLogger } from '../src/log.js';
import { noSuchVm } from '../src/rpc/errors.js';
import { uuid } from '../src/rpc/params.js';
import type { MethodDef } from '../src/rpc/registry.js';
import { buildStats, stampStats, type ChannelGuestState, type VmStatsBase } from '../src/vms/stats.js';
import type { VmRegistry } from '../src/vms/registry.js';

/** What the registry keeps per VM (its private entries, read here and nowhere else). */
interface Entry {
  vmId: string;
  firstSeenMs: number;
  channels: Map<ChannelName, ChannelGuestState>;
  base: VmStatsBase;
}

function entries(vms: VmRegistry): Map<string, Entry> {
  return (vms as unknown as { vms: Map<string, Entry> }).vms;
}

const rebuilt = (e: Entry, now: number): VmStats =>
  stampStats(buildStats(e.vmId, e.base.status, e.channels, e.base.network), e.firstSeenMs, now);

/** Host.getAllVmStats and VM.getStats answered with plain values, rebuilt per call. */
export function naiveVmMethods(vms: VmRegistry): MethodDef[] {
  const now = (): number => (vms as unknown as { clock: () => number }).clock();
  return [
    {
      name: 'Host.getAllVmStats',
      aliases: ['getAllVmStats'],
      params: [],
      handler: () => {
        const t = now();
        return [...entries(vms).values()].map((e) => rebuilt(e, t));
      },
    },
    {
      name: 'VM.getStats',
      aliases: ['getVmStats'],
      params: [{ name: 'vmID', required: true, check: uuid }],
      handler: (p) => {
        const id = p.vmID as string;
        const e = entries(vms).get(id.toLowerCase());
        if (!e) throw noSuchVm(id);
        return [rebuilt(e, now())];
      },
    },
  ];
}

const config = loadConfig(process.argv.slice(2));
const log = createLogger(config.logLevel);
const daemon = new Daemon(config, log, { vmMethods: naiveVmMethods });
const stop = (): void => {
  void daemon.stop().then(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
await daemon.start();
