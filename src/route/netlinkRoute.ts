// Route lookups over rtnetlink with the `netlink` package: one RTM_GETROUTE for the destination
// (as `ip route get` sends it, never a dump), then the output interface's name.
//
// Hazards of netlink 0.3.0 handled here:
// - Any receive-buffer overrun (the kernel sets ENOBUFS, libuv reports POLLERR) makes the addon
//   abort the whole process. So requests in flight per socket are bounded well below what the
//   buffer holds, and the buffer is enlarged. For the same reason no socket here joins a multicast
//   group: link notifications cannot be bounded, and a burst of them would kill the daemon.
// - A socket that errored is closed by the package; requests waiting on it never settle. We
//   reject them at once, retire the socket and open a new one on the next request.
import { readFileSync } from 'node:fs';
import type { RtNetlinkSocket, rt } from 'netlink';
import type { Route } from '../wire.js';
import { ConcurrencyLimit } from './concurrencyLimit.js';
import { formatAddress, type RouteTarget } from './ipLiteral.js';
import { LookupFailed, RouteRefused, UnknownZone, routeFields, routeTypeName } from './routeAnswer.js';

type NetlinkModule = typeof import('netlink');
export type RouteFields = Omit<Route, 'via'>;

export interface NetlinkRouteOptions {
  /** Requests in flight per socket. A route reply takes ~1.3 KiB of receive buffer, a link reply more. */
  maxInFlight?: number;
  timeoutMs?: number;
  /** SO_RCVBUF asked for (the kernel caps it at net.core.rmem_max, then doubles it). */
  recvBufferBytes?: number;
  /** Where interface names are checked against their index; must show the daemon's namespace. */
  sysfsNetDir?: string;
}

interface Channel {
  sock: RtNetlinkSocket;
  /** Rejects when the socket errors or closes, so requests waiting on it settle. */
  failed: Promise<never>;
}

const AF_INET = 2;
const AF_INET6 = 10;
const KERNEL_REFUSAL = /^Request rejected: (\w+)$/;

export class NetlinkRoute {
  private channel: Channel | null = null;
  private readonly limit: ConcurrencyLimit;
  private readonly timeoutMs: number;
  private readonly recvBufferBytes: number;
  private readonly sysfsNetDir: string;
  /** Interface names by index. Every hit is re-checked (see `deviceName`), so never stale. */
  private readonly names = new Map<number, string>();
  /** Whether sysfs shows our network namespace; decided once, against a link dump. */
  private sysfsIsOurs: Promise<boolean> | null = null;
  /** Sockets replaced after a failure, for logs and tests. */
  replacedSockets = 0;

  private constructor(
    private readonly nl: NetlinkModule,
    opts: NetlinkRouteOptions,
    private readonly onSocketFailure: (err: Error) => void,
  ) {
    this.limit = new ConcurrencyLimit(opts.maxInFlight ?? 32);
    this.timeoutMs = opts.timeoutMs ?? 2000;
    this.recvBufferBytes = opts.recvBufferBytes ?? 1 << 20;
    this.sysfsNetDir = opts.sysfsNetDir ?? '/sys/class/net';
  }

  /** Loads the native module and opens a socket; throws LookupFailed when either is impossible. */
  static async open(
    opts: NetlinkRouteOptions = {},
    onSocketFailure: (err: Error) => void = () => {},
  ): Promise<NetlinkRoute> {
    let nl: NetlinkModule;
    try {
      const mod = (await import('netlink')) as NetlinkModule & { default?: NetlinkModule };
      nl = mod.default ?? mod;
    } catch (err) {
      throw new LookupFailed(`the netlink module cannot be loaded: ${(err as Error).message}`);
    }
    const route = new NetlinkRoute(nl, opts, onSocketFailure);
    route.connect();
    return route;
  }

  get inFlight(): number {
    return this.limit.inFlight;
  }

  /** Throws RouteRefused (kernel answer), UnknownZone, or LookupFailed (use the fallback). */
  async lookup(target: RouteTarget): Promise<RouteFields> {
    const oif = target.zone === null ? undefined : await this.zoneIndex(target.zone);
    const family = target.family === 4 ? AF_INET : AF_INET6;
    const replies = await this.request((s) =>
      s.getRoute(
        { family, dstLen: target.family === 4 ? 32 : 128, flags: { lookupTable: true } },
        { dst: Buffer.from(target.bytes), ...(oif === undefined ? {} : { oif }) },
        { timeout: this.timeoutMs },
      ),
    );
    const reply = replies[0];
    if (!reply || reply.attrs.oif === undefined) throw new Error('route reply without an output interface');
    return this.toFields(reply, await this.deviceName(reply.attrs.oif));
  }

