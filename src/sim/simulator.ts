// The guest simulator: listens on `<vmId>.<channel>` UNIX sockets in a directory, as QEMU does
// for a VM's virtio-serial channels, and plays the guest agent behind each one: the oVirt agent
// (pushes heartbeats every 5 s, network data every 120 s and on change, its full set on
// `refresh`) or qemu-ga (answers commands). One process plays a thousand guests cheaply: all
// periodic work runs from ONE timer that visits the guests whose deadline passed, and reply
// text is built only when asked for.
import net from 'node:net';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { changeAddress, type SimAgent, type SimGuest } from './guest.js';
import { fullSet, heartbeatLine, networkInterfacesLine, parseHostLine, OVIRT_MAX_API_VERSION } from './ovirtAgent.js';
import { QgaRequestReader } from './qgaReader.js';
import { answerQga, qgaParseError, type QgaReply } from './qgaAgent.js';

export interface SimulatorOptions {
  dir: string;
  /** oVirt agent heartbeat period (the real agent: 5 s). */
  heartbeatMs?: number;
  /** oVirt agent network-interfaces period (the real agent: 120 s). */
  networkMs?: number;
  /** Granularity of the shared timer. */
  tickMs?: number;
}

export interface SimCounters {
  connections: number;
  ovirtMessages: number;
  qgaRequests: number;
  addressChanges: number;
}

/** A line from the host longer than this is dropped, as a bounded reader would. */
const MAX_HOST_LINE = 1 << 20;
/** Output queued for a host that does not read; past it, periodic messages are skipped (a real port blocks). */
const MAX_UNSENT = 1 << 20;
const SYNC_BYTE = Buffer.from([0xff]);

/** One listening channel socket; like a QEMU chardev it serves one client at a time, later ones wait. */
class ChannelEndpoint {
  readonly server: net.Server;
  active: net.Socket | null = null;
  private readonly waiting: net.Socket[] = [];

  constructor(
    readonly path: string,
    private readonly onClient: (sock: net.Socket) => void,
  ) {
    this.server = net.createServer((sock) => {
      sock.on('error', () => {});
      sock.on('close', () => this.onClose(sock));
      if (this.active) {
        sock.pause(); // connected, never answered until the first client leaves
        this.waiting.push(sock);
      } else this.serve(sock);
    });
  }

  private serve(sock: net.Socket): void {
    this.active = sock;
    sock.resume();
    this.onClient(sock);
  }

  private onClose(sock: net.Socket): void {
    if (sock !== this.active) {
      const i = this.waiting.indexOf(sock);
      if (i !== -1) this.waiting.splice(i, 1);
      return;
    }
    this.active = null;
    const next = this.waiting.shift();
    if (next) this.serve(next);
  }

  async listen(): Promise<void> {
    await rm(this.path, { force: true });
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.path, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
  }

  async close(): Promise<void> {
    for (const s of [this.active, ...this.waiting]) s?.destroy();
    this.waiting.length = 0;
    this.active = null;
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await rm(this.path, { force: true });
  }

  /** Writes to the connected host, unless it has stopped reading. */
  send(data: string | Buffer, essential: boolean): boolean {
    const s = this.active;
    if (!s || s.destroyed) return false;
    if (!essential && s.writableLength > MAX_UNSENT) return false;
    s.write(data);
    return true;
  }
}

/** The next deadline of a periodic job; a late one (a stalled process) skips rather than bursts. */
function nextDeadline(previous: number, period: number, now: number): number {
  const next = previous + period;
  return next > now ? next : now + period;
}

interface GuestRuntime {
  guest: SimGuest;
  ovirt: ChannelEndpoint | null;
  qemu: ChannelEndpoint | null;
  /** API version agreed with the host on the oVirt channel (0 until `refresh`). */
  apiVersion: number;
  nextHeartbeat: number;
  nextNetwork: number;
  nextChange: number;
  generation: number;
  /** While set, the agent is not running (restarting, booting): it reads nothing and sends nothing. */
  downUntil: number;
  qgaReader: QgaRequestReader | null;
}

