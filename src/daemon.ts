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
import { QgaRouting } from './libvirt/qgaRouting.js';
import { LibvirtInventory, qemuStartedAt } from './libvirt/inventory.js';
import { logLevelMethods } from './rpc/methods/logLevel.js';
import { metrics } from './metrics/metrics.js';
import type { MethodDef } from './rpc/registry.js';

/** Parts a caller may swap: the benchmark's baseline daemon (bench/naiveStats.ts) serves other VM stats methods. */
export interface DaemonParts {
  vmMethods?: (vms: VmRegistry) => MethodDef[];
}

/** How long `auto` keeps a VM on libvirt while libvirtd is away (a restart), before going direct. */
const LIBVIRT_HOLD_MS = 30_000;
/** How long start-up waits for libvirt's first listing before serving requests anyway. */
const LIBVIRT_LISTING_HOLD_MS = 5_000;
/** How long after the start-up connections are open netlink and prom-client load. */
const DEFERRED_LOAD_DELAY_MS = 1_000;

export class Daemon {
  readonly hub: EventHub;
  readonly registry: MethodRegistry;
  readonly server: RpcServer;
  readonly vms: VmRegistry;
  readonly guests: GuestChannels;
  readonly routes: RouteLookup;
  /** For --qga-via libvirt|auto only (`direct` never talks to libvirt); a bad --libvirt-uri is a start-up error. */
  private readonly libvirt: LibvirtClient | null = null;
  private readonly qgaRouting: QgaRouting | null = null;
  private readonly inventory: LibvirtInventory | null = null;
  private readonly stoppers: (() => Promise<void> | void)[] = [];

  constructor(
    readonly config: Config,
    readonly log: Logger,
    parts: DaemonParts = {},
  ) {
    this.hub = new EventHub(log.child({ part: 'events' }), {
      maxBufferedBytes: config.maxSubscriberBufferBytes,
      maxTotalBufferedBytes: config.maxEventsBufferBytes,
      drainTimeoutMs: config.subscriberDrainTimeoutMs,
    });
    this.stoppers.push(() => this.hub.close());
    this.registry = new MethodRegistry(log.child({ part: 'rpc' }));
    this.registry.add(hostMethods());
    this.registry.add(logLevelMethods(log));
    this.vms = new VmRegistry({ log: log.child({ part: 'vms' }) });
    this.registry.add((parts.vmMethods ?? vmMethods)(this.vms));
    this.stoppers.push(publishVmChanges(this.hub, (listener) => this.vms.onChange(listener)));
    if (config.qgaVia !== 'direct') {
      const lvLog = log.child({ part: 'libvirt' });
      this.libvirt = new LibvirtClient({
        uri: config.libvirtUri,
        log: lvLog,
        // On a host without libvirt, `auto` going direct is expected, not worth a warning.
        downLevel: config.qgaVia === 'auto' ? 'info' : 'warn',
      });
      this.qgaRouting = new QgaRouting(config.qgaVia, this.libvirt, lvLog, LIBVIRT_HOLD_MS);
      const vms = this.vms;
      this.inventory = new LibvirtInventory({
        client: this.libvirt,
        registry: vms,
        log: lvLog,
        intervalMs: config.qgaPollIntervalMs,
        clock: () => vms.now(),
        startedAt:
          this.libvirt.target.name === 'qemu:///system'
            ? qemuStartedAt('/run/libvirt/qemu', () => vms.now())
            : undefined,
      });
    }
    this.guests = new GuestChannels({
      dir: config.channelsDir,
      registry: this.vms,
      log: log.child({ part: 'guest' }),
      qgaPollIntervalMs: config.qgaPollIntervalMs,
      qgaTimeoutMs: config.qgaTimeoutMs,
      agentSilenceTimeoutMs: config.agentSilenceTimeoutMs,
      qga: this.qgaRouting ?? undefined,
    });
    this.routes = new RouteLookup(config.routeLookup, log.child({ part: 'route' }), {
      netlink: { timeoutMs: config.routeTimeoutMs },
    });
    this.registry.add(routeMethods(this.routes, log.child({ part: 'route' })));
    this.stoppers.push(() => this.routes.close());
    metrics.attach(
      {
        vms: () => this.vms.all(),
        eventsPublished: () => this.hub.published,
        eventSubscribers: () => this.hub.subscriberCount(),
      },
      this.registry.methodNames(),
    );
    this.registry.observe((method, code, seconds) => metrics.rpcRequest(method, code, seconds));
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
      await this.startLibvirt();
      await this.guests.start();
    } finally {
      guestsKnown.resolve();
    }
    this.stoppers.push(() => this.guests.stop());
    // The netlink module (~50 ms to load) and prom-client (~40 ms) load in the background a
    // moment after the start-up connections are open: not while a client that came at start-up
    // (the engine after a restart) waits for its first answers, and not on the first
    // Host.getRoute or scrape (their latency); a lookup or scrape before then loads it itself.
    let deferredLoad: NodeJS.Timeout | undefined;
    void this.guests.opened().then(() => {
      deferredLoad = setTimeout(() => {
        metrics.load().catch((err: unknown) => this.log.error({ err }, 'metrics could not be loaded'));
        void this.routes.ready();
      }, DEFERRED_LOAD_DELAY_MS).unref();
    });
    this.stoppers.push(() => clearTimeout(deferredLoad));
    metrics.setState('serving');
    const url = this.server.url();
    this.log.info(
      { url, channelsDir: this.config.channelsDir, methods: this.registry.methodNames().length },
      `listening on ${url}`,
    );
    return url;
  }

  /**
   * libvirt (--qga-via libvirt|auto): one connection attempt now, retries after; when libvirtd
   * answers, its active domains are listed before the first request is served.
   */
  private async startLibvirt(): Promise<void> {
    const { libvirt, qgaRouting, inventory } = this;
    if (!libvirt || !qgaRouting || !inventory) return;
    // A VM gone is forgotten by the route decider and the lookup cache.
    this.vms.onChange((ch) => {
      if (ch.stats.status === 'Down') qgaRouting.forget(ch.vmId);
    });
    inventory.start();
    this.stoppers.push(() => {
      inventory.stop();
      qgaRouting.stop();
      libvirt.stop();
    });
    metrics.libvirtState(libvirt.state);
    libvirt.on('state', (state: 'up' | 'down') => metrics.libvirtState(state));
    await libvirt.start(); // one attempt; it keeps retrying in the background
    // A libvirtd that stalls holds the first requests back a bounded time only.
    let hold: NodeJS.Timeout | undefined;
    await Promise.race([inventory.settled(), new Promise((r) => (hold = setTimeout(r, LIBVIRT_LISTING_HOLD_MS)))]);
    clearTimeout(hold);
  }

  async stop(): Promise<void> {
    metrics.setState('stopping');
    await this.server.stop(this.config.shutdownTimeoutMs);
    for (const stop of this.stoppers.reverse()) await stop();
  }
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}
