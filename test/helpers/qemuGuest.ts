// Real QEMU guests for the VM tests: the tiny image of scripts/build-test-guest.sh booted under
// TCG emulation (no KVM here), with a qemu-ga channel named as oVirt names it
// (<channels>/<uuid>.org.qemu.guest_agent.0), virtio NICs with fixed MACs on user-mode networking
// with restrict=on (no guest packet ever leaves QEMU), and addresses and a host name set by the
// guest's init from the kernel command line. Every guest booted here is killed, and every
// directory made here removed, when the test file ends — also when it fails.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync, rmSync, existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from './daemon.js';
import { tempDir } from './channelsDir.js';
import { atFileEnd } from './fileCleanup.js';

const run = promisify(execFile);

export const QGA_CHANNEL = 'org.qemu.guest_agent.0';
export const OVIRT_CHANNEL = 'ovirt-guest-agent.0';

export interface GuestImage {
  kernel: string;
  initrd: string;
}

export interface NicSpec {
  /** The name the guest kernel gives it (eth0, eth1, ... in the order given). */
  name: string;
  mac: string;
  /** Addresses with prefix length, as `ip addr add` takes them. */
  addresses: string[];
}

export interface GuestSpec {
  uuid?: string;
  hostname?: string;
  nics?: NicSpec[];
  /** Directory for the channel sockets; a fresh one (removed afterwards) when absent. */
  channelsDir?: string;
  /** Also offer the oVirt agent channel socket, as oVirt's domains do (nothing in this guest speaks on it). */
  ovirtChannel?: boolean;
  memoryMiB?: number;
}

export interface BootedGuest {
  uuid: string;
  hostname: string;
  nics: NicSpec[];
  channelsDir: string;
  qgaSocket: string;
  proc: ChildProcess;
  /** Milliseconds from spawning QEMU until the guest's init said it was ready. */
  bootMs: number;
  serialLog: () => string;
  /** Stops QEMU (SIGTERM: it removes its channel sockets, as libvirt does on destroy) and waits. */
  kill: () => Promise<void>;
}

/** The full-length argument list, public so a test can show exactly what was booted. */
interface GuestCommand {
  argv: string[];
  serialPath: string;
}

const guests = new Set<BootedGuest>();
let imagePromise: Promise<GuestImage> | undefined;
let macCounter = 0;
const runByte = randomBytes(1)[0]!;

// Registered when a test file imports this module (collection time), so it runs after that
// file's tests whatever they did. (Benchmarks import it outside vitest and clean up themselves.)
atFileEnd(async () => {
  await Promise.all([...guests].map((g) => g.kill()));
});
// A worker that dies without running afterAll must not leave emulators behind.
process.on('exit', () => {
  for (const g of guests) g.proc.kill('SIGKILL');
});

/** Builds the image once per test process (the script's own cache makes later runs instant). */
export function testGuestImage(): Promise<GuestImage> {
  imagePromise ??= run('bash', [path.join(ROOT, 'scripts/build-test-guest.sh')], {
    encoding: 'utf8',
    maxBuffer: 1 << 20,
  }).then(({ stdout }) => {
    const dir = stdout.trim().split('\n').pop()!;
    return { kernel: path.join(dir, 'vmlinuz'), initrd: path.join(dir, 'initrd.img') };
  });
  return imagePromise;
}

/** Locally administered, unique within this run: 52:54:00 (QEMU's prefix), then run and counter. */
function uniqueMac(): string {
  const n = ++macCounter;
  return ['52', '54', '00', hex(runByte), hex((n >> 8) & 0xff), hex(n & 0xff)].join(':');
}

function hex(n: number): string {
  return n.toString(16).padStart(2, '0');
}

/** The EUI-64 link-local IPv6 address Linux derives from a MAC (addr_gen_mode eui64, the default). */
function linkLocalFromMac(mac: string): string {
  const b = mac.split(':').map((h) => parseInt(h, 16));
  b[0]! ^= 0x02;
  const groups = [(b[0]! << 8) | b[1]!, (b[2]! << 8) | 0xff, (0xfe << 8) | b[3]!, (b[4]! << 8) | b[5]!];
  return 'fe80::' + groups.map((g) => g.toString(16)).join(':');
}

/** Two NICs with documentation-range addresses derived from `index` (distinct per guest). */
export function defaultNics(index: number): NicSpec[] {
  const i = 10 + index;
  return [
    { name: 'eth0', mac: uniqueMac(), addresses: [`192.0.2.${i}/24`, `2001:db8::${i.toString(16)}/64`] },
    { name: 'eth1', mac: uniqueMac(), addresses: [`198.51.100.${i}/24`] },
  ];
}

