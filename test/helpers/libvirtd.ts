// A real libvirtd for the libvirt tests, started (and stopped) by the test itself, as on an oVirt
// host but without systemd: the system accounts and directories libvirt expects, virtlogd, then
// libvirtd in a private mount namespace whose /etc/libvirt is a throwaway copy with a qemu.conf
// that runs QEMU as root. (Where /dev/kvm exists but only root may open it, libvirt running QEMU
// as libvirt-qemu re-probes QEMU's capabilities on every domain start, ~55 s each; nothing on the
// host's /etc changes.) Transient domains boot the tiny test guest with oVirt's channel layout.
// Everything started here is stopped when the test file ends, also on failure.
import { spawn, execFile, execFileSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { tempDir } from './channelsDir.js';
import { defaultNics, testGuestImage, OVIRT_CHANNEL, QGA_CHANNEL, type NicSpec } from './qemuGuest.js';
import { atFileEnd } from './fileCleanup.js';

const run = promisify(execFile);

export const LIBVIRT_URI = 'qemu:///system';
export const LIBVIRT_SOCKET = '/run/libvirt/libvirt-sock';
export const OVIRT_CHANNELS_DIR = '/var/lib/libvirt/qemu/channels';

/**
 * One libvirtd at a time on this host: test files (and benches) that start one run in parallel
 * workers, so each waits for the others' to be stopped. The lock is a directory (mkdir is atomic)
 * holding its owner's pid; a dead owner's lock is taken over.
 */
const LOCK_DIR = '/run/lock/vdsm-agentd-test-libvirtd';

async function lockLibvirtd(): Promise<() => void> {
  for (;;) {
    try {
      mkdirSync(LOCK_DIR);
      writeFileSync(path.join(LOCK_DIR, 'pid'), String(process.pid));
      return () => rmSync(LOCK_DIR, { recursive: true, force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let owner = 0;
    try {
      owner = Number(readFileSync(path.join(LOCK_DIR, 'pid'), 'utf8'));
    } catch {
      // just created, pid not written yet (or a crash in between: stale after a few seconds)
    }
    const alive = owner > 0 && existsSync(`/proc/${owner}`);
    let young: boolean;
    try {
      young = Date.now() - statSync(LOCK_DIR).mtimeMs < 5_000;
    } catch {
      continue; // released meanwhile
    }
    if (!alive && !(owner === 0 && young)) {
      rmSync(LOCK_DIR, { recursive: true, force: true });
      continue;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** How long a test file may wait for another's libvirtd before starting its own (beforeAll timeout). */
export const LIBVIRTD_WAIT_MS = 900_000;

export async function virsh(...args: string[]): Promise<string> {
  return (await run('virsh', ['-c', LIBVIRT_URI, ...args], { encoding: 'utf8', timeout: 120_000 })).stdout;
}

/** Whether something answers on libvirtd's socket right now. */
function libvirtdAnswers(): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(LIBVIRT_SOCKET);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export interface LibvirtDomain {
  uuid: string;
  name: string;
  hostname: string;
  nics: NicSpec[];
  qgaSocket: string;
  ovirtSocket: string;
  serialLog: () => string;
  destroy: () => Promise<void>;
}

export interface DomainSpec {
  hostname?: string;
  /** Boot without starting qemu-ga in the guest (libvirt then reports the agent not connected). */
  noAgent?: boolean;
  /** Where the channel sockets go (default: oVirt's /var/lib/libvirt/qemu/channels). */
  channelsDir?: string;
  /** No guest-agent channels at all (a VM only libvirt can tell of). Implies noAgent. */
  noChannels?: boolean;
  /**
   * vNICs libvirt manages (`<interface type='bridge'>` on these host bridges, virtio, tap devices
   * vnetN), in place of the default user-mode NICs libvirt does not see.
   */
  bridges?: string[];
}

function ensureAccounts(): void {
  // What Debian's libvirt-daemon-system would have created; libvirtd refuses to start without them.
  const has = (db: string, name: string): boolean => {
    try {
      execFileSync('getent', [db, name], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  };
  if (!has('group', 'kvm')) execFileSync('groupadd', ['-r', 'kvm']);
  if (!has('group', 'libvirt-qemu')) execFileSync('groupadd', ['-r', 'libvirt-qemu']);
  if (!has('passwd', 'libvirt-qemu'))
    execFileSync('useradd', [
      '-r',
      '-g',
      'libvirt-qemu',
      '-G',
      'kvm',
      '-d',
      '/var/lib/libvirt',
      '-s',
      '/usr/sbin/nologin',
      'libvirt-qemu',
    ]);
}

async function waitFor(cond: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`${what} not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export class Libvirtd {
  private libvirtd: ChildProcess | null = null;
  private virtlogd: ChildProcess | null = null;
  private readonly domains = new Set<LibvirtDomain>();
  private readonly madeDirs: string[] = [];
  /** Temporary directories of this instance (also removed by the test file's cleanup). */
  private readonly tempDirs: string[] = [];
  private configDir = '';
  private output = '';
  private unlock: (() => void) | null = null;

  private temp(prefix: string): string {
    const d = tempDir(prefix);
    this.tempDirs.push(d);
    return d;
  }

  /** libvirtd's own output (its errors), for failure messages. */
  logs(): string {
    return this.output;
  }

  get pid(): number | undefined {
    return this.libvirtd?.pid;
  }

  async start(): Promise<void> {
    this.unlock = await lockLibvirtd();
    if (await libvirtdAnswers())
      throw new Error(`a libvirtd already answers on ${LIBVIRT_SOCKET}; the libvirt tests start their own`);
    ensureAccounts();
    for (const d of ['/var/log/libvirt', '/var/lib/libvirt', '/var/lib/libvirt/qemu', OVIRT_CHANNELS_DIR]) {
      if (!existsSync(d)) {
        mkdirSync(d, { recursive: true });
        this.madeDirs.push(d);
      }
    }
    this.configDir = this.temp('vdsm-libvirt-etc-');
    cpSync('/etc/libvirt', this.configDir, { recursive: true });
    writeFileSync(path.join(this.configDir, 'qemu.conf'), 'user = "root"\ngroup = "root"\n');
    this.virtlogd = this.spawnLogged(['virtlogd']);
    await this.startLibvirtd();
  }

  private spawnLogged(argv: string[]): ChildProcess {
    // setpriv: if the test process dies without cleaning up, the daemons get SIGTERM.
    const p = spawn('setpriv', ['--pdeathsig', 'SIGTERM', ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (c: Buffer): void => {
      this.output = (this.output + c.toString()).slice(-500_000);
    };
    p.stdout.on('data', keep);
    p.stderr.on('data', keep);
    return p;
  }

  private async startLibvirtd(): Promise<void> {
    const script = `mount --bind "$1" /etc/libvirt && exec libvirtd`;
    this.libvirtd = this.spawnLogged([
      'unshare',
      '--mount',
      '--propagation',
      'private',
      'sh',
      '-c',
      script,
      'sh',
      this.configDir,
    ]);
    const proc = this.libvirtd;
    await waitFor(
      async () => {
        if (proc.exitCode !== null) throw new Error(`libvirtd exited (${proc.exitCode}): ${this.output}`);
        return libvirtdAnswers();
      },
      60_000,
      'libvirtd answering',
    );
    // The first call after a start probes QEMU (seconds); do it here, not in a test's timing.
    await virsh('version');
  }

  /** Stops libvirtd (its domains keep running, as on a real host) and waits for it to exit. */
  async stopLibvirtd(): Promise<void> {
    const p = this.libvirtd;
    this.libvirtd = null;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    const t = setTimeout(() => p.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(t);
  }

  async restartLibvirtd(): Promise<void> {
    await this.stopLibvirtd();
    await this.startLibvirtd();
  }

  /** A transient domain booting the test guest, channels as oVirt lays them out. */
  async createDomain(spec: DomainSpec = {}): Promise<LibvirtDomain> {
    const image = await testGuestImage();
    const uuid = randomUUID();
    const name = `vdsm-test-${uuid.slice(0, 8)}`;
    const hostname = spec.hostname ?? name;
    const bridged = spec.bridges ?? [];
    const nics = defaultNics(40 + this.domains.size).slice(0, bridged.length || undefined);
    const work = this.temp('vdsm-libvirt-dom-');
    const serial = path.join(work, 'serial.log');
    const channelsDir = spec.channelsDir ?? OVIRT_CHANNELS_DIR;
    const qgaSocket = path.join(channelsDir, `${uuid}.${QGA_CHANNEL}`);
    const ovirtSocket = path.join(channelsDir, `${uuid}.${OVIRT_CHANNEL}`);
    if (bridged.length > 2) throw new Error('at most 2 bridged NICs');
    const cmdline = [
      'console=ttyS0',
      'panic=-1',
      'quiet',
      `vdsm_hostname=${hostname}`,
      ...nics.map((n) => `vdsm_if_${n.name}=${n.addresses.join(',')}`),
    ];
    if (spec.noAgent || spec.noChannels) cmdline.push('vdsm_noqga=1');
    const channel = (p: string, target: string): string =>
      `<channel type='unix'><source mode='bind' path='${p}'/><target type='virtio' name='${target}'/></channel>`;
    // libvirt's <interface type='user'> cannot say restrict=on, so the NICs are passed to QEMU
    // as arguments: no guest packet can leave QEMU.
    const nicArgs = (bridged.length ? [] : nics).flatMap((n, i) => [
      '-netdev',
      `user,id=vnet${i},restrict=on`,
      '-device',
      `virtio-net-pci,netdev=vnet${i},mac=${n.mac},addr=0x${(0x10 + i).toString(16)}`,
    ]);
    const xml = `<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>${name}</name>
  <uuid>${uuid}</uuid>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>${image.kernel}</kernel><initrd>${image.initrd}</initrd><cmdline>${cmdline.join(' ')}</cmdline></os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    ${
      spec.noChannels
        ? ''
        : `<controller type='virtio-serial' index='0'/>
    ${channel(qgaSocket, QGA_CHANNEL)}
    ${channel(ovirtSocket, OVIRT_CHANNEL)}`
    }
    ${bridged.map((br, i) => `<interface type='bridge'><source bridge='${br}'/><mac address='${nics[i]!.mac}'/><model type='virtio'/></interface>`).join('\n    ')}
    <serial type='file'><source path='${serial}'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>${nicArgs.map((a) => `<qemu:arg value='${a}'/>`).join('')}</qemu:commandline>
</domain>
`;
    const xmlPath = path.join(work, 'domain.xml');
    writeFileSync(xmlPath, xml);
    await virsh('create', xmlPath);
    const serialLog = (): string => (existsSync(serial) ? readFileSync(serial, 'utf8') : '');
    const dom: LibvirtDomain = {
      uuid,
      name,
      hostname,
      nics,
      qgaSocket,
      ovirtSocket,
      serialLog,
      destroy: async () => {
        this.domains.delete(dom);
        await virsh('destroy', uuid).catch(() => undefined);
      },
    };
    this.domains.add(dom);
    await waitFor(
      () => serialLog().includes(`vdsm-test-guest: ready ${hostname}`),
      90_000,
      `domain ${name} ready`,
    ).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}; serial:\n${serialLog()}`);
    });
    return dom;
  }

  async stop(): Promise<void> {
    if (!this.libvirtd) await this.startLibvirtd().catch(() => undefined); // to destroy what is left
    for (const d of [...this.domains]) await d.destroy();
    await this.stopLibvirtd();
    const v = this.virtlogd;
    this.virtlogd = null;
    if (v && v.exitCode === null) {
      const exited = new Promise((r) => v.once('exit', r));
      v.kill('SIGTERM');
      await exited;
    }
    for (const d of [...this.madeDirs.reverse(), ...this.tempDirs]) rmSync(d, { recursive: true, force: true });
    this.unlock?.();
    this.unlock = null;
  }
}

/** Starts libvirtd for this test file; stopped (domains destroyed) when the file ends. */
export async function startLibvirtd(): Promise<Libvirtd> {
  const l = new Libvirtd();
  afterAllStop.add(l);
  await l.start();
  return l;
}

const afterAllStop = new Set<Libvirtd>();
atFileEnd(async () => {
  for (const l of afterAllStop) await l.stop();
  afterAllStop.clear();
});

/**
 * The processes whose connection a listening UNIX socket (QEMU's channel) has accepted, from
 * `ss -xp`: the accepted socket carries the listener's path, its peer inode names the client.
 */
export async function acceptedClients(socketPath: string): Promise<{ pid: number; command: string }[]> {
  const out = (await run('ss', ['-xpn'], { encoding: 'utf8', maxBuffer: 16 << 20 })).stdout;
  const rows = out.split('\n').map((l) => l.trim().split(/\s+/));
  // Columns: Netid State Recv-Q Send-Q Local-Address Local-Port Peer-Address Peer-Port [Process]
  const peers = rows.filter((r) => r[4] === socketPath && r[1] === 'ESTAB').map((r) => r[7]);
  const clients: { pid: number; command: string }[] = [];
  for (const r of rows) {
    if (!peers.includes(r[5])) continue;
    const m = /\(\("([^"]+)",pid=(\d+)/.exec(r.slice(8).join(' '));
    if (m) clients.push({ command: m[1]!, pid: Number(m[2]) });
  }
  return clients;
}
