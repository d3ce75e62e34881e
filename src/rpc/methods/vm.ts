// VM stats verbs (SPEC section 3): Host.getAllVmStats and VM.getStats, with VDSM's bare-verb
// aliases. Both read the registry's cached per-VM stats; nothing here touches a channel.
import type { VmRegistry } from '../../vms/registry.js';
import { noSuchVm } from '../errors.js';
import { uuid } from '../params.js';
import type { MethodDef } from '../registry.js';

export function vmMethods(vms: VmRegistry): MethodDef[] {
  return [
    { name: 'Host.getAllVmStats', aliases: ['getAllVmStats'], params: [], handler: () => vms.all() },
    {
      name: 'VM.getStats',
      aliases: ['getVmStats'],
      params: [{ name: 'vmID', required: true, check: uuid }],
      handler: (p) => {
        const stats = vms.get(p.vmID as string);
        if (!stats) throw noSuchVm(p.vmID as string);
        return [stats];
      },
    },
  ];
}