function guestCommand(
  image: GuestImage,
  g: { uuid: string; hostname: string; nics: NicSpec[]; channelsDir: string; ovirtChannel: boolean; memoryMiB: number },
  serialPath: string,
): GuestCommand {
  // no_timer_check: on a loaded host the TCG vCPU is descheduled during the kernel's IO-APIC
  // timer check, which then panics ("IO-APIC + timer doesn't work!"); the check proves nothing in a VM.
  const cmdline = [
    'console=ttyS0',
    'panic=-1',
    'quiet',
    'no_timer_check',
    `vdsm_hostname=${g.hostname}`,
    ...g.nics.map((n) => `vdsm_if_${n.name}=${n.addresses.join(',')}`),
  ];
  const argv = [
    'qemu-system-x86_64',
    '-accel',
    'tcg',
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    '-no-reboot',
    '-m',
    String(g.memoryMiB),
    '-smp',
    '1',
    '-uuid',
    g.uuid,
    '-kernel',
    image.kernel,
    '-initrd',
    image.initrd,
    '-append',
    cmdline.join(' '),
    '-serial',
    `file:${serialPath}`,
    '-device',
    'virtio-serial-pci,id=vser0',
    '-chardev',
    `socket,path=${path.join(g.channelsDir, `${g.uuid}.${QGA_CHANNEL}`)},server=on,wait=off,id=qga0`,
    '-device',
    `virtserialport,bus=vser0.0,chardev=qga0,name=${QGA_CHANNEL}`,
  ];
  if (g.ovirtChannel) {
    argv.push(
      '-chardev',
      `socket,path=${path.join(g.channelsDir, `${g.uuid}.${OVIRT_CHANNEL}`)},server=on,wait=off,id=ovirt0`,
      '-device',
      `virtserialport,bus=vser0.0,chardev=ovirt0,name=${OVIRT_CHANNEL}`,
    );
  }
  g.nics.forEach((n, i) => {
    // Fixed PCI slots in NIC order, so the guest kernel names them eth0, eth1, ... in that order.
    argv.push(
      '-netdev',
      `user,id=net${i},restrict=on`,
      '-device',
      `virtio-net-pci,netdev=net${i},mac=${n.mac},addr=0x${(0x10 + i).toString(16)}`,
    );
  });
  return { argv, serialPath };
}

let guestIndex = 0;

/**
 * How long a boot may take before it counts as failed. A TCG boot takes 5-20 s on a quiet
 * 2-core host and several times that with both cores busy; the wait ends at the guest's "ready"
 * line, so this bound only decides how long a broken boot takes to report.
 */
const BOOT_TIMEOUT_MS = 240_000;
/** Per-test timeout for tests that boot guests: above BOOT_TIMEOUT_MS, so the boot's own error is what a failure shows. */
export const VM_TEST_TIMEOUT_MS = BOOT_TIMEOUT_MS + 60_000;

/** Boots a guest and resolves once its init reports ready (qemu-ga started, addresses set). */
export async function bootGuest(spec: GuestSpec = {}, readyTimeoutMs = BOOT_TIMEOUT_MS): Promise<BootedGuest> {
  const image = await testGuestImage();
  const index = guestIndex++;
  const uuid = spec.uuid ?? randomUUID();
  const hostname = spec.hostname ?? `guest${index}`;
  const nics = spec.nics ?? defaultNics(index);
  const channelsDir = spec.channelsDir ?? tempDir('vdsm-vm-');
  const work = tempDir('vdsm-vm-serial-');
  const serialPath = path.join(work, 'serial.log');
  const { argv } = guestCommand(
    image,
    { uuid, hostname, nics, channelsDir, ovirtChannel: spec.ovirtChannel ?? false, memoryMiB: spec.memoryMiB ?? 256 },
    serialPath,
  );
  const started = Date.now();
  // setpriv: the emulator gets SIGKILL if the test process dies without cleaning up.
  const proc = spawn('setpriv', ['--pdeathsig', 'SIGKILL', ...argv], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const serialLog = (): string => (existsSync(serialPath) ? readFileSync(serialPath, 'utf8') : '');
  const qgaSocket = path.join(channelsDir, `${uuid}.${QGA_CHANNEL}`);
  const guest: BootedGuest = {
    uuid,
    hostname,
    nics,
    channelsDir,
    qgaSocket,
    proc,
    bootMs: 0,
    serialLog,
    kill: async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      }
      guests.delete(guest);
      // After a SIGKILL QEMU leaves its sockets; remove what belongs to this VM only.
      if (existsSync(channelsDir)) {
        for (const f of readdirSync(channelsDir))
          if (f.startsWith(`${uuid}.`)) rmSync(path.join(channelsDir, f), { force: true });
      }
    },
  };
  guests.add(guest);
  const deadline = started + readyTimeoutMs;
  while (!serialLog().includes(`vdsm-test-guest: ready ${hostname}`)) {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      throw new Error(
        `QEMU exited (${proc.exitCode ?? proc.signalCode}) before the guest was ready: ${stderr}\nserial:\n${serialLog()}`,
      );
    }
    if (Date.now() > deadline) {
      await guest.kill();
      throw new Error(`guest ${uuid} not ready within ${readyTimeoutMs} ms; serial:\n${serialLog()}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  guest.bootMs = Date.now() - started;
  return guest;
}

/** What a guest configured, in VDSM's netIfaces shape: lo first, then the NICs in order, each
 * with its link-local IPv6 (addresses sorted, since their order is the guest kernel's business). */
export function expectedNetIfaces(
  g: Pick<BootedGuest, 'nics'>,
): { name: string; hw: string; inet: string[]; inet6: string[] }[] {
  const bare = (a: string): string => a.split('/')[0]!;
  return [
    { name: 'lo', hw: '00:00:00:00:00:00', inet: ['127.0.0.1'], inet6: ['::1'] },
    ...g.nics.map((n) => ({
      name: n.name,
      hw: n.mac,
      inet: n.addresses
        .filter((a) => !a.includes(':'))
        .map(bare)
        .sort(),
      inet6: [...n.addresses.filter((a) => a.includes(':')).map(bare), linkLocalFromMac(n.mac)].sort(),
    })),
  ];
}

/** The same shape with each address list sorted, to compare a report with expectedNetIfaces. */
export function sortedAddresses<T extends { inet: string[]; inet6: string[] }>(ifaces: T[]): T[] {
  return ifaces.map((i) => ({ ...i, inet: [...i.inet].sort(), inet6: [...i.inet6].sort() }));
}
