// libvirt's own RPC protocol, the part this daemon speaks, pure: XDR encoding of the calls it
// makes (auth list, polkit, connect open, domain lookup by UUID, the QEMU program's agent command,
// active domains, state, XML, interface counters, bulk stats, domain event registration), the
// 4-byte length framing of a byte stream, and decoding of replies, errors and the server-sent
// domain event messages. Everything read is bounded: a hostile or broken libvirtd gets an XdrError.
// Facts from libvirt's remote_protocol.x, qemu_protocol.x and virnetprotocol.x; no sockets here.

export const LIBVIRT = {
  remoteProgram: 0x20008086,
  qemuProgram: 0x20008087,
  keepaliveProgram: 0x6b656570,
  version: 1,
  proc: {
    connectOpen: 1,
    connectClose: 2,
    domainGetXmlDesc: 14,
    domainLookupByUuid: 24,
    domainInterfaceStats: 65,
    authList: 66,
    authPolkit: 70,
    domainGetState: 212,
    connectListAllDomains: 273,
    connectDomainEventCallbackRegisterAny: 316,
    connectDomainEventCallbackDeregisterAny: 317,
    /** Server-sent MESSAGE packets. */
    domainEventCallbackLifecycle: 318,
    domainEventCallbackDeviceRemoved: 333,
    connectGetAllDomainStats: 344,
    domainEventCallbackDeviceAdded: 354,
    /** In the QEMU program. */
    agentCommand: 3,
    /** In the keepalive program. */
    ping: 1,
    pong: 2,
  },
  type: { call: 0, reply: 1, message: 2, stream: 3 },
  status: { ok: 0, error: 1, continue: 2 },
  auth: { none: 0, sasl: 1, polkit: 2 },
} as const;

/** libvirt's own cap on a message (virnetprotocol.x VIR_NET_MESSAGE_MAX, 32 MiB). */
const MAX_MESSAGE_BYTES = 32 * 1024 * 1024;

/** virErrorNumber values this daemon tells apart (virterror.h; stable by libvirt's ABI rule). */
export const VirErr = {
  noDomain: 42,
  operationInvalid: 55,
  operationTimeout: 68,
  agentUnresponsive: 86,
  agentUnsynced: 97,
} as const;

export class XdrWriter {
  private chunks: Buffer[] = [];

  u32(n: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n >>> 0);
    this.chunks.push(b);
    return this;
  }

  i32(n: number): this {
    const b = Buffer.alloc(4);
    b.writeInt32BE(n | 0);
    this.chunks.push(b);
    return this;
  }

  string(s: string): this {
    const bytes = Buffer.from(s, 'utf8');
    this.u32(bytes.length);
    this.chunks.push(bytes, Buffer.alloc((4 - (bytes.length % 4)) % 4));
    return this;
  }

  optionalString(s: string | null): this {
    if (s === null) return this.u32(0);
    return this.u32(1).string(s);
  }

  domain(dom: DomainRef): this {
    return this.string(dom.name).fixedOpaque(dom.uuid).i32(dom.id);
  }

  fixedOpaque(bytes: Buffer): this {
    this.chunks.push(bytes, Buffer.alloc((4 - (bytes.length % 4)) % 4));
    return this;
  }

  bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

export class XdrError extends Error {
  override name = 'XdrError';
}

export class XdrReader {
  private off = 0;
  constructor(private readonly buf: Buffer) {}

