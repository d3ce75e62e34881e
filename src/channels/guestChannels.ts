// Ties discovery to channels: every socket in the channels directory gets a connection and the
// handler for its protocol, every VM an InputGuard its channels share, and the VmRegistry hears
// about sockets coming and going. One place decides how qemu-ga is reached (--qga-via).
// A socket's VM is registered the moment the socket is seen; its connection opens a moment later,
// a batch per turn of the event loop, so 1,000 VMs found at start-up are listed (agent status
// unknown) before 1,000 connections have been made, and requests are served between batches.
// The sockets of the first listing are summed up in one info line; their per-channel lines
// (appeared, first connect, first 'responsive') are debug. Later arrivals, reconnects and every
// problem stay info or above (docs/operations.md, "Start-up log").
import type { Logger } from 'pino';
import { channelProtocol, type ChannelName } from '../wire.js';
import type { VmRegistry } from '../vms/registry.js';
import { ChannelConnection, type ChannelHandler } from './channel.js';
import { ChannelsDirWatcher, type ChannelSocket, type ChannelsDirListener } from './channelsDir.js';
import { InputGuard } from './inputGuard.js';
import { ChannelLogCode, type IssueCounts } from '../guest/issues.js';
import type { GuestReport } from '../guest/sanitize.js';
import { OvirtChannelHandler } from './ovirtChannel.js';
import type { QgaLink } from '../guest/qgaLink.js';
import { QgaPoller, type QgaPollerOptions, type QgaSink } from './qgaPoller.js';
import { PollSlots, slotWidthFor } from './pollSlots.js';
import { QgaSocketLink } from './qgaSocketLink.js';

/** How qemu-ga is reached: its channel socket, libvirt's agent-command call, or per VM. */
export type QgaVia = 'auto' | 'direct' | 'libvirt';

const QGA_CHANNEL: ChannelName = 'org.qemu.guest_agent.0';

/** Connections opened per turn of the event loop (~150 µs each): a batch holds requests back ~3 ms. */
const OPEN_BATCH = 20;

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
  open: Map<ChannelName, QueuedChannel>;
}

export class GuestChannels implements ChannelsDirListener {
  private readonly vms = new Map<string, VmChannels>();
  /** Every qemu-ga poller's rounds run from this one timer wheel. */
  private readonly pollSlots: PollSlots;
  private readonly watcher: ChannelsDirWatcher;
  private warnedNoLibvirt = false;
  private readonly qga: QgaRoutePolicy;
  private readonly toOpen: QueuedChannel[] = [];
  private readonly pollOpts: QgaPollerOptions;
  /** Opens a queued channel (one function for all). */
  private readonly opener = (s: ChannelSocket, guard: InputGuard, initial: boolean): OpenChannel =>
    this.open(s, guard, initial);
  private opening: NodeJS.Immediate | null = null;
  private queueEmptied: (() => void)[] = [];
  /** True while the first full listing is reported. */
  private initialListing = false;
  /** VMs of the first listing whose agent status has not changed yet: a first 'responsive' is routine. */
  private readonly quietStatus = new Set<string>();

  constructor(private readonly opts: GuestChannelsOptions) {
    this.qga = opts.qga ?? DIRECT_QGA;
    this.pollSlots = new PollSlots(slotWidthFor(opts.qgaPollIntervalMs));
    this.pollOpts = { intervalMs: opts.qgaPollIntervalMs, timeoutMs: opts.qgaTimeoutMs, slots: this.pollSlots };
    this.qga.onRedecide(() => this.redecideQga());
    this.watcher = new ChannelsDirWatcher(opts.dir, this, opts.log);
    // One line per agent state change (SPEC section 6), never per message.
    opts.registry.onChange((ch) => {
      if (!ch.changed.includes('guestAgentStatus')) return;
      const routine = this.quietStatus.delete(ch.vmId) && ch.stats.guestAgentStatus === 'responsive';
      opts.log[routine ? 'debug' : 'info'](
        { vmId: ch.vmId, guestAgentStatus: ch.stats.guestAgentStatus },
        'guest agent status changed',
      );
    });
  }

  /** Resolves once every socket present is registered (listed); connections open after, in batches. */
  async start(): Promise<void> {
    this.initialListing = true;
    try {
      await this.watcher.start();
    } finally {
      this.initialListing = false;
    }
    let channels = 0;
    for (const vm of this.vms.values()) channels += vm.open.size;
    if (channels === 0) return; // nothing to sum up (a missing or unreadable directory was warned)
    this.opts.log.info(
      { dir: this.opts.dir, vms: this.vms.size, channels },
      `found ${channels} guest channel socket${channels === 1 ? '' : 's'} of ${this.vms.size} VM${this.vms.size === 1 ? '' : 's'}`,
    );
  }

