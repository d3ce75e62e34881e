// Ties discovery to channels: every socket in the channels directory gets a connection and the
// handler for its protocol, every VM an InputGuard its channels share, and the VmRegistry hears
// about sockets coming and going. One place decides how qemu-ga is reached (--qga-via).
import type { Logger } from 'pino';
import { channelProtocol, type ChannelName } from '../wire.js';
import type { VmRegistry } from '../vms/registry.js';
import { ChannelConnection, type ChannelHandler } from './channel.js';
import { ChannelsDirWatcher, type ChannelSocket, type ChannelsDirListener } from './channelsDir.js';
import { InputGuard } from './inputGuard.js';
import { ChannelLogCode, type IssueCounts } from '../guest/issues.js';
import { OvirtChannelHandler } from './ovirtChannel.js';
import type { QgaLink } from '../guest/qgaLink.js';
import { QgaPoller, type QgaSink } from './qgaPoller.js';
import { PollSlots, slotWidthFor } from './pollSlots.js';
import { QgaSocketLink } from './qgaSocketLink.js';

/** How qemu-ga is reached: its channel socket, libvirt's agent-command call, or per VM. */
export type QgaVia = 'auto' | 'direct' | 'libvirt';

const QGA_CHANNEL: ChannelName = 'org.qemu.guest_agent.0';

/**
 * How each VM's qemu-ga is reached, decided in one place (built before the channels; for libvirt,
 * src/libvirt/qgaRouting.ts). Channels only ask it; they never talk to libvirt themselves.
 */
export interface QgaRoutePolicy {
  readonly mode: QgaVia;
  /**
   * A QgaLink that reaches this VM's qemu-ga another way (libvirt), or null to use the socket.
   * Without one, `libvirt` leaves qemu-ga sockets alone and `auto` means `direct`.
   */
  linkFor(vmId: string, note: (issues: IssueCounts) => void): QgaLink | null;
  /** `auto` only: whether this VM's qemu-ga goes through libvirt (asked again on each redecide). */
  useLibvirt(vmId: string): Promise<boolean>;
  /** Calls `listener` whenever every VM's route is to be decided again (libvirtd came or went). */
  onRedecide(listener: () => void): void;
}

/** `--qga-via direct`: every qemu-ga over its socket, nothing else asked. */
const DIRECT_QGA: QgaRoutePolicy = {
  mode: 'direct',
  linkFor: () => null,
  useLibvirt: () => Promise.resolve(false),
  onRedecide: () => {},
};

export interface GuestChannelsOptions {
  dir: string;
  registry: VmRegistry;
  log: Logger;
  qgaPollIntervalMs: number;
  qgaTimeoutMs: number;
  agentSilenceTimeoutMs: number;
  /** Default: DIRECT_QGA. */
  qga?: QgaRoutePolicy;
}

interface OpenChannel {
  socket: ChannelSocket;
  stop(): void;
  reconnectNow(): void;
  /** `auto`: decide the route again (in place of stop and reopen). */
  reroute?: () => void;
}

interface VmChannels {
  guard: InputGuard;
  open: Map<ChannelName, OpenChannel>;
}

export class GuestChannels implements ChannelsDirListener {
  private readonly vms = new Map<string, VmChannels>();
  /** Every qemu-ga poller's rounds run from this one timer wheel. */
  private readonly pollSlots: PollSlots;
  private readonly watcher: ChannelsDirWatcher;
  private warnedNoLibvirt = false;
  private readonly qga: QgaRoutePolicy;

  constructor(private readonly opts: GuestChannelsOptions) {
    this.qga = opts.qga ?? DIRECT_QGA;
    this.pollSlots = new PollSlots(slotWidthFor(opts.qgaPollIntervalMs));
    this.qga.onRedecide(() => this.redecideQga());
    this.watcher = new ChannelsDirWatcher(opts.dir, this, opts.log);
    // One line per agent state change (SPEC section 6), never per message.
    opts.registry.onChange((ch) => {
      if (ch.changed.includes('guestAgentStatus'))
        opts.log.info({ vmId: ch.vmId, guestAgentStatus: ch.stats.guestAgentStatus }, 'guest agent status changed');
    });
  }

  start(): Promise<void> {
    return this.watcher.start();
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
    if (vm.open.has(s.channel)) {
      // The same VM and channel under a second spelling of the UUID: the first socket serves.
      this.opts.log.debug({ vmId: s.vmId, channel: s.channel, path: s.path }, 'duplicate guest channel socket ignored');
      return;
    }
    this.opts.log.info({ vmId: s.vmId, channel: s.channel }, 'guest channel appeared');
    this.opts.registry.channelAdded(s.vmId, s.channel);
    vm.open.set(s.channel, this.open(s, vm.guard));
  }