  private need(n: number): void {
    if (this.off + n > this.buf.length)
      throw new XdrError(`truncated XDR: need ${n} bytes at ${this.off} of ${this.buf.length}`);
  }

  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.off);
    this.off += 4;
    return v;
  }

  i32(): number {
    this.need(4);
    const v = this.buf.readInt32BE(this.off);
    this.off += 4;
    return v;
  }

  string(): string {
    const len = this.u32();
    this.need(len);
    const s = this.buf.toString('utf8', this.off, this.off + len);
    this.off += len + ((4 - (len % 4)) % 4);
    return s;
  }

  optionalString(): string | null {
    const present = this.u32();
    if (present > 1) throw new XdrError(`bad optional marker ${present}`);
    return present === 0 ? null : this.string();
  }

  /** A 64-bit integer as decimal text (counters beyond 2^53 stay exact). */
  hyper(signed: boolean): string {
    this.need(8);
    const v = signed ? this.buf.readBigInt64BE(this.off) : this.buf.readBigUInt64BE(this.off);
    this.off += 8;
    return v.toString();
  }

  double(): number {
    this.need(8);
    const v = this.buf.readDoubleBE(this.off);
    this.off += 8;
    return v;
  }

  /** A variable-length array's count, checked against its XDR bound and the bytes left. */
  count(max: number, minItemBytes: number): number {
    const n = this.u32();
    if (n > max) throw new XdrError(`array of ${n} over its bound ${max}`);
    if (n * minItemBytes > this.remaining)
      throw new XdrError(`array of ${n} longer than the ${this.remaining} bytes left`);
    return n;
  }

  fixedOpaque(n: number): Buffer {
    this.need(n);
    const b = Buffer.from(this.buf.subarray(this.off, this.off + n));
    this.off += n + ((4 - (n % 4)) % 4);
    return b;
  }

  get remaining(): number {
    return this.buf.length - this.off;
  }
}

export interface MessageHeader {
  prog: number;
  vers: number;
  proc: number;
  type: number;
  serial: number;
  status: number;
}

const HEADER_BYTES = 24;

/** One whole message: the length word (which counts itself), the header, then the body. */
export function encodeMessage(h: MessageHeader, body: Buffer = Buffer.alloc(0)): Buffer {
  const head = new XdrWriter()
    .u32(4 + HEADER_BYTES + body.length)
    .u32(h.prog)
    .u32(h.vers)
    .i32(h.proc)
    .i32(h.type)
    .u32(h.serial)
    .i32(h.status)
    .bytes();
  return Buffer.concat([head, body]);
}

export function encodeCall(prog: number, proc: number, serial: number, body?: Buffer): Buffer {
  return encodeMessage(
    { prog, vers: LIBVIRT.version, proc, type: LIBVIRT.type.call, serial, status: LIBVIRT.status.ok },
    body,
  );
}

export interface Message {
  header: MessageHeader;
  body: Buffer;
}

/** Splits a byte stream into messages; a length outside libvirt's bounds is a protocol error. */
export class MessageFramer {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Message[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const out: Message[] = [];
    while (this.buf.length >= 4) {
      const len = this.buf.readUInt32BE(0);
      if (len < 4 + HEADER_BYTES || len > MAX_MESSAGE_BYTES) throw new XdrError(`bad libvirt message length ${len}`);
      if (this.buf.length < len) break;
      const r = new XdrReader(this.buf.subarray(4, 4 + HEADER_BYTES));
      const header: MessageHeader = {
        prog: r.u32(),
        vers: r.u32(),
        proc: r.i32(),
        type: r.i32(),
        serial: r.u32(),
        status: r.i32(),
      };
      out.push({ header, body: Buffer.from(this.buf.subarray(4 + HEADER_BYTES, len)) });
      this.buf = this.buf.subarray(len);
    }
    return out;
  }

  reset(): void {
    this.buf = Buffer.alloc(0);
  }
}

/** A libvirt error as the daemon sent it (remote_error): code, domain and message matter here. */
export interface LibvirtErrorInfo {
  code: number;
  domain: number;
  message: string;
}

export function decodeError(body: Buffer): LibvirtErrorInfo {
  const r = new XdrReader(body);
  const code = r.i32();
  const domain = r.i32();
  const message = r.optionalString() ?? `libvirt error ${code}`;
  return { code, domain, message };
}

// ---- the calls ------------------------------------------------------------------------------

/** remote_nonnull_domain: what later calls name a domain by. */
export interface DomainRef {
  name: string;
  uuid: Buffer;
  id: number;
}

function uuidBytes(uuid: string): Buffer {
  const hex = uuid.replace(/-/g, '');
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new XdrError(`not a UUID: ${uuid}`);
  return Buffer.from(hex, 'hex');
}

export function encodeConnectOpen(name: string): Buffer {
  return new XdrWriter().optionalString(name).u32(0).bytes();
}

export function decodeAuthList(body: Buffer): number[] {
  const r = new XdrReader(body);
  const n = r.u32();
  if (n > 20) throw new XdrError(`auth list of ${n} types`);
  return Array.from({ length: n }, () => r.i32());
}

