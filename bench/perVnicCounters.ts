// Bench-only preload (`node --import tsx --import bench/perVnicCounters.ts`, with
// BENCH_INVENTORY_MODULE=<a build's dist/libvirt/inventory.js>): makes that build's libvirt
// inventory sample vNIC counters with one DOMAIN_INTERFACE_STATS per vNIC (its bench option)
// instead of the bulk call. libvirtd's `test` driver answers CONNECT_GET_ALL_DOMAIN_STATS with
// the state group only, so under the bulk call its domains' counters never move; per vNIC it
// makes them up from the clock, so every sample moves every VM's counters, as traffic would. No
// daemon source knows about this, so today's build and an old one get the same change.
import { pathToFileURL } from 'node:url';

interface InventoryClass {
  prototype: { start: (this: { opts: { counters?: string } }) => void };
}

const file = process.env.BENCH_INVENTORY_MODULE;
if (file) {
  const { LibvirtInventory } = (await import(pathToFileURL(file).href)) as { LibvirtInventory: InventoryClass };
  const start = LibvirtInventory.prototype.start;
  LibvirtInventory.prototype.start = function (this: { opts: { counters?: string } }): void {
    this.opts.counters = 'one-per-domain';
    start.call(this);
  };
}
