// One qemu-ga command through libvirt, three ways, side by side against the same real libvirtd and
// guest: our client (libvirt's RPC protocol on long-lived connections), one long-lived `virsh`
// session fed on stdin, and spawning `virsh qemu-agent-command` per command (the obvious way).
// Needs root, libvirtd, QEMU; starts its own libvirtd and a transient domain, and stops them.
import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import pino from 'pino';
import { LibvirtClient } from '../src/libvirt/client.js';
import { Libvirtd, LIBVIRT_URI, virsh } from '../test/helpers/libvirtd.js';

const exec = promisify(execFile);
const CMD = '{"execute":"guest-get-host-name"}';

/** A long-lived virsh reading commands on stdin; each answer ends at the marker echoed after it. */
class VirshSession {
  private readonly proc = spawn('sh', ['-c', 'exec virsh -q -c "$1" 2>&1', 'sh', LIBVIRT_URI], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  private buf = '';
  private waiter: ((out: string) => void) | null = null;
  private n = 0;

  constructor() {
    this.proc.stdout.on('data', (c: Buffer) => {
      this.buf += c.toString();
      const m = /__end_(\d+)__\n/.exec(this.buf);
      if (m && this.waiter) {
        const out = this.buf.slice(0, m.index);
        this.buf = this.buf.slice(m.index + m[0].length);
        const w = this.waiter;
        this.waiter = null;
        w(out);
      }
    });
  }

  command(line: string): Promise<string> {
    const id = ++this.n;
    return new Promise((resolve) => {
      this.waiter = resolve;
      this.proc.stdin.write(`${line}\necho __end_${id}__\n`);
    });
  }

  close(): void {
    this.proc.stdin.end('quit\n');
  }
}

interface Row {
  way: string;
  commands: number;
  'ms/command p50': string;
  'ms/command p95': string;
  'commands/s': number;
  'CPU ms/command': string;
  'vs ours (p50)': string;
}

/** CPU time of this process and of its reaped children (virsh, sh), in ms (/proc/self/stat). */
function cpuMs(): number {
  const f = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
  // utime stime cutime cstime are fields 14-17; after "pid (comm) " they start at index 11.
  const ticks = [11, 12, 13, 14].reduce((a, i) => a + Number(f[i]), 0);
  return (ticks * 1000) / 100; // USER_HZ is 100 on Linux
}

async function measure(
  way: string,
  n: number,
  one: () => Promise<unknown>,
): Promise<{ row: Omit<Row, 'vs ours (p50)'>; p50: number }> {
  for (let i = 0; i < Math.min(5, n); i++) await one(); // warm-up
  const lat: number[] = [];
  const cpu0 = cpuMs();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const s = performance.now();
    await one();
    lat.push(performance.now() - s);
  }
  const total = performance.now() - t0;
  const cpu = (cpuMs() - cpu0) / n;
  lat.sort((a, b) => a - b);
  const p50 = lat[Math.floor(n / 2)]!;
  return {
    p50,
    row: {
      way,
      commands: n,
      'ms/command p50': p50.toFixed(2),
      'ms/command p95': lat[Math.floor(n * 0.95)]!.toFixed(2),
      'commands/s': Math.round(n / (total / 1000)),
      'CPU ms/command': cpu.toFixed(2),
    },
  };
}

export async function run(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.log('skipped: needs root (starts libvirtd and a QEMU domain)');
    return;
  }
  try {
    await exec('sh', ['-c', 'command -v libvirtd && command -v virsh && command -v qemu-system-x86_64']);
  } catch {
    console.log('skipped: needs libvirtd, virsh and qemu-system-x86_64 (scripts/setup-test-host.sh)');
    return;
  }
  const lv = new Libvirtd();
  let client: LibvirtClient | null = null;
  let session: VirshSession | null = null;
  try {
    await lv.start();
    const dom = await lv.createDomain({ hostname: 'bench' });
    for (let i = 0; i < 300; i++) {
      if (
        await virsh('qemu-agent-command', dom.uuid, CMD).then(
          () => true,
          () => false,
        )
      )
        break;
      await new Promise((r) => setTimeout(r, 100));
    }
    client = new LibvirtClient({ uri: LIBVIRT_URI, log: pino({ level: 'silent' }) });
    await client.start();
    session = new VirshSession();
    const c = client;
    const s = session;
    const ours = await measure('ours: libvirt RPC, long-lived connections', 300, () =>
      c.agentCommand(dom.uuid, CMD, 5_000),
    );
    const sess = await measure('one long-lived virsh session (stdin)', 300, () =>
      s.command(`qemu-agent-command ${dom.uuid} '${CMD}'`),
    );
    const spawned = await measure('spawn virsh qemu-agent-command per command', 40, () =>
      exec('virsh', ['-c', LIBVIRT_URI, 'qemu-agent-command', dom.uuid, CMD]),
    );
    // libvirt alone, no agent in the path: a domain lookup by UUID.
    const oursLookup = await measure('ours: domain lookup only', 300, () => (c.forget(dom.uuid), c.domain(dom.uuid)));
    const sessLookup = await measure('virsh session: domid, lookup only', 300, () => s.command(`domid ${dom.uuid}`));
    const spawnLookup = await measure('spawn virsh domid: lookup only', 40, () =>
      exec('virsh', ['-c', LIBVIRT_URI, 'domid', dom.uuid]),
    );
    // Many VMs polled at once: 20 commands in flight on our connections (a virsh session can only
    // take them one after another).
    const n = 400;
    const t0 = performance.now();
    for (let i = 0; i < n / 20; i++)
      await Promise.all(Array.from({ length: 20 }, () => c.agentCommand(dom.uuid, CMD, 5_000)));
    const parRate = Math.round(n / ((performance.now() - t0) / 1000));
    const ratio = (x: number): string => `${(x / ours.p50).toFixed(1)}x`;
    console.table([
      { ...ours.row, 'vs ours (p50)': '1.0x' },
      { ...sess.row, 'vs ours (p50)': ratio(sess.p50) },
      { ...spawned.row, 'vs ours (p50)': ratio(spawned.p50) },
      {
        way: 'ours, 20 in flight',
        commands: n,
        'ms/command p50': '',
        'ms/command p95': '',
        'commands/s': parRate,
        'CPU ms/command': '',
        'vs ours (p50)': '',
      },
      { ...oursLookup.row, 'vs ours (p50)': '1.0x' },
      { ...sessLookup.row, 'vs ours (p50)': `${(sessLookup.p50 / oursLookup.p50).toFixed(0)}x` },
      { ...spawnLookup.row, 'vs ours (p50)': `${(spawnLookup.p50 / oursLookup.p50).toFixed(0)}x` },
    ]);
    console.log(
      'agent rows: a real guest-get-host-name answered by qemu-ga in a TCG guest (the agent round trip is in every figure);',
    );
    console.log(
      "CPU: this process plus the children it reaped (spawned virsh), not libvirtd's (the same for all ways);",
    );
    console.log(
      "the virsh session's own CPU is not in its row (not reaped until it exits), and it runs one command at a time",
    );
  } finally {
    session?.close();
    client?.stop();
    await lv.stop();
  }
}