export function encodeLookupByUuid(uuid: string): Buffer {
  return new XdrWriter().fixedOpaque(uuidBytes(uuid)).bytes();
}

export function decodeDomain(body: Buffer): DomainRef {
  return readDomain(new XdrReader(body));
}

function readDomain(r: XdrReader): DomainRef {
  return { name: r.string(), uuid: r.fixedOpaque(16), id: r.i32() };
}

/** A domain's UUID as text, lower-case (libvirt's own form: `virsh domuuid`). */
export function uuidText(uuid: Buffer): string {
  const h = uuid.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

export function encodeAgentCommand(dom: DomainRef, command: string, timeoutSeconds: number): Buffer {
  return new XdrWriter()
    .string(dom.name)
    .fixedOpaque(dom.uuid)
    .i32(dom.id)
    .string(command)
    .i32(timeoutSeconds)
    .u32(0)
    .bytes();
}

/** The agent's raw reply text, or null when libvirt returned none. */
export function decodeAgentCommand(body: Buffer): string | null {
  return new XdrReader(body).optionalString();
}

// ---- inventory, state, XML, counters (remote_protocol.x) ----------------------------------------

/** remote_protocol.x bounds this daemon enforces when reading. */
const DOMAIN_LIST_MAX = 16384;
const ALL_DOMAIN_STATS_MAX = 4096;
/** The least bytes one remote_nonnull_domain takes: empty name (4), UUID (16), id (4). */
const DOMAIN_MIN_BYTES = 24;

/** virConnectListAllDomainsFlags / virConnectGetAllDomainStatsFlags. */
export const ListFlags = { active: 1, inactive: 2 } as const;

/** virDomainStatsTypes. */
export const StatsType = { state: 1, interface: 16 } as const;

/** virDomainState. */
export const DomainState = {
  nostate: 0,
  running: 1,
  blocked: 2,
  paused: 3,
  shutdown: 4,
  shutoff: 5,
  crashed: 6,
  pmsuspended: 7,
} as const;

/** virDomainEventID values registered here. */
export const EventId = { lifecycle: 0, deviceRemoved: 15, deviceAdded: 19 } as const;

/** virDomainEventType (the lifecycle event's `event`). */
export const LifecycleEvent = {
  defined: 0,
  undefined: 1,
  started: 2,
  suspended: 3,
  resumed: 4,
  stopped: 5,
  shutdown: 6,
  pmsuspended: 7,
  crashed: 8,
} as const;

/** virDomainEventShutdownDetailType. */
export const ShutdownDetail = { finished: 0, guest: 1, host: 2 } as const;

/** virDomainEventStoppedDetailType. */
export const StoppedDetail = {
  shutdown: 0,
  destroyed: 1,
  crashed: 2,
  migrated: 3,
  saved: 4,
  failed: 5,
  fromSnapshot: 6,
} as const;

export function encodeListAllDomains(flags: number): Buffer {
  return new XdrWriter().i32(1).u32(flags).bytes();
}

export function decodeDomainList(body: Buffer): DomainRef[] {
  const r = new XdrReader(body);
  const n = r.count(DOMAIN_LIST_MAX, DOMAIN_MIN_BYTES);
  const out: DomainRef[] = [];
  for (let i = 0; i < n; i++) out.push(readDomain(r));
  return out;
}

/** The arguments of the many calls that take a domain and flags (state, XML). */
export function encodeDomainFlags(dom: DomainRef, flags = 0): Buffer {
  return new XdrWriter().domain(dom).u32(flags).bytes();
}

export interface DomainStateInfo {
  state: number;
  reason: number;
}

export function decodeDomainState(body: Buffer): DomainStateInfo {
  const r = new XdrReader(body);
  return { state: r.i32(), reason: r.i32() };
}

/** A reply that is one non-null string (the domain XML). */
export function decodeNonNullString(body: Buffer): string {
  return new XdrReader(body).string();
}

export function encodeInterfaceStats(dom: DomainRef, device: string): Buffer {
  return new XdrWriter().domain(dom).string(device).bytes();
}

/** virDomainInterfaceStats, counters as decimal text (-1 where the driver does not know). */
export interface InterfaceCounters {
  rxBytes: string;
  rxPackets: string;
  rxErrs: string;
  rxDrop: string;
  txBytes: string;
  txPackets: string;
  txErrs: string;
  txDrop: string;
}

export function decodeInterfaceStats(body: Buffer): InterfaceCounters {
  const r = new XdrReader(body);
  return {
    rxBytes: r.hyper(true),
    rxPackets: r.hyper(true),
    rxErrs: r.hyper(true),
    rxDrop: r.hyper(true),
    txBytes: r.hyper(true),
    txPackets: r.hyper(true),
    txErrs: r.hyper(true),
    txDrop: r.hyper(true),
  };
}

export function encodeGetAllDomainStats(doms: readonly DomainRef[], stats: number, flags: number): Buffer {
  const w = new XdrWriter().u32(doms.length);
  for (const d of doms) w.domain(d);
  return w.u32(stats).u32(flags).bytes();
}

/** A typed parameter's value: 64-bit integers as decimal text, booleans as booleans. */
type TypedValue = number | string | boolean;

export interface DomainStatsRecord {
  dom: DomainRef;
  params: Map<string, TypedValue>;
}

function readTypedValue(r: XdrReader): TypedValue {
  const type = r.i32();
  switch (type) {
    case 1:
      return r.i32();
    case 2:
      return r.u32();
    case 3:
      return r.hyper(true);
    case 4:
      return r.hyper(false);
    case 5:
      return r.double();
    case 6:
      return r.i32() !== 0;
    case 7:
      return r.string();
    default:
      throw new XdrError(`unknown typed parameter type ${type}`);
  }
}

export function decodeAllDomainStats(body: Buffer): DomainStatsRecord[] {
  return [...domainStatsRecords(body)];
}

/**
 * The records of a CONNECT_GET_ALL_DOMAIN_STATS reply, decoded one at a time as they are taken
 * (a reply for 1,000 domains is ~10 ms of decoding: its reader takes it in slices). A record
 * that does not decode throws when it is reached.
 */
export function* domainStatsRecords(body: Buffer): Generator<DomainStatsRecord, void, undefined> {
  const r = new XdrReader(body);
  const n = r.count(DOMAIN_LIST_MAX, DOMAIN_MIN_BYTES + 4);
  for (let i = 0; i < n; i++) {
    const dom = readDomain(r);
    const m = r.count(ALL_DOMAIN_STATS_MAX, 12);
    const params = new Map<string, TypedValue>();
    for (let j = 0; j < m; j++) {
      const field = r.string();
      params.set(field, readTypedValue(r));
    }
    yield { dom, params };
  }
}

// ---- domain events ----------------------------------------------------------------------------

/** Registers a callback for one event ID on every domain (the `dom` pointer left null). */
export function encodeEventCallbackRegister(eventId: number): Buffer {
  return new XdrWriter().i32(eventId).u32(0).bytes();
}

export function decodeCallbackId(body: Buffer): number {
  return new XdrReader(body).i32();
}

export type DomainEvent =
  | { kind: 'lifecycle'; callbackId: number; dom: DomainRef; event: number; detail: number }
  | { kind: 'deviceAdded' | 'deviceRemoved'; callbackId: number; dom: DomainRef; alias: string };

/**
 * A server-sent MESSAGE of the remote program: the domain events this daemon registers for, or
 * null for any other procedure (libvirtd sends only what was registered, but never trust that).
 */
export function decodeDomainEvent(proc: number, body: Buffer): DomainEvent | null {
  const r = new XdrReader(body);
  switch (proc) {
    case LIBVIRT.proc.domainEventCallbackLifecycle: {
      const callbackId = r.i32();
      return { kind: 'lifecycle', callbackId, dom: readDomain(r), event: r.i32(), detail: r.i32() };
    }
    case LIBVIRT.proc.domainEventCallbackDeviceAdded:
    case LIBVIRT.proc.domainEventCallbackDeviceRemoved: {
      const callbackId = r.i32();
      const kind = proc === LIBVIRT.proc.domainEventCallbackDeviceAdded ? 'deviceAdded' : 'deviceRemoved';
      return { kind, callbackId, dom: readDomain(r), alias: r.string() };
    }
    default:
      return null;
  }
}
