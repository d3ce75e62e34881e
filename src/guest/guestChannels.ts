// Ties discovery to channels: every socket in the channels directory gets a connection and the
// handler for its protocol, every VM an InputGuard its channels share, and the VmRegistry hears
// about sockets coming and going. One place decides how qemu-ga is reached (--qga-via).
import type { Logger } from 'pino';
import type { QgaVia } from '../config.js';
import { channelProtocol, type ChannelName } from '../wire.js';
import type { VmRegistry } from '../vms/registry.js';
import { ChannelConnection, type ChannelHandler } from './channel.js';
import { ChannelsDirWatcher, type ChannelSocket, type ChannelsDirListener } from './channelsDir.js';
import { InputGuard } from './inputGuard.js';
import { OvirtChannelHandler } from './ovirtChannel.js';
import type { IssueCounts } from './issues.js';
import { QgaPoller, type QgaLink, type QgaSink } from './qgaPoller.js';
import { QgaSocketLink } from './qgaSocketLink.js';

export interface GuestChannelsOptions {
  dir: string;
  registry: VmRegistry;
  log: Logger;
  qgaPollIntervalMs: number;
  qgaTimeoutMs: number;
  agentSilenceTimeoutMs: number;
  qgaVia: QgaVia;
  /**
   * A QgaLink that reaches this VM's qemu-ga another way (libvirt), or null to use the socket.
   * Without one, `libvirt` leaves qemu-ga sockets alone and `auto` means `direct`.
   */
  qgaLinkFor?: (vmId: string, note: (issues: IssueCounts) => void) => QgaLink | null;
  /** `auto` only: whether this VM's qemu-ga goes through libvirt (asked again on `rerouteQga`). */
  qgaUseLibvirt?: (vmId: string) => Promise<boolean>;
}

interface OpenChannel {
  stop(): void;
  reconnectNow(): void;
  reroute?: () => void;
}

interface VmChannels {
  guard: InputGuard;
  open: Map<ChannelName, OpenChannel>;
}

export class GuestChannels implements ChannelsDirListener {
  private readonly vms = new Map<string, VmChannels>();
  private readonly watcher: ChannelsDirWatcher;
  private warnedNoLibvirt = false;

  constructor(private readonly opts: GuestChannelsOptions) {
    this.watcher = new ChannelsDirWatcher(opts.dir, this, opts.log);
  }

  start(): Promise<void> {
    return this.watcher.start();
  }

  /** `auto`: libvirtd came or went; each VM's qemu-ga route is decided again. */
  rerouteQga(): void {
    for (const vm of this.vms.values()) {
      const qga = vm.open.get('org.qemu.guest_agent.0');
      // Routed (auto) channels decide again; libvirt-only ones poll now instead of at their next tick.
      if (qga) (qga.reroute ?? qga.reconnectNow)();
    }
  }

  stop(): void {
    this.watcher.stop();
    for (const vm of this.vms.values()) for (const ch of vm.open.values()) ch.stop();
    this.vms.clear();
  }

  added(s: ChannelSocket): void {
    let vm = this.vms.get(s.vmId);
    if (!vm) {
      vm = { guard: new InputGuard(s.vmId, this.opts.log), open: new Map() };
      this.vms.set(s.vmId, vm);
    }
    this.opts.log.info({ vmId: s.vmId, channel: s.channel }, 'guest channel appeared');
    this.opts.registry.channelAdded(s.vmId, s.channel);
    const open = this.open(s, vm.guard);
    if (open) vm.open.set(s.channel, open);
  }

  removed(s: ChannelSocket): void {
    const vm = this.vms.get(s.vmId);
    this.opts.log.info({ vmId: s.vmId, channel: s.channel }, 'guest channel removed');
    vm?.open.get(s.channel)?.stop();
    vm?.open.delete(s.channel);
    this.opts.registry.channelRemoved(s.vmId, s.channel);
    if (vm && !this.opts.registry.has(s.vmId)) {
      vm.guard.close();
      this.vms.delete(s.vmId);
    }
  }

