// The floor for the daemon's idle CPU (bench/qgaIdleCpu.ts, `--floor`): a Node process that does
// only the I/O the protocols need at the daemon's default settings and nothing else — connect to
// every channel socket, send the oVirt agent `refresh` once, send each qemu-ga
// `guest-network-get-interfaces` every 5 s on the same 500 ms wheel the daemon uses, and read into
// one shared buffer (net's `onread`), discarding the bytes. No parsing, no registry, no logging,
// no metrics. The daemon's idle CPU minus this one's is what our own code costs; this one's is
// what Node, libuv and the kernel charge for the same reads and writes on this machine.
// Takes the daemon's arguments (`--channels-dir DIR`, the rest ignored) and prints a `"url":"`
// line when every socket is connected, as the daemon's readiness line does.
//
// `--work` adds the least a reader of these protocols could do with each line, to show what a
// step costs on top of the I/O (docs/performance.md, "the reader ladder"):
//   none   (default) nothing;
//   bytes  find each newline (Buffer.indexOf) and hash the line's bytes four at a time: enough to
//          notice a change, allocating nothing;
//   text   decode each line to a string and hash its characters;
//   parse  decode each line and JSON.parse it.
import net from 'node:net';
import { readdirSync } from 'node:fs';
import path from 'node:path';

const arg = (name, fallback) => (process.argv.includes(name) ? process.argv[process.argv.indexOf(name) + 1] : fallback);
const dir = arg('--channels-dir');
const work = arg('--work', 'none');
if (!['none', 'bytes', 'text', 'parse'].includes(work))
  throw new Error(`--work: none | bytes | text | parse, not ${work}`);
const INTERVAL_MS = 5000;
const SLOTS = 10; // the daemon's slot width: a tenth of the interval (src/channels/pollSlots.ts)
const buffer = Buffer.allocUnsafe(64 * 1024);
const words = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
const command = Buffer.from('{"execute":"guest-network-get-interfaces"}\n');
const refresh = Buffer.from('{"__name__": "refresh", "apiVersion": 3}\n');
const wheel = Array.from({ length: SLOTS }, () => []);
/** Where the work's results go (a module variable: the work cannot be optimised away). */
let seen = 0;

function hashBytes(start, end) {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  let i = start;
  for (const words4 = start + ((end - start) & ~3); i < words4; i += 4) {
    const w = words.getUint32(i, true);
    h1 = Math.imul(h1 ^ w, 2654435761);
    h2 = Math.imul(h2 ^ w, 1597334677);
  }
  for (; i < end; i++) h1 = Math.imul(h1 ^ buffer[i], 2654435761);
  return h1 ^ h2;
}

function hashText(text) {
  let h = 0;
  for (let i = 0; i < text.length; i++) h = (Math.imul(h, 31) + text.charCodeAt(i)) | 0;
  return h;
}

/** A read handler doing `work` on each line (`bytes` hashes a line split across reads in two parts; the others carry its head). */
function reader() {
  if (work === 'none') return () => true;
  if (work === 'bytes')
    return (n) => {
      for (let start = 0, nl; (nl = buffer.indexOf(10, start)) !== -1 && nl < n; start = nl + 1)
        seen ^= hashBytes(start, nl);
      return true;
    };
  let carry = '';
  return (n) => {
    const text = carry + buffer.utf8Slice(0, n);
    let start = 0;
    for (let nl; (nl = text.indexOf('\n', start)) !== -1; start = nl + 1) {
      if (nl === start) continue;
      const line = text.slice(start, nl);
      if (work === 'text') seen ^= hashText(line);
      else
        try {
          seen += JSON.parse(line) ? 1 : 0;
        } catch {
          seen--;
        }
    }
    carry = start < text.length ? text.slice(start) : '';
    return true;
  };
}

const names = readdirSync(dir);
let pending = names.length;
for (const [k, name] of names.entries()) {
  const qga = name.endsWith('.org.qemu.guest_agent.0');
  const socket = net.createConnection({ path: path.join(dir, name), onread: { buffer, callback: reader() } });
  socket.on('connect', () => {
    if (qga) wheel[k % SLOTS].push(socket);
    else socket.write(refresh);
    if (--pending === 0) console.log(JSON.stringify({ msg: 'listening', url: 'ws://bare-reader' }));
  });
  socket.on('error', () => {});
}

let slot = 0;
setInterval(() => {
  for (const socket of wheel[slot]) socket.write(command);
  slot = (slot + 1) % SLOTS;
}, INTERVAL_MS / SLOTS);