export class GuestSimulator {
  readonly dir: string;
  readonly counters: SimCounters = { connections: 0, ovirtMessages: 0, qgaRequests: 0, addressChanges: 0 };
  private readonly heartbeatMs: number;
  private readonly networkMs: number;
  private readonly guests = new Map<string, GuestRuntime>();
  private readonly started = Date.now();
  private timer: NodeJS.Timeout;
  private seq = 0;

  constructor(opts: SimulatorOptions) {
    this.dir = opts.dir;
    this.heartbeatMs = opts.heartbeatMs ?? 5000;
    this.networkMs = opts.networkMs ?? 120_000;
    this.timer = setInterval(() => this.tick(), opts.tickMs ?? 250);
    this.timer.unref();
  }

  /** Creates the guest's channel sockets; resolves when they accept connections. */
  async add(guest: SimGuest): Promise<void> {
    if (this.guests.has(guest.vmId)) throw new Error(`guest ${guest.vmId} already simulated`);
    // Spread the periodic work of many guests evenly over the period (golden-ratio phases).
    const phase = (this.seq++ * 0.6180339887) % 1;
    const now = Date.now();
    const rt: GuestRuntime = {
      guest,
      ovirt: null,
      qemu: null,
      apiVersion: 0,
      nextHeartbeat: now + phase * this.heartbeatMs,
      nextNetwork: now + phase * this.networkMs,
      nextChange: guest.changeEveryMs ? now + phase * guest.changeEveryMs + guest.changeEveryMs : Infinity,
      generation: 0,
      downUntil: 0,
      qgaReader: null,
    };
    this.guests.set(guest.vmId, rt);
    const listening: Promise<void>[] = [];
    for (const agent of guest.agents) {
      const channel = agent === 'qemu' ? 'org.qemu.guest_agent.0' : (guest.ovirtChannel ?? 'ovirt-guest-agent.0');
      const ep = new ChannelEndpoint(path.join(this.dir, `${guest.vmId}.${channel}`), (sock) =>
        this.onClient(rt, agent, sock),
      );
      if (agent === 'qemu') rt.qemu = ep;
      else rt.ovirt = ep;
      listening.push(ep.listen());
    }
    await Promise.all(listening);
  }

  /** Adds many guests, a bounded number of sockets at a time. */
  async addAll(guests: readonly SimGuest[], concurrency = 64): Promise<void> {
    for (let i = 0; i < guests.length; i += concurrency)
      await Promise.all(guests.slice(i, i + concurrency).map((g) => this.add(g)));
  }

  /** The VM goes away: its connections close and its sockets disappear, as when QEMU exits. */
  async remove(vmId: string): Promise<void> {
    const rt = this.guests.get(vmId);
    if (!rt) return;
    this.guests.delete(vmId);
    await Promise.all([rt.ovirt?.close(), rt.qemu?.close()]);
  }

  /**
   * The agent inside the guest restarts: for `downMs` it reads and answers nothing (the channel
   * stays connected, as a virtio-serial port does); then the oVirt agent sends its full set,
   * as at start-up, and qemu-ga answers again with a fresh parser.
   */
  restartAgent(vmId: string, downMs = 1000): void {
    const rt = this.guests.get(vmId);
    if (!rt) throw new Error(`no simulated guest ${vmId}`);
    rt.downUntil = Date.now() + downMs;
    rt.apiVersion = 0;
    rt.qgaReader = rt.qgaReader ? new QgaRequestReader() : null;
  }

  /** Changes one address now (the oVirt agent reports at once; qemu-ga at the next poll). Returns it. */
  changeAddress(vmId: string): string | null {
    const rt = this.guests.get(vmId);
    if (!rt) throw new Error(`no simulated guest ${vmId}`);
    return this.applyChange(rt);
  }

  guest(vmId: string): SimGuest | undefined {
    return this.guests.get(vmId)?.guest;
  }