  replaced(s: ChannelSocket): void {
    this.vms.get(s.vmId)?.open.get(s.channel)?.reconnectNow();
  }

  private open(s: ChannelSocket, guard: InputGuard): OpenChannel | null {
    const { registry, log } = this.opts;
    const chLog = log.child({ vmId: s.vmId, channel: s.channel });
    if (channelProtocol(s.channel) === 'ovirt') {
      const handler = new OvirtChannelHandler(s.vmId, s.channel, registry, guard, this.opts.agentSilenceTimeoutMs);
      const conn = this.connect(s, handler, guard, chLog);
      return { stop: () => (conn.stop(), handler.stop()), reconnectNow: () => conn.reconnectNow() };
    }
    const sink: QgaSink = {
      report: (r) => registry.report(s.vmId, s.channel, r),
      status: (st) => registry.setAgentStatus(s.vmId, s.channel, st),
      issues: (i, detail) => guard.note(s.channel, i, detail),
    };
    const pollOpts = { intervalMs: this.opts.qgaPollIntervalMs, timeoutMs: this.opts.qgaTimeoutMs };
    const viaOther = (): OpenChannel | null => {
      const other = this.opts.qgaLinkFor?.(s.vmId, (i) => guard.note(s.channel, i)) ?? null;
      if (!other) return null;
      const poller = new QgaPoller(other, sink, pollOpts);
      poller.start();
      return { stop: () => poller.stop(), reconnectNow: () => poller.linkReset() };
    };
    const direct = (): OpenChannel => {
      const link = new QgaSocketLink(s.channel, guard);
      const poller = new QgaPoller(link, sink, pollOpts);
      link.onLinkChange = () => poller.linkReset();
      const conn = this.connect(s, link, guard, chLog);
      poller.start();
      return { stop: () => (poller.stop(), conn.stop(), link.stop()), reconnectNow: () => conn.reconnectNow() };
    };
    if (this.opts.qgaVia === 'auto' && this.opts.qgaUseLibvirt) return this.routed(s, this.opts.qgaUseLibvirt, viaOther, direct, chLog);
    const other = this.opts.qgaVia === 'direct' ? null : viaOther();
    if (other) return other;
    if (this.opts.qgaVia === 'libvirt') {
      // Connecting would take the agent away from libvirtd (SPEC section 4): leave the socket alone.
      if (!this.warnedNoLibvirt) log.warn({ code: 'GUEST_ERR_QGA_LIBVIRT_UNAVAILABLE' }, 'qemu-ga through libvirt is not available; qemu-ga is not polled');
      this.warnedNoLibvirt = true;
      return null;
    }
    return direct();
  }

  /**
   * `auto`: nothing touches the socket until the route is decided (a direct connection to a
   * libvirt domain's socket would take its agent away from libvirtd); decisions run one at a time.
   */
  private routed(s: ChannelSocket, useLibvirt: (vmId: string) => Promise<boolean>, viaOther: () => OpenChannel | null, direct: () => OpenChannel, log: Logger): OpenChannel {
    let current: OpenChannel | null = null;
    let route: 'libvirt' | 'direct' | null = null;
    let stopped = false;
    let chain = Promise.resolve();
    const decide = (): void => {
      chain = chain.then(async () => {
        const libvirt = await useLibvirt(s.vmId).catch(() => false);
        if (stopped) return;
        const next = libvirt ? 'libvirt' : 'direct';
        if (next === route) {
          current?.reconnectNow(); // same way, but look now (libvirtd may just be back)
          return;
        }
        current?.stop();
        current = libvirt ? viaOther() : direct();
        route = next;
        log.info({ route }, 'qemu-ga route');
      });
    };
    decide();
    return {
      stop: () => {
        stopped = true;
        current?.stop();
      },
      reconnectNow: () => current?.reconnectNow(),
      reroute: decide,
    };
  }

  private connect(s: ChannelSocket, handler: ChannelHandler, guard: InputGuard, log: Logger): ChannelConnection {
    const conn = new ChannelConnection({ path: s.path, handler, log, bytes: guard.budget.bytes });
    conn.start();
    return conn;
  }
}
