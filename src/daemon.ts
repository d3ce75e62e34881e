// Wiring and lifecycle: builds every part from the Config, starts them in order, and stops
// them in reverse on shutdown. No protocol logic lives here.
import type { Logger } from 'pino';
import type { Config } from './config.js';
import { EventHub } from './events/hub.js';
import { MethodRegistry } from './rpc/registry.js';
import { RpcServer } from './rpc/server.js';
import { hostMethods } from './rpc/methods/host.js';
import { vmMethods } from './rpc/methods/vm.js';
import { VmRegistry } from './vms/registry.js';
import { GuestChannels } from './guest/guestChannels.js';
import { publishVmChanges } from './events/vmEvents.js';
import { routeMethods } from './rpc/methods/route.js';
import { RouteLookup } from './net/routeLookup.js';

export class Daemon {
  readonly hub: EventHub;
  readonly registry: MethodRegistry;
  readonly server: RpcServer;
  readonly vms: VmRegistry;
  readonly guests: GuestChannels;
  readonly routes: RouteLookup;
  private readonly stoppers: (() => Promise<void> | void)[] = [];

  constructor(
    readonly config: Config,
    readonly log: Logger,
  ) {
    this.hub = new EventHub(log.child({ part: 'events' }), config.maxSubscriberBufferBytes);
    this.registry = new MethodRegistry(log.child({ part: 'rpc' }));
    this.registry.add(hostMethods());
    this.vms = new VmRegistry({ log: log.child({ part: 'vms' }) });
    this.registry.add(vmMethods(this.vms));
    this.stoppers.push(publishVmChanges(this.hub, (listener) => this.vms.onChange(listener)));
    this.guests = new GuestChannels({
      dir: config.channelsDir,
      registry: this.vms,
      log: log.child({ part: 'guest' }),
      qgaPollIntervalMs: config.qgaPollIntervalMs,
      qgaTimeoutMs: config.qgaTimeoutMs,
      agentSilenceTimeoutMs: config.agentSilenceTimeoutMs,
      qgaVia: config.qgaVia,
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
      await this.guests.start();
    } finally {
      guestsKnown.resolve();
    }
    this.stoppers.push(() => this.guests.stop());
    const url = this.server.url();
    this.log.info({ url, channelsDir: this.config.channelsDir, methods: this.registry.methodNames().length }, `listening on ${url}`);
    return url;
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
