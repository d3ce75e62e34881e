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
import { ChannelLogCode } from './issues.js';
import { OvirtChannelHandler } from './ovirtChannel.js';
import { QgaPoller, type QgaLink, type QgaSink } from './qgaPoller.js';
import { QgaSocketLink } from './qgaSocketLink.js';

const QGA_CHANNEL: ChannelName = 'org.qemu.guest_agent.0';

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
  qgaLinkFor?: (vmId: string) => QgaLink | null;
}

interface OpenChannel {
  socket: ChannelSocket;
  stop(): void;
  reconnectNow(): void;
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
    // One line per agent state change (SPEC section 6), never per message.
    opts.registry.onChange((ch) => {
      if (ch.changed.includes('guestAgentStatus')) opts.log.info({ vmId: ch.vmId, guestAgentStatus: ch.stats.guestAgentStatus }, 'guest agent status changed');
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
      return { socket: s, stop: () => (conn.stop(), handler.stop()), reconnectNow: () => conn.reconnectNow() };
    }
    const sink: QgaSink = {
      report: (r) => registry.report(s.vmId, s.channel, r),
      status: (st) => registry.setAgentStatus(s.vmId, s.channel, st),
      issues: (i, detail) => guard.note(s.channel, i, detail),
    };
    const pollOpts = { intervalMs: this.opts.qgaPollIntervalMs, timeoutMs: this.opts.qgaTimeoutMs };
    const other = this.opts.qgaVia === 'direct' ? null : (this.opts.qgaLinkFor?.(s.vmId) ?? null);
    if (other) {
      const poller = new QgaPoller(other, sink, pollOpts);
      poller.start();
      return { socket: s, stop: () => poller.stop(), reconnectNow: () => poller.linkReset() };
    }
    if (this.opts.qgaVia === 'libvirt') {
      // Connecting would take the agent away from libvirtd (SPEC section 4): leave the socket alone.
      if (!this.warnedNoLibvirt) log.warn({ code: ChannelLogCode.qgaLibvirtUnavailable }, 'qemu-ga through libvirt is not available; qemu-ga is not polled');
      this.warnedNoLibvirt = true;
      return { socket: s, stop: () => {}, reconnectNow: () => {} };
    }
    const link = new QgaSocketLink(s.channel, guard);
    const poller = new QgaPoller(link, sink, pollOpts);
    link.onLinkChange = () => poller.linkReset();
    const conn = this.connect(s, link, guard, chLog);
    poller.start();
    return { socket: s, stop: () => (poller.stop(), conn.stop(), link.stop()), reconnectNow: () => conn.reconnectNow() };
  }

  private connect(s: ChannelSocket, handler: ChannelHandler, guard: InputGuard, log: Logger): ChannelConnection {
    const conn = new ChannelConnection({ path: s.path, handler, log, bytes: guard.budget.bytes });
    conn.start();
    return conn;
  }
}
