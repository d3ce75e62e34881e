// A long-lived client of libvirtd speaking its own RPC protocol over the local UNIX socket, as
// libvirt's remote driver does: no process per call, many calls in flight matched by serial, a
// few connections so that slow agents on some VMs do not hold up the rest (libvirtd answers at
// most a handful of requests per client at once), and reconnection with backoff when libvirtd
// restarts. Only the calls the daemon needs: domain lookup by UUID, the QEMU agent command, the
// active domains with their state, XML and interface counters (one by one or in bulk), and
// domain events (lifecycle, device added/removed), registered again on every reconnection.
import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Logger } from 'pino';
import {
  EventId,
  LIBVIRT,
  ListFlags,
  MessageFramer,
  VirErr,
  decodeAgentCommand,
  domainStatsRecords,
  decodeAuthList,
  decodeCallbackId,
  decodeDomain,
  decodeDomainEvent,
  decodeDomainList,
  decodeDomainState,
  decodeError,
  decodeInterfaceStats,
  decodeNonNullString,
  encodeAgentCommand,
  encodeCall,
  encodeConnectOpen,
  encodeDomainFlags,
  encodeEventCallbackRegister,
  encodeGetAllDomainStats,
  encodeInterfaceStats,
  encodeListAllDomains,
  encodeLookupByUuid,
  encodeMessage,
  uuidText,
  type DomainEvent,
  type DomainRef,
  type DomainStateInfo,
  type DomainStatsRecord,
  type InterfaceCounters,
  type LibvirtErrorInfo,
} from './wire.js';

/** libvirtd answered the call with an error. */
export class LibvirtCallError extends Error {
  override name = 'LibvirtCallError';
  constructor(readonly info: LibvirtErrorInfo) {
    super(info.message);
  }
  get code(): number {
    return this.info.code;
  }
}

/** libvirtd could not be asked: not running, restarting, or the call got no reply in time. */
export class LibvirtUnavailableError extends Error {
  override name = 'LibvirtUnavailableError';
  constructor(
    message: string,
    readonly timedOut = false,
    /** The socket error's code (ENOENT, EACCES, ...) when connecting failed. */
    readonly errno?: string,
  ) {
    super(message);
  }
}

export interface LibvirtTarget {
  /** The UNIX socket of libvirtd (or virtqemud). */
  socketPath: string;
  /** The URI libvirtd is asked to open on it (transport and socket parameters removed). */
  name: string;
}

/**
 * Where a local libvirt URI is served. Remote transports (ssh, tls, tcp) are refused: this
 * daemon runs on the hypervisor host itself, next to libvirtd.
 */
export function libvirtTarget(uri: string, env: NodeJS.ProcessEnv = process.env): LibvirtTarget {
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    throw new Error(`--libvirt-uri: not a URI: '${uri}'`);
  }
  const [driver, transport] = u.protocol.replace(/:$/, '').split('+');
  if (!driver || (transport !== undefined && transport !== 'unix')) {
    throw new Error(
      `--libvirt-uri: only local URIs (qemu:///system, qemu+unix:///system?socket=PATH) are supported, got '${uri}'`,
    );
  }
  const kind = u.pathname.replace(/^\/+/, '') || 'system';
  const name = `${driver}:///${kind}`;
  const socket = u.searchParams.get('socket');
  if (socket) return { socketPath: socket, name };
  const dir =
    kind === 'session'
      ? path.join(env.XDG_RUNTIME_DIR ?? `/run/user/${process.getuid?.() ?? 0}`, 'libvirt')
      : '/run/libvirt';
  // The monolithic daemon's socket, else the modular QEMU daemon's (virtqemud).
  const monolithic = path.join(dir, 'libvirt-sock');
  const modular = path.join(dir, `virt${driver}d-sock`);
  return { socketPath: existsSync(monolithic) || !existsSync(modular) ? monolithic : modular, name };
}

interface PendingCall {
  resolve: (body: Buffer) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/** One RPC connection: connect, authenticate, open, then calls matched by serial. */
class LibvirtConnection {
  private sock: net.Socket | null = null;
  private readonly framer = new MessageFramer();
  private readonly pending = new Map<number, PendingCall>();
  private serial = 1;
  ready = false;

