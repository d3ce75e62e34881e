// Bytes the qemu-ga poll path allocates per round on the JS heap (not part of `npm run bench`): one
// VM's poller, socket link and registry entry in process, no socket (the writer hands each
// command to a fake agent that answers at once from the read buffer, as channels/channel.ts
// reads), polled for `guest-network-get-interfaces` with its counters moving (an unchanged reply).
// The young generation is made large enough that nothing is collected while it runs, so the heap's
// growth over the rounds is what they allocated. Node's own socket write path is not included.
//   node --min-semi-space-size=256 --max-semi-space-size=256 bench/qgaAllocPerRound.mjs DIST [ROUNDS]
// DIST: a built dist directory (tsc's files). QGA_ALLOC_SAMPLES=1 adds where the bytes were
// allocated (V8's sampling heap profiler; inlined functions are charged to their callers).
import inspector from 'node:inspector';
import path from 'node:path';
import v8 from 'node:v8';
import pino from 'pino';

const dist = path.resolve(process.argv[2] ?? 'dist');
const ROUNDS = Number(process.argv[3] ?? 20000);
const load = (p) => import(path.join(dist, p));
const { QgaSocketLink } = await load('channels/qgaSocketLink.js');
const { QgaPoller } = await load('channels/qgaPoller.js');
const { PollSlots } = await load('channels/pollSlots.js');
const { InputGuard } = await load('channels/inputGuard.js');
const { VmRegistry } = await load('vms/registry.js');
const { generateGuests } = await load('sim/guest.js');
const { answerQga } = await load('sim/qgaAgent.js');

const log = pino({ level: 'silent' });
const guest = generateGuests(1, { qemuShare: 1 })[0];
const vmId = guest.vmId;
const channel = 'org.qemu.guest_agent.0';
const registry = new VmRegistry();
registry.channelAdded(vmId, channel);
const guard = new InputGuard(vmId, log);
const slots = new PollSlots(500);
const link = new QgaSocketLink(channel, guard, slots);
const sink = {
  report: (r) => registry.report(vmId, channel, r),
  status: (s) => registry.setAgentStatus(vmId, channel, s),
  issues: (i, d) => guard.note(channel, i, d),
};
// Rounds are kicked by hand: the wheel's timer and the commands' timeouts never come due.
const poller = new QgaPoller(link, sink, { intervalMs: 1e8, timeoutMs: 1e8, detailsEveryMs: 1e15, slots });

const READ = Buffer.allocUnsafe(65536);
// 64 replies with other counters, and a view of the read buffer for each length (channel.ts has those).
const replies = [];
for (let k = 0; k < 64; k++) {
  const line = Buffer.from(answerQga({ execute: 'guest-network-get-interfaces' }, guest, k * 1000).line);
  replies.push({ line, view: READ.subarray(0, line.length) });
}
let out = null;
let ifacesCommand = null;
let counter = 0;
link.connected({
  write: (b) => {
    out = b;
    return true;
  },
});

function answer() {
  const b = out;
  out = null;
  if (b === ifacesCommand || (ifacesCommand === null && b.includes('guest-network-get-interfaces'))) {
    ifacesCommand = b; // argument-less commands are the same Buffer every time
    const r = replies[counter++ & 63];
    r.line.copy(READ, 0);
    link.data(r.view);
    return;
  }
  let text = b.toString('latin1');
  if (text.charCodeAt(0) === 0xff) text = text.slice(1);
  const reply = answerQga(JSON.parse(text), guest, 0);
  let n = 0;
  if (reply.delimited) READ[n++] = 0xff;
  n += READ.write(reply.line, n, 'utf8');
  link.data(READ.subarray(0, n));
}

function round() {
  poller.start(); // kick() without the wheel
  while (out) answer();
}

// The first rounds resync and ask everything once; then only interfaces, unchanged.
for (let i = 0; i < 2000; i++) {
  round();
  await null;
}
const session = new inspector.Session();
session.connect();
const post = (method, params) =>
  new Promise((resolve, reject) => session.post(method, params, (e, r) => (e ? reject(e) : resolve(r))));
const sampling = process.env.QGA_ALLOC_SAMPLES === '1';
if (sampling)
  await post('HeapProfiler.startSampling', {
    samplingInterval: 128,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true,
  });
const before = v8.getHeapStatistics().used_heap_size;
for (let i = 0; i < ROUNDS; i++) round();
const after = v8.getHeapStatistics().used_heap_size;
console.log(`${path.basename(dist)}: ${((after - before) / ROUNDS).toFixed(0)} bytes allocated per round`);
if (sampling) {
  const { profile } = await post('HeapProfiler.getSamplingProfile');
  const bytes = new Map();
  const walk = (node, stack) => {
    const f = node.callFrame;
    const here = [
      ...stack,
      `${f.functionName || '(anonymous)'} ${f.url.split('/').slice(-2).join('/')}:${f.lineNumber + 1}`,
    ];
    if (node.selfSize) {
      const key = here.slice(-3).join(' < ');
      bytes.set(key, (bytes.get(key) ?? 0) + node.selfSize);
    }
    for (const c of node.children) walk(c, here);
  };
  walk(profile.head, []);
  for (const [k, v] of [...bytes].sort((a, b) => b[1] - a[1]).slice(0, 15))
    console.log(`${(v / ROUNDS).toFixed(0).padStart(6)}  ${k}`);
}
process.exit(0); // the wheel's far-off timer would keep the process alive