  /** Resolves once every connection queued so far has been opened (or the channels stopped). */
  opened(): Promise<void> {
    if (!this.opening) return Promise.resolve();
    return new Promise((resolve) => this.queueEmptied.push(resolve));
  }

  stop(): void {
    if (this.opening) clearImmediate(this.opening);
    this.opening = null;
    this.toOpen.length = 0;
    for (const resolve of this.queueEmptied.splice(0)) resolve();
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
    const initial = this.initialListing;
    this.opts.log[initial ? 'debug' : 'info']({ vmId: s.vmId, channel: s.channel }, 'guest channel appeared');
    if (initial) this.quietStatus.add(s.vmId);
    this.opts.registry.channelAdded(s.vmId, s.channel);
    vm.open.set(s.channel, this.queued(s, vm.guard, initial));
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
      this.quietStatus.delete(s.vmId);
    }
  }

  replaced(s: ChannelSocket): void {
    const open = this.vms.get(s.vmId)?.open.get(s.channel);
    if (open?.socket.path === s.path) open.reconnectNow();
  }

  /** Re-decides how every VM's qemu-ga is reached (e.g. libvirtd appeared or went away). */
  redecideQga(): void {
    for (const vm of this.vms.values()) vm.open.get(QGA_CHANNEL)?.reroute();
  }

  /** The channel's connection is opened from the queue, a batch per turn of the event loop. */
  private queued(s: ChannelSocket, guard: InputGuard, initial: boolean): QueuedChannel {
    const ch = new QueuedChannel(s, guard, initial, this.opener);
    this.toOpen.push(ch);
    this.opening ??= setImmediate(() => this.openBatch());
    return ch;
  }

  private openBatch(): void {
    this.opening = null;
    for (const ch of this.toOpen.splice(0, OPEN_BATCH)) ch.open();
    if (this.toOpen.length) this.opening = setImmediate(() => this.openBatch());
    else for (const resolve of this.queueEmptied.splice(0)) resolve();
  }

  /** `initial`: found by the first listing, so its first connect is logged at debug. */
  private open(s: ChannelSocket, guard: InputGuard, initial: boolean): OpenChannel {
    const { registry, log } = this.opts;
    if (channelProtocol(s.channel) === 'ovirt') {
      const handler = new OvirtChannelHandler(s.vmId, s.channel, registry, guard, this.opts.agentSilenceTimeoutMs);
      return new OvirtChannel(s, this.connect(s, handler, guard, initial), handler);
    }
    const qga = new QgaChannelOpener(s, guard, initial, this);
    if (this.qga.mode === 'auto') return new RoutedQga(s, this.qga, qga, log);
    const other = this.qga.mode === 'direct' ? null : qga.viaOther();
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
    return qga.direct();
  }

  /** A poller for a VM's qemu-ga (its results go to the registry). */
  poller(link: QgaLink, s: ChannelSocket, guard: InputGuard): QgaPoller {
    return new QgaPoller(link, new RegistrySink(this.opts.registry, s, guard), this.pollOpts);
  }

  /** A link to a VM's qemu-ga over its socket (its timeouts wait on the pollers' wheel). */
  socketLink(s: ChannelSocket, guard: InputGuard): QgaSocketLink {
    return new QgaSocketLink(s.channel, guard, this.pollSlots);
  }

  /** A link to a VM's qemu-ga other than its socket (libvirt), or null. */
  otherLink(s: ChannelSocket, guard: InputGuard): QgaLink | null {
    return this.qga.linkFor(s.vmId, (i) => guard.note(s.channel, i));
  }

  connect(s: ChannelSocket, handler: ChannelHandler, guard: InputGuard, initial: boolean): ChannelConnection {
    const conn = new ChannelConnection({
      path: s.path,
      handler,
      log: this.opts.log,
      fields: { vmId: s.vmId, channel: s.channel },
      bytes: guard.budget.bytes,
      firstConnectLevel: initial ? 'debug' : 'info',
    });
    conn.start();
    return conn;
  }
}

// Per channel, small objects rather than closures: with a thousand VMs, the closures that tied a
// channel's parts together, and the contexts they kept, were ~0.8 KiB per VM.

/** Where a qemu-ga poller's results go. */
class RegistrySink implements QgaSink {
  constructor(
    private readonly registry: VmRegistry,
    private readonly s: ChannelSocket,
    private readonly guard: InputGuard,
  ) {}
  report(r: GuestReport): void {
    this.registry.report(this.s.vmId, this.s.channel, r);
  }
  status(st: 'responsive' | 'unresponsive'): void {
    this.registry.setAgentStatus(this.s.vmId, this.s.channel, st);
  }
  issues(i: IssueCounts, detail?: Record<string, unknown>): void {
    this.guard.note(this.s.channel, i, detail);
  }
}

