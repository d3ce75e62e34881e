// Wiring and lifecycle: builds every part from the Config, starts them in order, and stops
// them in reverse on shutdown. No protocol logic lives here.
import type { Logger } from 'pino';
import type { Config } from './config.js';
import { EventHub } from './events/hub.js';
import { MethodRegistry } from './rpc/registry.js';
import { RpcServer } from './websocket/server.js';
import { hostMethods } from './rpc/methods/host.js';
import { vmMethods } from './rpc/methods/vm.js';
import { VmRegistry } from './vms/registry.js';
import { GuestChannels } from './channels/guestChannels.js';
import { publishVmChanges } from './events/vmEvents.js';
import { routeMethods } from './rpc/methods/route.js';
import { RouteLookup } from './route/routeLookup.js';
import { LibvirtClient } from './libvirt/client.js';
import { LibvirtQgaLink, LibvirtRouteDecider } from './libvirt/agentLink.js';

/** How long `auto` keeps a VM on libvirt while libvirtd is away (a restart), before going direct. */
const LIBVIRT_HOLD_MS = 30_000;

export class Daemon {
  readonly hub: EventHub;
  readonly registry: MethodRegistry;
  readonly server: RpcServer;
  readonly vms: VmRegistry;
  readonly guests: GuestChannels;
  readonly routes: RouteLookup;
  /** Built in start() for --qga-via libvirt|auto (a bad --libvirt-uri is a start-up error). */
  private libvirt: LibvirtClient | null = null;
  private qgaRoutes: LibvirtRouteDecider | null = null;
  private readonly stoppers: (() => Promise<void> | void)[] = [];

  constructor(
    readonly config: Config,
    readonly log: Logger,
  ) {
    this.hub = new EventHub(log.child({ part: 'events' }), {
      maxBufferedBytes: config.maxSubscriberBufferBytes,
      maxTotalBufferedBytes: config.maxEventsBufferBytes,
      drainTimeoutMs: config.subscriberDrainTimeoutMs,
    });
    this.stoppers.push(() => this.hub.close());
    this.registry = new MethodRegistry(log.child({ part: 'rpc' }));
    this.registry.add(hostMethods());
    this.vms = new VmRegistry({ log: log.child({ part: 'vms' }) });
    this.registry.add(vmMethods(this.vms, config.statsSerialisation));
    this.stoppers.push(publishVmChanges(this.hub, (listener) => this.vms.onChange(listener)));
    this.guests = new GuestChannels({
      dir: config.channelsDir,
      registry: this.vms,
      log: log.child({ part: 'guest' }),
      qgaPollIntervalMs: config.qgaPollIntervalMs,
      qgaTimeoutMs: config.qgaTimeoutMs,
      agentSilenceTimeoutMs: config.agentSilenceTimeoutMs,
      qgaVia: config.qgaVia,
      qgaLinkFor: (vmId, note) => (this.libvirt ? new LibvirtQgaLink(this.libvirt, vmId, log.child({ part: 'libvirt' }), note) : null),
      qgaUseLibvirt: config.qgaVia === 'auto' ? (vmId) => this.qgaRoutes?.useLibvirt(vmId) ?? Promise.resolve(false) : undefined,
    });
    this.routes = new RouteLookup(config.routeLookup, log.child({ part: 'route' }));
    this.registry.add(routeMethods(this.routes, log.child({ part: 'route' })));
    this.stoppers.push(() => this.routes.close());
    this.server = new RpcServer({
      listen: config.listen,
      tls: config.tls,
      limits: config,
      registry: this.registry,
      hub: this.hub,
      log: log.child({ part: 'rpc' }),
    });
  }

  async start(): Promise<string> {
    // Bind first: a taken port or a bad address fails before anything else starts. Requests
    // wait until the sockets already present are known, so no one sees a partial VM list.
    const guestsKnown = deferred();
    this.registry.holdUntil(guestsKnown.promise);
    await this.server.listen();
    try {
      if (this.config.qgaVia !== 'direct') await this.startLibvirt();
      await this.guests.start();
    } finally {
      guestsKnown.resolve();
    }
    this.stoppers.push(() => this.guests.stop());
    const url = this.server.url();
    this.log.info({ url, channelsDir: this.config.channelsDir, methods: this.registry.methodNames().length }, `listening on ${url}`);
    return url;
  }

  /** qemu-ga through libvirt (--qga-via libvirt|auto): one connection attempt now, retries after. */
  private async startLibvirt(): Promise<void> {
    const libvirt = new LibvirtClient({
      uri: this.config.libvirtUri,
      log: this.log.child({ part: 'libvirt' }),
      // On a host without libvirt, `auto` going direct is expected, not worth a warning.
      downLevel: this.config.qgaVia === 'auto' ? 'info' : 'warn',
    });
    this.libvirt = libvirt;
    const routes = this.config.qgaVia === 'auto' ? new LibvirtRouteDecider(libvirt, LIBVIRT_HOLD_MS, () => this.guests.redecideQga()) : null;
    this.qgaRoutes = routes;
    // A VM gone (its last socket removed) is forgotten by the route decider and lookup cache.
    this.vms.onChange((ch) => {
      if (ch.stats.status === 'Down') (routes ? routes.forget(ch.vmId) : libvirt.forget(ch.vmId));
    });
    libvirt.on('state', () => this.guests.redecideQga());
    this.stoppers.push(() => (routes?.stop(), libvirt.stop()));
    await libvirt.start(); // one attempt; it keeps retrying in the background
  }

  async stop(): Promise<void> {
    await this.server.stop(this.config.shutdownTimeoutMs);
    for (const stop of this.stoppers.reverse()) await stop();
  }
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}
