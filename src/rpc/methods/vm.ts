// VM stats verbs (SPEC section 3): Host.getAllVmStats and VM.getStats, with VDSM's bare-verb
// aliases. Both read the registry's cached per-VM stats; nothing here touches a channel. The
// replies are JSON text assembled from per-VM pieces serialised once per change (the
// benchmark's naive baseline, which re-serialises per call, is in bench/naiveStats.ts).
import type { VmRegistry } from '../../vms/registry.js';
import { noSuchVm } from '../errors.js';
import { uuid } from '../params.js';
import type { MethodDef } from '../registry.js';
import { JsonText } from '../jsonText.js';

export function vmMethods(vms: VmRegistry): MethodDef[] {
  return [
    {
      name: 'Host.getAllVmStats',
      aliases: ['getAllVmStats'],
      params: [],
      handler: () => new JsonText((before, after, alloc) => vms.allJson(before, after, alloc)),
    },
    {
      name: 'VM.getStats',
      aliases: ['getVmStats'],
      params: [{ name: 'vmID', required: true, check: uuid }],
      handler: (p) => {
        const id = p.vmID as string;
        if (!vms.has(id)) throw noSuchVm(id);
        // Rendered when the reply is written; a VM gone by then is shown as an empty list, never an error mid-write.
        return new JsonText(
          (before, after) => vms.getJson(id, before, after) ?? Buffer.concat([before, Buffer.from('[]'), after]),
        );
      },
    },
  ];
}
