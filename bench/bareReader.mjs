// The floor for the daemon's idle CPU (bench/qgaIdleCpu.ts, `--floor`): a Node process that does
// only the I/O the protocols need at the daemon's default settings and nothing else — connect to
// every channel socket, send the oVirt agent `refresh` once, send each qemu-ga
// `guest-network-get-interfaces` every 5 s on the same 500 ms wheel the daemon uses, and read into
// one shared buffer (net's `onread`), discarding the bytes. No parsing, no registry, no logging,
// no metrics. The daemon's idle CPU minus this one's is what our own code costs; this one's is
// what Node, libuv and the kernel charge for the same reads and writes on this machine.
// Takes the daemon's arguments (`--channels-dir DIR`, the rest ignored) and prints a `"url":"`
// line when every socket is connected, as the daemon's readiness line does.
import net from 'node:net';
import { readdirSync } from 'node:fs';
import path from 'node:path';

const dir = process.argv[process.argv.indexOf('--channels-dir') + 1];
const INTERVAL_MS = 5000;
const SLOTS = 10; // the daemon's slot width: a tenth of the interval (src/channels/pollSlots.ts)
const buffer = Buffer.allocUnsafe(64 * 1024);
const onread = { buffer, callback: () => true };
const command = Buffer.from('{"execute":"guest-network-get-interfaces"}\n');
const refresh = Buffer.from('{"__name__": "refresh", "apiVersion": 3}\n');
const wheel = Array.from({ length: SLOTS }, () => []);

const names = readdirSync(dir);
let pending = names.length;
for (const [k, name] of names.entries()) {
  const qga = name.endsWith('.org.qemu.guest_agent.0');
  const socket = net.createConnection({ path: path.join(dir, name), onread });
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