  removed(s: ChannelSocket): void {
    const vm = this.vms.get(s.vmId);
    const open = vm?.open.get(s.channel);
    if (open && open.socket.path !== s.path) return; // the duplicate went, not the one in use
    this.opts.log.info({ vmId: s.vmId, channel: s.channel }, 'guest channel removed');
    open?.stop();
    vm?.open.delete(s.channel);
    this.opts.registry.channelRemoved(s.vmId, s.channel);
    if (vm && !this.opts.registry.has(s.vmId)) {
      vm.guard.close();
      this.vms.delete(s.vmId);
    }
  }

  replaced(s: ChannelSocket): void {
    const open = this.vms.get(s.vmId)?.open.get(s.channel);
    if (open?.socket.path === s.path) open.reconnectNow();
  }

  /** Re-decides how every VM's qemu-ga is reached (e.g. libvirtd appeared or went away). */
  redecideQga(): void {
    for (const vm of this.vms.values()) {
      const current = vm.open.get(QGA_CHANNEL);
      if (!current) continue;
      if (current.reroute) {
        current.reroute();
        continue;
      }
      current.stop();
      vm.open.set(QGA_CHANNEL, this.open(current.socket, vm.guard));
    }
  }

  private open(s: ChannelSocket, guard: InputGuard): OpenChannel {
    const { registry, log } = this.opts;
    const chLog = log.child({ vmId: s.vmId, channel: s.channel });
    if (channelProtocol(s.channel) === 'ovirt') {
      const handler = new OvirtChannelHandler(s.vmId, s.channel, registry, guard, this.opts.agentSilenceTimeoutMs);
      const conn = this.connect(s, handler, guard, chLog);
      return {
        socket: s,
        stop: () => {
          conn.stop();
          handler.stop();
        },
        reconnectNow: () => conn.reconnectNow(),
      };
    }
    const sink: QgaSink = {
      report: (r) => registry.report(s.vmId, s.channel, r),
      status: (st) => registry.setAgentStatus(s.vmId, s.channel, st),
      issues: (i, detail) => guard.note(s.channel, i, detail),
    };
    const pollOpts = {
      intervalMs: this.opts.qgaPollIntervalMs,
      timeoutMs: this.opts.qgaTimeoutMs,
      slots: this.pollSlots,
    };
    const viaOther = (): OpenChannel | null => {
      const other = this.qga.linkFor(s.vmId, (i) => guard.note(s.channel, i));
      if (!other) return null;
      const poller = new QgaPoller(other, sink, pollOpts);
      poller.start();
      return { socket: s, stop: () => poller.stop(), reconnectNow: () => poller.linkReset() };
    };
    const direct = (): OpenChannel => {
      const link = new QgaSocketLink(s.channel, guard);
      const poller = new QgaPoller(link, sink, pollOpts);
      link.onLinkChange = () => poller.linkReset();
      const conn = this.connect(s, link, guard, chLog);
      poller.start();
      return {
        socket: s,
        stop: () => {
          poller.stop();
          conn.stop();
          link.stop();
        },
        reconnectNow: () => conn.reconnectNow(),
      };
    };
    if (this.qga.mode === 'auto') return this.routed(s, (vmId) => this.qga.useLibvirt(vmId), viaOther, direct, chLog);
    const other = this.qga.mode === 'direct' ? null : viaOther();
    if (other) return other;
    if (this.qga.mode === 'libvirt') {
      // Connecting would take the agent away from libvirtd (SPEC section 4): leave the socket alone.
      if (!this.warnedNoLibvirt)
        log.warn(
          { code: ChannelLogCode.qgaLibvirtUnavailable },
          'qemu-ga through libvirt is not available; qemu-ga is not polled',
        );
      this.warnedNoLibvirt = true;
      return { socket: s, stop: () => {}, reconnectNow: () => {} };
    }
    return direct();
  }

  /**
   * `auto`: nothing touches the socket until the route is decided (a direct connection to a
   * libvirt domain's socket would take its agent away from libvirtd); decisions run one at a time.
   */
  private routed(
    s: ChannelSocket,
    useLibvirt: (vmId: string) => Promise<boolean>,
    viaOther: () => OpenChannel | null,
    direct: () => OpenChannel,
    log: Logger,
  ): OpenChannel {
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
          // Through libvirt: poll now (libvirtd may just be back). A direct link is left alone.
          if (route === 'libvirt') current?.reconnectNow();
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
      socket: s,
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