  vmIds(): string[] {
    return [...this.guests.keys()];
  }

  /** Whether a host client is being served on the guest's channel for `agent`. */
  connected(vmId: string, agent: SimAgent): boolean {
    const rt = this.guests.get(vmId);
    const ep = agent === 'qemu' ? rt?.qemu : rt?.ovirt;
    return !!ep?.active;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await Promise.all([...this.guests.keys()].map((id) => this.remove(id)));
  }

  private isDown(rt: GuestRuntime): boolean {
    return rt.downUntil !== 0;
  }

  private applyChange(rt: GuestRuntime): string | null {
    rt.generation++;
    this.counters.addressChanges++;
    const address = changeAddress(rt.guest);
    if (!this.isDown(rt)) this.sendOvirt(rt, networkInterfacesLine(rt.guest), false);
    return address;
  }

  private sendOvirt(rt: GuestRuntime, text: string, essential: boolean): void {
    if (rt.ovirt?.send(text, essential)) this.counters.ovirtMessages++;
  }

  private onClient(rt: GuestRuntime, agent: SimAgent, sock: net.Socket): void {
    this.counters.connections++;
    if (agent === 'qemu') {
      rt.qgaReader = new QgaRequestReader();
      sock.on('data', (chunk: Buffer) => this.onQgaData(rt, sock, chunk));
      return;
    }
    let pending = '';
    let dropping = false;
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => {
      if (this.isDown(rt)) return;
      pending += chunk;
      let nl: number;
      while ((nl = pending.indexOf('\n')) !== -1) {
        const text = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        if (dropping) dropping = false;
        else this.onHostLine(rt, text);
      }
      if (pending.length > MAX_HOST_LINE) {
        pending = '';
        dropping = true;
      }
    });
  }

  private onHostLine(rt: GuestRuntime, text: string): void {
    const cmd = parseHostLine(text);
    if (cmd?.name !== 'refresh' || !('apiVersion' in cmd)) return;
    rt.apiVersion = Math.min(cmd.apiVersion, OVIRT_MAX_API_VERSION);
    this.sendOvirt(rt, fullSet(rt.guest), true);
  }

  private onQgaData(rt: GuestRuntime, sock: net.Socket, chunk: Buffer): void {
    if (this.isDown(rt) || !rt.qgaReader) return;
    const counters = Math.floor((Date.now() - this.started) / 1000);
    for (const input of rt.qgaReader.push(chunk)) {
      this.counters.qgaRequests++;
      const reply: QgaReply =
        input.kind === 'request' ? answerQga(input.value, rt.guest, counters) : qgaParseError(input.desc);
      if (reply.delimited) sock.write(SYNC_BYTE);
      sock.write(reply.line);
    }
  }

  private tick(): void {
    const now = Date.now();
    for (const rt of this.guests.values()) {
      if (rt.downUntil !== 0) {
        if (now < rt.downUntil) continue;
        rt.downUntil = 0;
        // The agent starts again: the oVirt agent announces everything, not yet knowing the host's version.
        if (rt.ovirt) this.sendOvirt(rt, fullSet(rt.guest) + heartbeatLine(0, 2048), true);
      }
      if (now >= rt.nextChange) {
        rt.nextChange = nextDeadline(rt.nextChange, rt.guest.changeEveryMs!, now);
        this.applyChange(rt);
      }
      if (!rt.ovirt) continue;
      if (now >= rt.nextHeartbeat) {
        rt.nextHeartbeat = nextDeadline(rt.nextHeartbeat, this.heartbeatMs, now);
        this.sendOvirt(rt, heartbeatLine(rt.apiVersion, 2048 - (rt.generation % 64)), false);
      }
      if (now >= rt.nextNetwork) {
        rt.nextNetwork = nextDeadline(rt.nextNetwork, this.networkMs, now);
        this.sendOvirt(rt, networkInterfacesLine(rt.guest), false);
      }
    }
  }
}