  constructor(
    private readonly target: LibvirtTarget,
    private readonly onClose: (conn: LibvirtConnection, why: string) => void,
    /** A domain event libvirtd sent (only on the connection that registered the callbacks). */
    private readonly onEvent: (ev: DomainEvent) => void = () => {},
  ) {}

  get inFlight(): number {
    return this.pending.size;
  }

  async open(timeoutMs: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const sock = net.connect(this.target.socketPath);
      const fail = (err: Error): void => {
        sock.destroy();
        const errno = (err as NodeJS.ErrnoException).code;
        reject(
          new LibvirtUnavailableError(
            `cannot connect to ${this.target.socketPath}: ${errno ?? err.message}`,
            false,
            errno,
          ),
        );
      };
      sock.once('error', fail);
      sock.once('connect', () => {
        sock.off('error', fail);
        this.sock = sock;
        sock.on('data', (chunk: Buffer) => this.onData(chunk));
        sock.on('error', () => undefined); // 'close' follows and says it
        sock.on('close', () => this.closed('libvirtd closed the connection'));
        resolve();
      });
    });
    // The remote driver's order: which auth the socket wants, polkit if asked, then open.
    const auth = decodeAuthList(
      await this.call(LIBVIRT.remoteProgram, LIBVIRT.proc.authList, Buffer.alloc(0), timeoutMs),
    );
    if (auth.length > 0 && !auth.includes(LIBVIRT.auth.none)) {
      if (!auth.includes(LIBVIRT.auth.polkit))
        throw new LibvirtUnavailableError(
          `libvirtd asks for an authentication this daemon does not do (${auth.join(',')})`,
        );
      await this.call(LIBVIRT.remoteProgram, LIBVIRT.proc.authPolkit, Buffer.alloc(0), timeoutMs);
    }
    await this.call(LIBVIRT.remoteProgram, LIBVIRT.proc.connectOpen, encodeConnectOpen(this.target.name), timeoutMs);
    this.ready = true;
  }

  call(prog: number, proc: number, body: Buffer, timeoutMs: number): Promise<Buffer> {
    const sock = this.sock;
    if (!sock || sock.destroyed) return Promise.reject(new LibvirtUnavailableError('not connected to libvirtd'));
    const serial = this.serial;
    this.serial = (this.serial + 1) >>> 0 || 1;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        // A late reply finds no pending call and is dropped.
        this.pending.delete(serial);
        reject(new LibvirtUnavailableError(`libvirtd did not answer within ${timeoutMs} ms`, true));
      }, timeoutMs);
      this.pending.set(serial, { resolve, reject, timer });
      sock.write(encodeCall(prog, proc, serial, body));
    });
  }

  private onData(chunk: Buffer): void {
    let messages;
    try {
      messages = this.framer.push(chunk);
    } catch (err) {
      this.sock?.destroy();
      this.closed(`protocol error: ${(err as Error).message}`);
      return;
    }
    for (const m of messages) {
      const h = m.header;
      if (h.prog === LIBVIRT.keepaliveProgram) {
        // libvirtd only pings clients that asked for keepalive; answer anyway, it costs nothing.
        if (h.proc === LIBVIRT.proc.ping) {
          this.sock?.write(
            encodeMessage({
              prog: LIBVIRT.keepaliveProgram,
              vers: 1,
              proc: LIBVIRT.proc.pong,
              type: LIBVIRT.type.message,
              serial: 0,
              status: LIBVIRT.status.ok,
            }),
          );
        }
        continue;
      }
      if (h.type === LIBVIRT.type.message && h.prog === LIBVIRT.remoteProgram) {
        let ev: DomainEvent | null;
        try {
          ev = decodeDomainEvent(h.proc, m.body);
        } catch {
          ev = null; // an event that does not decode is dropped; the next resync corrects
        }
        if (ev) this.onEvent(ev);
        continue;
      }
      if (h.type !== LIBVIRT.type.reply) continue;
      const p = this.pending.get(h.serial);
      if (!p) continue;
      this.pending.delete(h.serial);
      clearTimeout(p.timer);
      if (h.status === LIBVIRT.status.ok) p.resolve(m.body);
      else {
        let info: LibvirtErrorInfo;
        try {
          info = decodeError(m.body);
        } catch {
          info = { code: -1, domain: -1, message: 'undecodable libvirt error' };
        }
        p.reject(new LibvirtCallError(info));
      }
    }
  }

  private closed(why: string): void {
    if (!this.sock) return;
    this.sock = null;
    this.ready = false;
    this.framer.reset();
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new LibvirtUnavailableError(why));
    }
    this.pending.clear();
    this.onClose(this, why);
  }

  close(): void {
    const s = this.sock;
    if (!s) return;
    s.destroy();
    this.closed('closed by the daemon');
  }
}

