// Bench-only: a pass-through proxy in front of libvirtd's socket that adds vNIC counters to
// CONNECT_GET_ALL_DOMAIN_STATS replies, run as a process of its own (`node --import tsx
// bench/libvirtCountersProxy.ts LISTEN_SOCKET UPSTREAM_SOCKET`; prints "ready" once listening).
// libvirtd's `test` driver answers the bulk call with the state group only, so its domains'
// counters never move; a QEMU domain's reply carries `net.count` and `net.N.*` for its vNICs.
// Here each `bench-I` domain's record gets what QEMU's would for one vNIC named `bnI` (as its XML
// says), counters from the clock (as the test driver's DOMAIN_INTERFACE_STATS makes them up), so
// every sample moves every VM's counters, as traffic would. The daemon then runs its production
// path unchanged: one bulk call per interval, the whole reply decoded by its own codec. Every
// other message passes through byte for byte. Its CPU is its own process's, not the daemon's.
import { existsSync, rmSync } from 'node:fs';
import net from 'node:net';

const REMOTE_PROGRAM = 0x20008086;
const PROC_GET_ALL_DOMAIN_STATS = 344;
const TYPE_REPLY = 1;
const STATUS_OK = 0;
const HEADER_BYTES = 28; // length + prog, vers, proc, type, serial, status

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

function xdrString(s: string): Buffer {
  const b = Buffer.from(s);
  const out = Buffer.alloc(4 + b.length + pad4(b.length));
  out.writeUInt32BE(b.length, 0);
  b.copy(out, 4);
  return out;
}

function param(field: string, type: number, value: Buffer): Buffer {
  const t = Buffer.alloc(4);
  t.writeInt32BE(type, 0);
  return Buffer.concat([xdrString(field), t, value]);
}

function ullong(n: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(n, 0);
  return b;
}

function uint(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n, 0);
  return b;
}

/** One vNIC's parameters as QEMU's driver sends them (virsh domstats --interface --raw). */
function vnicParams(ifname: string, i: number): Buffer[] {
  // No significance to these numbers: enough to move at every sample (as the test driver's).
  const base = BigInt(Date.now()) * 1000n + BigInt(i);
  return [
    param('net.count', 2, uint(1)),
    param('net.0.name', 7, xdrString(ifname)),
    param('net.0.rx.bytes', 4, ullong(base / 10n)),
    param('net.0.rx.pkts', 4, ullong(base / 100n)),
    param('net.0.rx.errs', 4, ullong(0n)),
    param('net.0.rx.drop', 4, ullong(base / 1_000_000_000n)),
    param('net.0.tx.bytes', 4, ullong(base / 20n)),
    param('net.0.tx.pkts', 4, ullong(base / 110n)),
    param('net.0.tx.errs', 4, ullong(0n)),
    param('net.0.tx.drop', 4, ullong(0n)),
  ];
}

/** A reply body (remote_connect_get_all_domain_stats_ret) with vNIC parameters added to each bench domain. */
function withCounters(body: Buffer): Buffer {
  let at = 0;
  const u32 = (): number => {
    const v = body.readUInt32BE(at);
    at += 4;
    return v;
  };
  const skipString = (): string => {
    const len = u32();
    const s = body.toString('utf8', at, at + len);
    at += len + pad4(len);
    return s;
  };
  const out: Buffer[] = [body.subarray(0, 4)];
  const n = u32();
  for (let i = 0; i < n; i++) {
    const start = at;
    const name = skipString();
    at += 16 + 4; // uuid, id
    const countAt = at;
    const m = u32();
    for (let j = 0; j < m; j++) {
      skipString();
      const type = body.readInt32BE(at);
      at += 4;
      if (type === 7) skipString();
      else at += type === 3 || type === 4 || type === 5 ? 8 : 4;
    }
    const match = /^bench-(\d+)$/.exec(name);
    if (!match) {
      out.push(body.subarray(start, at));
      continue;
    }
    const added = vnicParams(`bn${match[1]}`, Number(match[1]));
    out.push(body.subarray(start, countAt), uint(m + added.length), body.subarray(countAt + 4, at), ...added);
  }
  out.push(body.subarray(at));
  return Buffer.concat(out);
}

/** Splits libvirt RPC messages (4-byte length first) out of a stream. */
function framer(onMessage: (m: Buffer) => void): (chunk: Buffer) => void {
  let buf: Buffer = Buffer.alloc(0);
  return (chunk) => {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    while (buf.length >= 4) {
      const len = buf.readUInt32BE(0);
      if (buf.length < len) break;
      onMessage(buf.subarray(0, len));
      buf = buf.subarray(len);
    }
  };
}

const [listenPath, upstreamPath] = process.argv.slice(2);
if (!listenPath || !upstreamPath) throw new Error('usage: libvirtCountersProxy.ts LISTEN_SOCKET UPSTREAM_SOCKET');
if (existsSync(listenPath)) rmSync(listenPath);
const server = net.createServer((client) => {
  const upstream = net.connect(upstreamPath);
  client.pipe(upstream);
  upstream.on(
    'data',
    framer((m) => {
      const rewrite =
        m.length >= HEADER_BYTES &&
        m.readUInt32BE(4) === REMOTE_PROGRAM &&
        m.readInt32BE(12) === PROC_GET_ALL_DOMAIN_STATS &&
        m.readInt32BE(16) === TYPE_REPLY &&
        m.readInt32BE(24) === STATUS_OK;
      if (!rewrite) {
        client.write(m);
        return;
      }
      const body = withCounters(m.subarray(HEADER_BYTES));
      const head = Buffer.from(m.subarray(0, HEADER_BYTES));
      head.writeUInt32BE(HEADER_BYTES + body.length, 0);
      client.write(Buffer.concat([head, body]));
    }),
  );
  const close = (): void => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', close).on('close', close);
  upstream.on('error', close).on('close', close);
});
server.listen(listenPath, () => console.log('ready'));
process.on('SIGTERM', () => {
  server.close();
  process.exit(0);
});
