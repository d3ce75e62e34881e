// The per-VM qemu-ga routing policy in one object (SPEC section 4), built before the channels:
// `libvirt` sends every qemu-ga command through libvirt, `auto` asks per VM (libvirt when libvirtd
// runs a domain with the VM's UUID, held through a short libvirtd absence), and any change of
// libvirtd's reachability asks the channels to decide every route again.
import type { Logger } from 'pino';
import type { IssueCounts } from '../guest/issues.js';
import type { QgaLink } from '../guest/qgaLink.js';
import type { QgaRoutePolicy, QgaVia } from '../channels/guestChannels.js';
import { LibvirtQgaLink, LibvirtRouteDecider } from './agentLink.js';
import type { LibvirtClient } from './client.js';

export class QgaRouting implements QgaRoutePolicy {
  private readonly decider: LibvirtRouteDecider | null;
  private readonly listeners = new Set<() => void>();

  constructor(
    readonly mode: Exclude<QgaVia, 'direct'>,
    private readonly client: LibvirtClient,
    private readonly log: Logger,
    /** How long `auto` keeps a VM on libvirt while libvirtd is away (a restart). */
    holdMs: number,
  ) {
    this.decider = mode === 'auto' ? new LibvirtRouteDecider(client, holdMs, () => this.redecide()) : null;
    client.on('state', () => this.redecide());
  }

  linkFor(vmId: string, note: (issues: IssueCounts) => void): QgaLink {
    return new LibvirtQgaLink(this.client, vmId, this.log, note);
  }

  useLibvirt(vmId: string): Promise<boolean> {
    return this.decider ? this.decider.useLibvirt(vmId) : Promise.resolve(true);
  }

  onRedecide(listener: () => void): void {
    this.listeners.add(listener);
  }

  /** A VM gone: its decision and cached domain lookup go too. */
  forget(vmId: string): void {
    if (this.decider) this.decider.forget(vmId);
    else this.client.forget(vmId);
  }

  stop(): void {
    this.decider?.stop();
    this.listeners.clear();
  }

  private redecide(): void {
    for (const l of this.listeners) l();
  }
}
