// Start-up timing, alone: spawn -> every VM listed by Host.getAllVmStats, with N simulated guests
// (half oVirt agent, half qemu-ga) whose sockets are present before the daemon starts. Two builds
// are started in turn on the same guests (a channel serves one client at a time, so each daemon
// exits before the next starts), alternating, and the medians are printed side by side; also the
// time until every agent has answered (responsive, with interfaces).
//   node --import tsx bench/startup.ts [--runs 9] [--vms 1000] [--cpu-prof DIR] MAIN [OTHER_MAIN]
// MAIN defaults to dist/main.js; OTHER_MAIN is e.g. a copy of main's dist/ (with node_modules beside it).
// The guests run in a child process, as the daemon's would, so their work does not delay this timer.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { RpcClient } from '../src/client/rpcClient.js';
import { generateGuests } from '../src/sim/guest.js';
import { GuestSimulator } from '../src/sim/simulator.js';
import type { VmStats } from '../src/wire.js';
import { DAEMON, startDaemon } from './daemonProcess.js';

const { values, positionals } = parseArgs({
  options: {
    runs: { type: 'string', default: '9' },
    vms: { type: 'string', default: '1000' },
    'cpu-prof': { type: 'string' },
    simulate: { type: 'string' },
  },
  allowPositionals: true,
});
const VMS = Number(values.vms);

if (values.simulate) {
  // Child: play the guests until stdin closes.
  const sim = new GuestSimulator({ dir: values.simulate });
  await sim.addAll(generateGuests(VMS));
  process.stdout.write('ready\n');
  process.stdin.resume();
  process.stdin.on('end', () => process.exit(0));
} else {
  await main();
}

async function simulator(dir: string): Promise<ChildProcess> {
  const self = fileURLToPath(import.meta.url);
  const child = spawn(process.execPath, ['--import', 'tsx', self, '--simulate', dir, '--vms', String(VMS)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (b: Buffer) => {
      if (b.toString().includes('ready')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`simulator exited with ${code}`)));
  });
  return child;
}

/** ms from spawn to the "listening" line, and to every VM in Host.getAllVmStats. */
async function startOnce(main: string, dir: string): Promise<{ listening: number; known: number; reported: number }> {
  const prof = values['cpu-prof'];
  const nodeArgs = prof ? ['--cpu-prof', '--cpu-prof-dir', prof] : [];
  const t0 = performance.now();
  const d = await startDaemon(
    ['--listen', '127.0.0.1:0', '--channels-dir', dir, '--qga-via', 'direct'],
    {},
    nodeArgs,
    main,
  );
  const listening = performance.now() - t0;
  const c = await RpcClient.connect(d.url);
  let partial = 0;
  let known: number;
  let reportedMs: number;
  try {
    // Requests wait until the sockets present are registered: the first answer should be complete.
    while ((await c.call<VmStats[]>('Host.getAllVmStats')).length !== VMS) partial++;
    known = performance.now() - t0;
    // And until every agent answered: opening the connections later must not delay the guests' data much.
    const reported = (v: VmStats): boolean =>
      v.guestAgentStatus === 'responsive' && ((v.netIfaces as VmStats['netIfaces'] | null) ?? []).length > 0;
    while (!(await c.call<VmStats[]>('Host.getAllVmStats')).every(reported))
      await new Promise((r) => setTimeout(r, 20));
    reportedMs = performance.now() - t0;
  } finally {
    await c.close();
  }
  await d.stop();
  if (partial) console.log(`  ${partial} answers listed fewer than ${VMS} VMs`);
  return { listening, known, reported: reportedMs };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

async function main(): Promise<void> {
  const mains = positionals.length ? positionals.map((p) => path.resolve(p)) : [DAEMON];
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vdsm-agentd-startup-'));
  const sim = await simulator(dir);
  const figures = mains.map(() => ({ listening: [] as number[], known: [] as number[], reported: [] as number[] }));
  try {
    for (let run = 0; run < Number(values.runs); run++) {
      // Alternate which build goes first, so a slow moment on the shared machine falls on both.
      const order = run % 2 ? [...mains.keys()].reverse() : [...mains.keys()];
      for (const i of order) {
        const r = await startOnce(mains[i]!, dir);
        figures[i]!.listening.push(r.listening);
        figures[i]!.known.push(r.known);
        figures[i]!.reported.push(r.reported);
        console.log(
          `run ${run + 1} ${mains[i]}: listening ${r.listening.toFixed(0)} ms, all ${VMS} VMs known ${r.known.toFixed(0)} ms, all reported ${r.reported.toFixed(0)} ms`,
        );
      }
    }
  } finally {
    sim.stdin!.end();
    await new Promise((r) => sim.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(`\n${VMS} sockets present; medians of ${values.runs} runs each, alternating`);
  console.log('build | listening ms | every VM known ms (vs first) | every VM reported ms (vs first)');
  const first = figures[0]!;
  for (const [i, m] of mains.entries()) {
    const f = figures[i]!;
    const [known, reported] = [median(f.known), median(f.reported)];
    console.log(
      `${m} | ${median(f.listening).toFixed(0)} | ${known.toFixed(0)} (${(known / median(first.known)).toFixed(2)}) | ${reported.toFixed(0)} (${(reported / median(first.reported)).toFixed(2)})`,
    );
  }
}
