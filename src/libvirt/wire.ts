// libvirt's own RPC protocol, the part this daemon speaks, pure: XDR encoding of the few calls
// it makes (auth list, polkit, connect open, domain lookup by UUID, the QEMU program's agent
// command), the 4-byte length framing of a byte stream, and decoding of replies and errors.
// Facts from libvirt's remote_protocol.x, qemu_protocol.x and virnetprotocol.x; no sockets here.

export const LIBVIRT = {
  remoteProgram: 0x20008086,
  qemuProgram: 0x20008087,
  keepaliveProgram: 0x6b656570,
  version: 1,
  proc: {
    connectOpen: 1,
    connectClose: 2,
    domainLookupByUuid: 24,
    authList: 66,
    authPolkit: 70,
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
    if (this.off + n > this.buf.length) throw new XdrError(`truncated XDR: need ${n} bytes at ${this.off} of ${this.buf.length}`);
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
    return this.u32() === 0 ? null : this.string();
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
  const head = new XdrWriter().u32(4 + HEADER_BYTES + body.length).u32(h.prog).u32(h.vers).i32(h.proc).i32(h.type).u32(h.serial).i32(h.status).bytes();
  return Buffer.concat([head, body]);
}

export function encodeCall(prog: number, proc: number, serial: number, body?: Buffer): Buffer {
  return encodeMessage({ prog, vers: LIBVIRT.version, proc, type: LIBVIRT.type.call, serial, status: LIBVIRT.status.ok }, body);
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
      const header: MessageHeader = { prog: r.u32(), vers: r.u32(), proc: r.i32(), type: r.i32(), serial: r.u32(), status: r.i32() };
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
  const r = new XdrReader(body);
  return { name: r.string(), uuid: r.fixedOpaque(16), id: r.i32() };
}

export function encodeAgentCommand(dom: DomainRef, command: string, timeoutSeconds: number): Buffer {
  return new XdrWriter().string(dom.name).fixedOpaque(dom.uuid).i32(dom.id).string(command).i32(timeoutSeconds).u32(0).bytes();
}

/** The agent's raw reply text, or null when libvirt returned none. */
export function decodeAgentCommand(body: Buffer): string | null {
  return new XdrReader(body).optionalString();
}