export interface LibvirtClientOptions {
  uri: string;
  log: Logger;
  /** Connections kept open; libvirtd serves 5 requests per client at once by default. */
  connections?: number;
  /** Time allowed for libvirtd itself (connect, lookup) on top of any agent timeout. */
  callTimeoutMs?: number;
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /** Register domain events (default true; a client that only calls needs none). */
  events?: boolean;
  /** Log level of "libvirt not reachable" (info where running without libvirt is normal). */
  downLevel?: 'warn' | 'info';
}

export type LibvirtState = 'up' | 'down';

/** Socket errors that mean "libvirtd is there but will not have us" (worth an operator's look). */
const REFUSED_ERRNOS = new Set(['EACCES', 'EPERM']);

/**
 * The pool of connections and what the daemon asks of libvirt. Emits 'state' ('up' | 'down')
 * when libvirtd becomes reachable or stops being so.
 */
export class LibvirtClient extends EventEmitter {
  readonly target: LibvirtTarget;
  private readonly conns: LibvirtConnection[] = [];
  private readonly domains = new Map<string, DomainRef>();
  private readonly log: Logger;
  private readonly size: number;
  private readonly callTimeoutMs: number;
  private readonly reconnectMinMs: number;
  private readonly reconnectMaxMs: number;
  private backoffMs: number;
  private readonly downLevel: 'warn' | 'info';
  private readonly wantEvents: boolean;
  private timer: NodeJS.Timeout | null = null;
  private connecting: Promise<void> | null = null;
  private stopped = true;
  state: LibvirtState = 'down';
  private lastDownReason = '';
  /** Whether domain events were registered on the current connections. */
  events = false;

  constructor(opts: LibvirtClientOptions) {
    super();
    this.target = libvirtTarget(opts.uri);
    this.log = opts.log;
    this.size = Math.max(1, opts.connections ?? 4);
    this.callTimeoutMs = opts.callTimeoutMs ?? 10_000;
    this.reconnectMinMs = opts.reconnectMinMs ?? 250;
    this.reconnectMaxMs = opts.reconnectMaxMs ?? 5_000;
    this.backoffMs = this.reconnectMinMs;
    this.downLevel = opts.downLevel ?? 'warn';
    this.wantEvents = opts.events ?? true;
  }