/** A channel whose connection may still wait in the open queue. */
class QueuedChannel implements OpenChannel {
  private current: OpenChannel | null = null;
  private stopped = false;
  constructor(
    readonly socket: ChannelSocket,
    private readonly guard: InputGuard,
    private initial: boolean,
    private readonly opener: (s: ChannelSocket, guard: InputGuard, initial: boolean) => OpenChannel,
  ) {}
  /** Called from the queue. */
  open(): void {
    if (!this.stopped) this.current = this.opener(this.socket, this.guard, this.initial);
  }
  stop(): void {
    this.stopped = true;
    this.current?.stop();
  }
  reconnectNow(): void {
    this.current?.reconnectNow(); // still queued: it connects to the new socket anyway
  }
  reroute(): void {
    if (!this.current) return; // still queued: decided when it opens
    if (this.current.reroute) this.current.reroute();
    else {
      this.current.stop();
      this.initial = false;
      this.open();
    }
  }
}

class OvirtChannel implements OpenChannel {
  constructor(
    readonly socket: ChannelSocket,
    private readonly conn: ChannelConnection,
    private readonly handler: OvirtChannelHandler,
  ) {}
  stop(): void {
    this.conn.stop();
    this.handler.stop();
  }
  reconnectNow(): void {
    this.conn.reconnectNow();
  }
}

/** qemu-ga over its channel socket. */
class DirectQga implements OpenChannel {
  constructor(
    readonly socket: ChannelSocket,
    private readonly poller: QgaPoller,
    private readonly conn: ChannelConnection,
    private readonly link: QgaSocketLink,
  ) {}
  stop(): void {
    this.poller.stop();
    this.conn.stop();
    this.link.stop();
  }
  reconnectNow(): void {
    this.conn.reconnectNow();
  }
}

/** qemu-ga over another link (libvirt's agent-command call). */
class LinkedQga implements OpenChannel {
  constructor(
    readonly socket: ChannelSocket,
    private readonly poller: QgaPoller,
  ) {}
  stop(): void {
    this.poller.stop();
  }
  reconnectNow(): void {
    this.poller.linkReset();
  }
}

/** Opens one VM's qemu-ga channel either way. */
class QgaChannelOpener {
  constructor(
    readonly socket: ChannelSocket,
    private readonly guard: InputGuard,
    private readonly initial: boolean,
    private readonly channels: GuestChannels,
  ) {}
  viaOther(): OpenChannel | null {
    const other = this.channels.otherLink(this.socket, this.guard);
    if (!other) return null;
    const poller = this.channels.poller(other, this.socket, this.guard);
    poller.start();
    return new LinkedQga(this.socket, poller);
  }
  direct(): OpenChannel {
    const s = this.socket;
    const link = this.channels.socketLink(s, this.guard);
    const poller = this.channels.poller(link, s, this.guard);
    link.onLinkChange = () => poller.linkReset();
    const conn = this.channels.connect(s, link, this.guard, this.initial);
    poller.start();
    return new DirectQga(s, poller, conn, link);
  }
}

/**
 * `auto`: nothing touches the socket until the route is decided (a direct connection to a
 * libvirt domain's socket would take its agent away from libvirtd); decisions run one at a time.
 */
class RoutedQga implements OpenChannel {
  private current: OpenChannel | null = null;
  private route: 'libvirt' | 'direct' | null = null;
  private stopped = false;
  private chain = Promise.resolve();
  constructor(
    readonly socket: ChannelSocket,
    private readonly policy: QgaRoutePolicy,
    private readonly qga: QgaChannelOpener,
    private readonly log: Logger,
  ) {
    this.reroute();
  }
  reroute(): void {
    this.chain = this.chain.then(() => this.decide());
  }
  private async decide(): Promise<void> {
    const libvirt = await this.policy.useLibvirt(this.socket.vmId).catch(() => false);
    if (this.stopped) return;
    const next = libvirt ? 'libvirt' : 'direct';
    if (next === this.route) {
      // Through libvirt: poll now (libvirtd may just be back). A direct link is left alone.
      if (this.route === 'libvirt') this.current?.reconnectNow();
      return;
    }
    this.current?.stop();
    this.current = libvirt ? this.qga.viaOther() : this.qga.direct();
    this.route = next;
    this.log.info({ vmId: this.socket.vmId, channel: this.socket.channel, route: next }, 'qemu-ga route');
  }
  stop(): void {
    this.stopped = true;
    this.current?.stop();
  }
  reconnectNow(): void {
    this.current?.reconnectNow();
  }
}