  close(): void {
    const ch = this.channel;
    this.channel = null;
    if (ch) closeQuietly(ch.sock);
  }

  private toFields(reply: rt.RouteMessage, device: string): RouteFields {
    const { attrs, data } = reply;
    return routeFields({
      device,
      gateway: attrs.gateway ? formatAddress(attrs.gateway) : undefined,
      source: attrs.prefsrc ? formatAddress(attrs.prefsrc) : undefined,
      // RTA_TABLE carries the full 32-bit id; rtm_table is clamped to 252 above 255.
      table: attrs.table ?? data.table ?? 0,
      type: routeTypeName(data.type),
    });
  }

  private async zoneIndex(zone: string): Promise<number> {
    try {
      const links = await this.request((s) => s.getLink({}, { ifname: zone }, { timeout: this.timeoutMs }));
      const index = links[0]?.data.index;
      if (index === undefined) throw new UnknownZone(zone);
      return index;
    } catch (err) {
      if (err instanceof RouteRefused && err.errno === 'ENODEV') throw new UnknownZone(zone);
      throw err;
    }
  }

  /**
   * The name of interface `index`. A cached name is used only if sysfs still shows that name
   * with that index (renamed or removed interfaces fail the check); otherwise RTM_GETLINK asks.
   * The check runs after the route reply arrived, so any rename finished before the lookup is seen.
   */
  private async deviceName(index: number): Promise<string> {
    const cached = this.names.get(index);
    if (cached !== undefined && (await this.sysfsShowsOurNamespace()) && this.sysfsIndex(cached) === index)
      return cached;
    const links = await this.request((s) => s.getLink({ index }, {}, { timeout: this.timeoutMs }));
    const name = links[0]?.attrs.ifname;
    if (name === undefined) throw new Error(`no name for interface ${index}`);
    this.names.set(index, name);
    return name;
  }

  private sysfsIndex(name: string): number | null {
    try {
      return Number(readFileSync(`${this.sysfsNetDir}/${name}/ifindex`, 'latin1'));
    } catch {
      return null;
    }
  }

  /** sysfs may belong to another namespace (entered without remounting /sys): then never trust it. */
  private sysfsShowsOurNamespace(): Promise<boolean> {
    this.sysfsIsOurs ??= this.request((s) => s.getLinks({}, {}, { timeout: this.timeoutMs })).then(
      (links) =>
        links.length > 0 &&
        links.every((l) => l.attrs.ifname !== undefined && this.sysfsIndex(l.attrs.ifname) === l.data.index),
      () => {
        this.sysfsIsOurs = null; // decide again on a later lookup
        return false;
      },
    );
    return this.sysfsIsOurs;
  }

  /** Runs one request under the in-flight bound; sorts kernel answers from socket failures. */
  private request<T>(send: (s: RtNetlinkSocket) => Promise<T>): Promise<T> {
    return this.limit.run(async () => {
      const ch = this.connect();
      try {
        return await Promise.race([send(ch.sock), ch.failed]);
      } catch (err) {
        const refused = KERNEL_REFUSAL.exec(err instanceof Error ? err.message : '');
        if (refused) throw new RouteRefused(refused[1]!);
        this.retire(ch, err as Error);
        throw new LookupFailed(`netlink request failed: ${(err as Error).message}`);
      }
    });
  }

  private connect(): Channel {
    if (this.channel) return this.channel;
    let sock: RtNetlinkSocket;
    try {
      sock = this.nl.createRtNetlink({ recvBufferSize: this.recvBufferBytes, sendBufferSize: 0 });
    } catch (err) {
      throw new LookupFailed(`cannot open a netlink socket: ${(err as Error).message}`);
    }
    let fail: (err: Error) => void = () => {};
    const failed = new Promise<never>((_resolve, reject) => (fail = reject));
    failed.catch(() => {}); // observed by the races in `request`
    sock.socket.on('error', (err) => fail(err));
    sock.socket.on('close', () => fail(new Error('netlink socket closed')));
    this.channel = { sock, failed };
    return this.channel;
  }

  private retire(ch: Channel, err: Error): void {
    if (this.channel !== ch) return; // already replaced
    this.channel = null;
    this.replacedSockets++;
    closeQuietly(ch.sock);
    this.onSocketFailure(err);
  }
}

function closeQuietly(sock: RtNetlinkSocket): void {
  try {
    sock.socket.close();
  } catch {
    /* already closed by the package */
  }
}
