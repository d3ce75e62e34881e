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

export class Daemon {
  readonly hub: EventHub;
  readonly registry: MethodRegistry;
  readonly server: RpcServer;
  readonly vms: VmRegistry;
  readonly guests: GuestChannels;
  private readonly stoppers: (() => Promise<void> | void)[] = [];

  constructor(
    readonly config: Config,
    readonly log: Logger,
  ) {
    this.hub = new EventHub(log.child({ part: 'events' }), config.maxSubscriberBufferBytes);
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
    });
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
    // Sockets already present are known before the first request is answered.
    await this.guests.start();
    this.stoppers.push(() => this.guests.stop());
    await this.server.listen();
    const url = this.server.url();
    this.log.info({ url, channelsDir: this.config.channelsDir, methods: this.registry.methodNames().length }, `listening on ${url}`);
    return url;
  }

  async stop(): Promise<void> {
    await this.server.stop(this.config.shutdownTimeoutMs);
    for (const stop of this.stoppers.reverse()) await stop();
  }
}
