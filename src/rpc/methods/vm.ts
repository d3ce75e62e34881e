// VM stats verbs (SPEC section 3): Host.getAllVmStats and VM.getStats, with VDSM's bare-verb
// aliases. Both read the registry's cached per-VM stats; nothing here touches a channel. The
// replies are JSON text assembled from per-VM pieces serialised once per change; `naive` (a
// diagnostic flag) rebuilds and re-serialises everything per call, as the benchmark's baseline.
import type { VmRegistry } from '../../vms/registry.js';
import { noSuchVm } from '../errors.js';
import { uuid } from '../params.js';
import type { MethodDef } from '../registry.js';
import { JsonText } from '../jsonText.js';
import type { StatsSerialisation } from '../../vms/statsJson.js';

export function vmMethods(vms: VmRegistry, serialisation: StatsSerialisation = 'cached'): MethodDef[] {
  const naive = serialisation === 'naive';
  return [
    {
      name: 'Host.getAllVmStats',
      aliases: ['getAllVmStats'],
      params: [],
      handler: () => (naive ? vms.allRebuilt() : new JsonText((before, after, alloc) => vms.allJson(before, after, alloc))),
    },
    {
      name: 'VM.getStats',
      aliases: ['getVmStats'],
      params: [{ name: 'vmID', required: true, check: uuid }],
      handler: (p) => {
        const id = p.vmID as string;
        if (naive) {
          const stats = vms.getRebuilt(id);
          if (!stats) throw noSuchVm(id);
          return [stats];
        }
        if (!vms.has(id)) throw noSuchVm(id);
        // Rendered when the reply is written; a VM gone by then is shown as an empty list, never an error mid-write.
        return new JsonText((before, after) => vms.getJson(id, before, after) ?? Buffer.concat([before, Buffer.from('[]'), after]));
      },
    },
  ];
}
