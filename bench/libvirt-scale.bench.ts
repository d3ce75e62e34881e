// The libvirt side at scale (issue 16 item 4): 1,000 domains on a real libvirtd's `test` driver
// (test+unix:///default: domains defined from XML, no QEMU), each with one bridged vNIC. The
// daemon's libvirt inventory (the same code the daemon runs) lists them, follows lifecycle events
// and samples vNIC counters every interval, two ways side by side on the same domains: one bulk
// CONNECT_GET_ALL_DOMAIN_STATS per interval for all domains (what the daemon does), and one
// DOMAIN_INTERFACE_STATS per vNIC per interval. Reported: start -> all listed, this process's CPU
// and libvirtd's CPU per VM per interval, and 1,000 suspend events applied.
// Needs root and libvirtd (scripts/setup-test-host.sh); starts its own libvirtd and stops it.
// BENCH_LIBVIRT_DOMAINS (default 1000) and BENCH_LIBVIRT_INTERVALS (default 10) shorten a trial.
import { execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pino from 'pino';
import { LibvirtClient } from '../src/libvirt/client.js';
import { LibvirtInventory } from '../src/libvirt/inventory.js';
import { VmRegistry } from '../src/vms/registry.js';
import { Libvirtd } from '../test/helpers/libvirtd.js';

const exec = promisify(execFile);
const DOMAINS = Number(process.env.BENCH_LIBVIRT_DOMAINS ?? 1000);
const INTERVALS = Number(process.env.BENCH_LIBVIRT_INTERVALS ?? 10);
const INTERVAL_MS = 1000;
const URI = 'test+unix:///default';
const CLK_TCK = 100;

function cpuMsOf(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
}

function selfCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A long-lived virsh on the test driver fed on stdin (one process for 1,000 commands). */
function virshSession(): { run: (lines: string[]) => Promise<void>; close: () => Promise<void> } {
  const proc = spawn('virsh', ['-q', '-c', URI], { stdio: ['pipe', 'pipe', 'inherit'] });
  let buf = '';
  let waiter: (() => void) | null = null;
  proc.stdout.on('data', (c: Buffer) => {
    buf += c.toString();
    if (buf.includes('__done__') && waiter) {
      buf = '';
      const w = waiter;
      waiter = null;
      w();
    }
  });
  return {
    run: (lines) =>
      new Promise((resolve) => {
        waiter = resolve;
        proc.stdin.write(`${lines.join('\n')}\necho __done__\n`);
      }),
    close: () =>
      new Promise((resolve) => {
        if (proc.exitCode !== null) {
          resolve();
          return;
        }
        proc.once('exit', () => resolve());
        proc.stdin.end('quit\n');
      }),
  };
}

function domainXml(i: number, uuid: string): string {
  const mac = `52:54:01:${((i >> 16) & 0xff).toString(16).padStart(2, '0')}:${((i >> 8) & 0xff).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`;
  return `<domain type='test'><name>bench-${i}</name><uuid>${uuid}</uuid><memory>65536</memory><vcpu>1</vcpu><os><type>hvm</type></os>
<devices><interface type='bridge'><source bridge='br-bench'/><mac address='${mac}'/><target dev='vnet${i}'/><model type='virtio'/></interface></devices></domain>`;
}

interface Measured {
  selfMs: number;
  libvirtdMs: number;
}

async function measureIntervals(libvirtdPid: number, inv: LibvirtInventory, intervals: number): Promise<Measured> {
  await inv.settled();
  const s0 = selfCpuMs();
  const l0 = cpuMsOf(libvirtdPid);
  await sleep(intervals * INTERVAL_MS + INTERVAL_MS / 2);
  await inv.settled();
  return { selfMs: selfCpuMs() - s0, libvirtdMs: cpuMsOf(libvirtdPid) - l0 };
}

export async function run(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.log('skipped: needs root (starts libvirtd)');
    return;
  }
  try {
    await exec('sh', ['-c', 'command -v libvirtd && command -v virsh']);
  } catch {
    console.log('skipped: needs libvirtd and virsh (scripts/setup-test-host.sh)');
    return;
  }
  const lv = new Libvirtd();
  const work = mkdtempSync(path.join(os.tmpdir(), 'vdsm-bench-libvirt-'));
  const log = pino({ level: 'silent' });
  const clients: LibvirtClient[] = [];
  const invs: LibvirtInventory[] = [];
  const session = { close: (): Promise<void> => Promise.resolve() };
  try {
    await lv.start();
    const libvirtdPid = Number((await exec('pgrep', ['-n', '-x', 'libvirtd'])).stdout.trim());
    // The test driver's default state lives while a connection holds it: this client holds it.
    const holder = new LibvirtClient({ uri: URI, log, connections: 1, events: false });
    clients.push(holder);
    await holder.start();
    if (holder.state !== 'up') throw new Error(`libvirtd does not serve ${URI}`);
    const virsh = virshSession();
    session.close = virsh.close;
    const lines: string[] = [];
    for (let i = 0; i < DOMAINS; i++) {
      const f = path.join(work, `d${i}.xml`);
      writeFileSync(f, domainXml(i, randomUUID()));
      lines.push(`create ${f}`);
    }
    const tc = performance.now();
    for (let i = 0; i < lines.length; i += 200) await virsh.run(lines.slice(i, i + 200));
    const createMs = performance.now() - tc;

    const start = async (
      counters: 'bulk' | 'one-per-domain',
    ): Promise<{ inv: LibvirtInventory; reg: VmRegistry; listMs: number; stop: () => void }> => {
      const client = new LibvirtClient({ uri: URI, log });
      clients.push(client);
      const reg = new VmRegistry();
      const inv = new LibvirtInventory({
        client,
        registry: reg,
        log,
        intervalMs: INTERVAL_MS,
        clock: () => reg.now(),
        counters,
      });
      invs.push(inv);
      const t0 = performance.now();
      inv.start();
      await client.start();
      await inv.settled();
      const stop = (): void => {
        inv.stop();
        client.stop(); // its events would otherwise be decoded during the next way's window
      };
      return { inv, reg, listMs: performance.now() - t0, stop };
    };
    // Idle: libvirtd and this process with the domains present and no inventory.
    const base = await (async () => {
      const s0 = selfCpuMs();
      const l0 = cpuMsOf(libvirtdPid);
      await sleep(INTERVALS * INTERVAL_MS);
      return { selfMs: selfCpuMs() - s0, libvirtdMs: cpuMsOf(libvirtdPid) - l0 };
    })();
    const bulk = await start('bulk');
    const bulkCost = await measureIntervals(libvirtdPid, bulk.inv, INTERVALS);
    bulk.stop();
    const per = await start('one-per-domain');
    const perCost = await measureIntervals(libvirtdPid, per.inv, INTERVALS);
    per.stop();

    // Lifecycle at scale: every domain suspended; time until the registry has them all Paused.
    const ev = await start('bulk');
    let paused = 0;
    ev.reg.onChange((ch) => {
      if (ch.stats.status === 'Paused') paused++;
    });
    const te = performance.now();
    const s0 = selfCpuMs();
    const l0 = cpuMsOf(libvirtdPid);
    await virsh.run(Array.from({ length: DOMAINS }, (_, i) => `suspend bench-${i}`));
    while (paused < DOMAINS && performance.now() - te < 120_000) await sleep(20);
    const eventMs = performance.now() - te;
    const evSelf = selfCpuMs() - s0;
    const evLibvirtd = cpuMsOf(libvirtdPid) - l0;
    ev.stop();

    const perVm = (ms: number): string => ((ms * 1000) / (DOMAINS * INTERVALS)).toFixed(1);
    const row = (
      way: string,
      listMs: number | '',
      listed: number | '',
      cost: Measured,
      calls: number,
    ): Record<string, unknown> => ({
      way,
      'start -> all listed ms': listMs === '' ? '' : Math.round(listMs),
      'VMs listed': listed,
      'our CPU µs/VM/interval': perVm(cost.selfMs),
      'libvirtd CPU µs/VM/interval': perVm(cost.libvirtdMs),
      'calls/interval': calls,
    });
    console.log(
      `${bulk.reg.size} active domains (${DOMAINS} + the test driver's own) on ${URI} (created in ${(createMs / 1000).toFixed(1)} s through one virsh session), interval ${INTERVAL_MS} ms, ${INTERVALS} intervals per way`,
    );
    console.table([
      row('bulk: 1 CONNECT_GET_ALL_DOMAIN_STATS per interval (daemon)', bulk.listMs, bulk.reg.size, bulkCost, 1),
      row('per domain: 1 DOMAIN_INTERFACE_STATS per vNIC per interval', per.listMs, per.reg.size, perCost, DOMAINS),
      row('idle: domains present, no inventory (for comparison)', '', '', base, 0),
      {
        way: 'ratio per-domain / bulk',
        'start -> all listed ms': '',
        'VMs listed': '',
        'our CPU µs/VM/interval': (perCost.selfMs / bulkCost.selfMs).toFixed(1) + 'x',
        'libvirtd CPU µs/VM/interval': (perCost.libvirtdMs / bulkCost.libvirtdMs).toFixed(1) + 'x',
        'calls/interval': '',
      },
    ]);
    console.log(
      `lifecycle: ${DOMAINS} virsh suspend -> ${paused} VMs Paused from libvirt's events in ${(eventMs / 1000).toFixed(2)} s; ` +
        `our CPU ${((evSelf * 1000) / DOMAINS).toFixed(0)} µs per event, libvirtd ${((evLibvirtd * 1000) / DOMAINS).toFixed(0)} µs per suspend (with the virsh session's calls)`,
    );
    console.log(
      `per VM per interval = CPU over the ${INTERVALS} intervals / (VMs x intervals); the test driver makes its counters up (QEMU's come from /proc/net/dev)`,
    );
  } finally {
    for (const i of invs) i.stop();
    await session.close();
    for (const c of clients) c.stop();
    await lv.stop();
    rmSync(work, { recursive: true, force: true });
  }
}