  /** Starts connecting in the background; resolves after the first attempt, whatever it gave. */
  start(): Promise<void> {
    this.stopped = false;
    return this.connect();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const c of this.conns.splice(0)) c.close();
    this.setState('down', 'stopped');
  }

  private connect(): Promise<void> {
    this.connecting ??= this.openAll().finally(() => (this.connecting = null));
    return this.connecting;
  }

  private async openAll(): Promise<void> {
    const fresh: LibvirtConnection[] = [];
    try {
      while (this.conns.length + fresh.length < this.size) {
        const first = this.conns.length + fresh.length === 0;
        const c = new LibvirtConnection(
          this.target,
          (conn, why) => this.lost(conn, why),
          first ? (ev) => this.emit('domainEvent', ev) : undefined,
        );
        fresh.push(c);
        await c.open(this.callTimeoutMs);
      }
      // Domain events come on the first connection: registered before 'up', so that whoever lists
      // the domains on 'up' misses no change made after the listing.
      this.events = this.wantEvents && (await this.registerEvents(fresh[0]));
    } catch (err) {
      for (const c of fresh) c.close();
      if (!this.stopped) {
        this.setState('down', (err as Error).message, err);
        this.retryLater();
      }
      return;
    }
    if (this.stopped) {
      for (const c of fresh) c.close();
      return;
    }
    this.conns.push(...fresh);
    this.backoffMs = this.reconnectMinMs;
    this.setState('up', `connected to ${this.target.socketPath}`);
  }

  private async registerEvents(conn: LibvirtConnection | undefined): Promise<boolean> {
    if (!conn) return false;
    try {
      for (const id of [EventId.lifecycle, EventId.deviceAdded, EventId.deviceRemoved]) {
        decodeCallbackId(
          await conn.call(
            LIBVIRT.remoteProgram,
            LIBVIRT.proc.connectDomainEventCallbackRegisterAny,
            encodeEventCallbackRegister(id),
            this.callTimeoutMs,
          ),
        );
      }
      return true;
    } catch (err) {
      if (err instanceof LibvirtUnavailableError) throw err;
      this.log.warn(
        { socket: this.target.socketPath, code: 'LIBVIRT_ERR_EVENTS', reason: (err as Error).message },
        'libvirt domain events not available; VM status is read on each reconnection only',
      );
      return false;
    }
  }

  private lost(conn: LibvirtConnection, why: string): void {
    const i = this.conns.indexOf(conn);
    if (i === -1) return; // never joined the pool (failed while opening)
    this.conns.splice(i, 1);
    // One connection gone means libvirtd is going away or restarting: start over with all.
    for (const c of this.conns.splice(0)) c.close();
    if (this.stopped) return;
    this.setState('down', why);
    this.retryLater();
  }

  private retryLater(): void {
    if (this.timer || this.stopped) return;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.reconnectMaxMs, this.backoffMs * 2);
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.connect();
    }, delay);
    this.timer.unref();
  }

  private setState(state: LibvirtState, reason: string, err?: unknown): void {
    if (state === this.state && (state === 'up' || reason === this.lastDownReason)) return;
    const changed = state !== this.state;
    const before = this.lastDownReason;
    this.state = state;
    this.lastDownReason = state === 'down' ? reason : '';
    if (state === 'up') {
      this.log.info(
        {
          socket: this.target.socketPath,
          uri: this.target.name,
          connections: this.conns.length,
          ...(before ? { after: before } : {}),
        },
        'libvirt connected',
      );
    } else if (!this.stopped) {
      // A socket that refuses us (permissions, polkit) is a misconfiguration, said once per cause
      // whatever the mode; libvirtd merely absent is normal for `auto` on a host without it.
      const errno = err instanceof LibvirtUnavailableError ? err.errno : undefined;
      const refused = (errno !== undefined && REFUSED_ERRNOS.has(errno)) || err instanceof LibvirtCallError;
      if (refused)
        this.log.warn(
          {
            socket: this.target.socketPath,
            code: 'LIBVIRT_ERR_ACCESS',
            errno: errno ?? `libvirt error ${(err as LibvirtCallError).code}`,
            reason,
          },
          'libvirt refuses this daemon; retrying',
        );
      else
        this.log[this.downLevel](
          { socket: this.target.socketPath, code: 'LIBVIRT_ERR_UNAVAILABLE', errno, reason },
          'libvirt not reachable; retrying',
        );
    }
    if (changed) this.emit('state', state);
  }

  /** The least busy open connection. */
  private pick(): LibvirtConnection {
    let best: LibvirtConnection | undefined;
    for (const c of this.conns) if (c.ready && (!best || c.inFlight < best.inFlight)) best = c;
    if (!best)
      throw new LibvirtUnavailableError(
        this.lastDownReason ? `libvirt not reachable: ${this.lastDownReason}` : 'libvirt not connected',
      );
    return best;
  }

  private async call(prog: number, proc: number, body: Buffer, timeoutMs: number): Promise<Buffer> {
    return this.pick().call(prog, proc, body, timeoutMs);
  }

  /** The domain with this UUID (cached; a NO_DOMAIN answer drops the cache entry). */
  async domain(uuid: string): Promise<DomainRef> {
    const known = this.domains.get(uuid);
    if (known) return known;
    const dom = decodeDomain(
      await this.call(
        LIBVIRT.remoteProgram,
        LIBVIRT.proc.domainLookupByUuid,
        encodeLookupByUuid(uuid),
        this.callTimeoutMs,
      ),
    );
    this.domains.set(uuid, dom);
    return dom;
  }

  /** Whether libvirtd is up and runs a domain with this UUID (false when it says no such domain). */
  async hasDomain(uuid: string): Promise<boolean> {
    try {
      await this.domain(uuid);
      return true;
    } catch (err) {
      if (err instanceof LibvirtCallError && err.code === VirErr.noDomain) return false;
      throw err;
    }
  }

  forget(uuid: string): void {
    this.domains.delete(uuid);
  }

  /** The active domains (running, paused, shutting down, ...), each with its UUID as text. */
  async listActiveDomains(): Promise<DomainRef[]> {
    const doms = decodeDomainList(
      await this.call(
        LIBVIRT.remoteProgram,
        LIBVIRT.proc.connectListAllDomains,
        encodeListAllDomains(ListFlags.active),
        this.callTimeoutMs,
      ),
    );
    for (const d of doms) this.domains.set(uuidText(d.uuid), d);
    return doms;
  }

  async domainState(dom: DomainRef): Promise<DomainStateInfo> {
    return decodeDomainState(
      await this.call(LIBVIRT.remoteProgram, LIBVIRT.proc.domainGetState, encodeDomainFlags(dom), this.callTimeoutMs),
    );
  }

  /** The live domain XML (no secure parts: flags 0). */
  async domainXml(dom: DomainRef): Promise<string> {
    return decodeNonNullString(
      await this.call(LIBVIRT.remoteProgram, LIBVIRT.proc.domainGetXmlDesc, encodeDomainFlags(dom), this.callTimeoutMs),
    );
  }

  /** virDomainInterfaceStats for one host device of one domain. */
  async interfaceStats(dom: DomainRef, device: string): Promise<InterfaceCounters> {
    return decodeInterfaceStats(
      await this.call(
        LIBVIRT.remoteProgram,
        LIBVIRT.proc.domainInterfaceStats,
        encodeInterfaceStats(dom, device),
        this.callTimeoutMs,
      ),
    );
  }

  /** virConnectGetAllDomainStats: one call for the given domains, or all active ones when none given. */
  async allDomainStats(stats: number, doms: readonly DomainRef[] = []): Promise<DomainStatsRecord[]> {
    return [...(await this.allDomainStatsRecords(stats, doms))];
  }

  /** As allDomainStats, each record decoded when it is taken (a caller can take them a slice per turn). */
  async allDomainStatsRecords(stats: number, doms: readonly DomainRef[] = []): Promise<Iterable<DomainStatsRecord>> {
    const flags = doms.length ? 0 : ListFlags.active;
    return domainStatsRecords(
      await this.call(
        LIBVIRT.remoteProgram,
        LIBVIRT.proc.connectGetAllDomainStats,
        encodeGetAllDomainStats(doms, stats, flags),
        this.callTimeoutMs,
      ),
    );
  }

  /**
   * virDomainQemuAgentCommand: sends `command` (qemu-ga JSON) to the domain's agent and returns
   * the agent's reply text. libvirt waits `timeoutMs` (in whole seconds) for the agent.
   */
  async agentCommand(uuid: string, command: string, timeoutMs: number): Promise<string> {
    const dom = await this.domain(uuid);
    const seconds = Math.max(1, Math.ceil(timeoutMs / 1000));
    try {
      const body = await this.call(
        LIBVIRT.qemuProgram,
        LIBVIRT.proc.agentCommand,
        encodeAgentCommand(dom, command, seconds),
        seconds * 1000 + this.callTimeoutMs,
      );
      return decodeAgentCommand(body) ?? '';
    } catch (err) {
      if (err instanceof LibvirtCallError && err.code === VirErr.noDomain) this.forget(uuid);
      throw err;
    }
  }
}
