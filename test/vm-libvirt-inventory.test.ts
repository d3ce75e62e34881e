// VMs from a real libvirtd (issue 11): the VM list, status and lifecycle events, and host-side
// vNICs come from libvirt. References are libvirt's own tools: `virsh domstate --reason`,
// `virsh domiflist`, `virsh domifstat`. Domains are transient TCG guests started by the test; two
// host bridges without uplinks carry the bridged vNICs (nothing leaves the host).
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { RpcCallError, RpcClient } from '../src/client/rpcClient.js';
import type { VmNetworkStats, VmStats } from '../src/wire.js';
import { startDaemon, type RunningDaemon } from './helpers/daemon.js';
import { atFileEnd } from './helpers/fileCleanup.js';
import {
  acceptedClients,
  LIBVIRTD_WAIT_MS,
  LIBVIRT_SOCKET,
  OVIRT_CHANNELS_DIR,
  startLibvirtd,
  virsh,
  type Libvirtd,
  type LibvirtDomain,
} from './helpers/libvirtd.js';
import { missing } from './helpers/prereq.js';
import { testGuestImage } from './helpers/qemuGuest.js';
import { eventually } from './helpers/scriptedGuest.js';

const skip = missing({
  root: true,
  commands: [
    'qemu-system-x86_64',
    'qemu-ga',
    'apt-get',
    'cpio',
    'libvirtd',
    'virtlogd',
    'virsh',
    'unshare',
    'setpriv',
    'ss',
    'ip',
    'ps',
  ],
});

type Stats = VmStats & { network: Record<string, VmNetworkStats> };

async function stats(c: RpcClient, vmId: string): Promise<Stats> {
  return (await c.call<Stats[]>('VM.getStats', { vmID: vmId }))[0]!;
}

/** `virsh domiflist`: Interface, Type, Source, Model, MAC. */
async function domiflist(
  dom: string,
): Promise<{ device: string; type: string; source: string; model: string; mac: string }[]> {
  const out = await virsh('domiflist', dom);
  return out
    .split('\n')
    .slice(2)
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length === 5)
    .map(([device, type, source, model, mac]) => ({
      device: device!,
      type: type!,
      source: source!,
      model: model!,
      mac: mac!,
    }));
}

/** `virsh domifstat DOM DEV` as a map (rx_bytes, tx_bytes, rx_errs, ...). */
async function domifstat(dom: string, dev: string): Promise<Record<string, string>> {
  const out = await virsh('domifstat', dom, dev);
  return Object.fromEntries(
    out
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .filter((f) => f.length === 3)
      .map((f) => [f[1]!, f[2]!]),
  );
}

/** A command started in the guest: `done` resolves once it has exited. */
interface GuestCommand {
  done: Promise<GuestExecStatus>;
  /** qemu-ga's guest-exec-status now: whether it exited, its exit code and what it printed (base64). */
  status: () => Promise<GuestExecStatus>;
}

interface GuestExecStatus {
  exited: boolean;
  exitcode?: number;
  'out-data'?: string;
  'err-data'?: string;
}

/** Starts a shell command in the guest (qemu-ga guest-exec through libvirt, its output captured). */
async function guestExec(dom: string, command: string): Promise<GuestCommand> {
  const started = JSON.parse(
    await virsh(
      'qemu-agent-command',
      dom,
      JSON.stringify({
        execute: 'guest-exec',
        arguments: { path: '/bin/sh', arg: ['-c', command], 'capture-output': true },
      }),
    ),
  ) as { return: { pid: number } };
  const status = async (): Promise<GuestExecStatus> =>
    (
      JSON.parse(
        await virsh(
          'qemu-agent-command',
          dom,
          JSON.stringify({ execute: 'guest-exec-status', arguments: { pid: started.return.pid } }),
        ),
      ) as { return: GuestExecStatus }
    ).return;
  return {
    done: eventually(status, (st) => st.exited, 60_000, `${command} exited`),
    status,
  };
}

/** `virsh domstate --reason`, e.g. "paused (user)". */
async function domstate(dom: string): Promise<string> {
  return (await virsh('domstate', dom, '--reason')).trim();
}

/** The raw JSON text of one call's result (to see number formats JSON.parse hides). */
function rawCall(url: string, method: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.on('open', () => ws.send(JSON.stringify({ jsonrpc: '2.0', id: 1, method })));
    ws.on('message', (d: Buffer) => {
      resolve(d.toString());
      ws.close();
    });
    ws.on('error', reject);
  });
}

/** Host bridges this file made; removed when it ends (registered at import: vitest ignores later hooks). */
const bridges = new Set<string>();
atFileEnd(() => {
  for (const name of bridges) {
    try {
      execFileSync('ip', ['link', 'del', name]);
    } catch {
      // already gone
    }
  }
});

function bridge(): string {
  const name = `vdsmbr${randomBytes(3).toString('hex')}`;
  execFileSync('ip', ['link', 'add', 'name', name, 'type', 'bridge']);
  bridges.add(name);
  execFileSync('ip', ['link', 'set', name, 'up']);
  return name;
}

interface Event {
  vmId: string;
  body: Record<string, unknown>;
}

function vmEvents(sub: RpcClient, vmId: string): Event[] {
  return sub.notifications
    .filter((n) => n.method === `|virt|VM_status|${vmId}`)
    .map((n) => ({ vmId, body: (n.params as Record<string, Record<string, unknown>>)[vmId]! }));
}

describe.skipIf(skip)('VMs from a real libvirtd', () => {
  let lv: Libvirtd;
  let bare: LibvirtDomain;
  let two: LibvirtDomain;
  let br: string[];
  let d: RunningDaemon;
  let c: RpcClient;
  let sub: RpcClient;

  beforeAll(async () => {
    await testGuestImage();
    br = [bridge(), bridge()];
    lv = await startLibvirtd();
    bare = await lv.createDomain({ hostname: 'lv-bare', noChannels: true });
    two = await lv.createDomain({ hostname: 'lv-two', bridges: br });
    d = await startDaemon([
      '--listen',
      '127.0.0.1:0',
      '--channels-dir',
      OVIRT_CHANNELS_DIR,
      '--qga-via',
      'libvirt',
      '--qga-poll-interval',
      '1',
      '--log-level',
      'debug',
    ]);
    c = await RpcClient.connect(d.url);
    sub = await RpcClient.connect(d.url);
    expect(await sub.call('Host.subscribeEvents', { prefixes: ['|virt|'] })).toBe(true);
  }, LIBVIRTD_WAIT_MS);
  afterAll(async () => {
    await c.close();
    await sub.close();
    await d.stop();
  });

  // On a failure, the daemon's own account of it (libvirt steps, counter samples, guest agents,
  // warnings; not each call and connection), so that a failure in CI says why.
  beforeEach((ctx) => {
    ctx.onTestFailed(() => {
      const lines = d.logs().filter((l) => l.part !== 'rpc' || (l.level !== 'debug' && l.level !== 'info'));
      console.log(`[vm] daemon log (last ${Math.min(lines.length, 400)} of ${lines.length} lines):`);
      for (const l of lines.slice(-400)) console.log(JSON.stringify(l));
    });
  });

  it('lists a domain without agent channels: status from libvirt, elapsedTime from its start, no vNIC libvirt does not manage', async () => {
    expect(await domstate(bare.uuid)).toBe('running (booted)');
    const s = await stats(c, bare.uuid);
    expect(s).toMatchObject({ vmId: bare.uuid, status: 'Up', guestName: '', guestAgentStatus: 'unknown', network: {} });
    expect(s.netIfaces ?? []).toEqual([]);
    expect(await domiflist(bare.uuid)).toEqual([]); // its NICs are QEMU's own (user mode): libvirt has none
    // elapsedTime counts from the QEMU process's start, as `ps -o etimes` does.
    const pid = Number((await import('node:fs')).readFileSync(`/run/libvirt/qemu/${bare.name}.pid`, 'utf8'));
    const etimes = Number(execFileSync('ps', ['-o', 'etimes=', '-p', String(pid)], { encoding: 'utf8' }).trim());
    const again = await stats(c, bare.uuid);
    expect(Math.abs(Number(again.elapsedTime) - etimes)).toBeLessThanOrEqual(2);
    console.log(
      `[vm] libvirt inventory: Host.getAllVmStats, the domain without agent channels ->\n${JSON.stringify((await c.call<Stats[]>('Host.getAllVmStats')).find((x) => x.vmId === bare.uuid))}`,
    );
  });

  it('--qga-via direct never talks to libvirt: no libvirt domain listed, no connection to its socket', async () => {
    const direct = await startDaemon([
      '--listen',
      '127.0.0.1:0',
      '--channels-dir',
      OVIRT_CHANNELS_DIR,
      '--qga-via',
      'direct',
    ]);
    const dc = await RpcClient.connect(direct.url);
    try {
      const all = await dc.call<Stats[]>('Host.getAllVmStats');
      expect(all.map((x) => x.vmId)).not.toContain(bare.uuid);
      expect((await acceptedClients(LIBVIRT_SOCKET)).map((x) => x.pid)).not.toContain(direct.proc.pid);
      expect(direct.logs().some((l) => l.part === 'libvirt')).toBe(false);
    } finally {
      await dc.close();
      await direct.stop();
    }
  });

  it('two vNICs on two bridges: `network` keyed by host device as virsh domiflist shows, counters as virsh domifstat, matched to the guest interfaces by MAC', async () => {
    const want = await domiflist(two.uuid);
    expect(want.map((n) => n.source)).toEqual(br);
    let s = await eventually(
      () => stats(c, two.uuid),
      (x) => Object.keys(x.network).length === 2,
      15_000,
      'two vNICs',
    );
    for (const n of want) {
      expect(s.network[n.device]).toMatchObject({
        name: n.device,
        macAddr: n.mac,
        model: n.model,
        bridge: n.source,
        speed: '1000',
        state: 'unknown',
      });
      expect(s.network[n.device]!.alias).toMatch(/^net\d+$/);
    }
    // The guest sends some traffic on both NICs (broadcast pings: the guest's busybox ping has no
    // -b, it pings a broadcast address as given); the counters settle and then equal libvirt's.
    const pinged = await (
      await guestExec(two.uuid, 'ping -q -c 3 -W 1 192.0.2.255; ping -q -c 3 -W 1 198.51.100.255')
    ).done;
    expect(
      Buffer.from(pinged['out-data'] ?? '', 'base64')
        .toString()
        .match(/3 packets transmitted/g),
    ).toHaveLength(2);
    for (const n of want) {
      await eventually(
        async () => ({ ours: (await stats(c, two.uuid)).network[n.device]!, ref: await domifstat(two.uuid, n.device) }),
        ({ ours, ref }) =>
          ours.tx === ref.tx_bytes &&
          ours.rx === ref.rx_bytes &&
          ours.rxDropped === ref.rx_drop &&
          ours.txErrors === ref.tx_errs &&
          Number(ref.rx_bytes) > 0,
        30_000,
        `${n.device} counters as domifstat`,
      );
    }
    // The guest's interfaces (qemu-ga through libvirt) beside the host's vNICs: every vNIC's MAC is a guest interface's.
    s = await eventually(
      () => stats(c, two.uuid),
      (x) => (x.netIfaces ?? []).length >= 3,
      30_000,
      'guest interfaces',
    );
    const guestMacs = (s.netIfaces ?? []).map((i) => i.hw);
    for (const n of Object.values(s.network)) expect(guestMacs).toContain(n.macAddr);
    // sampleTime is a JSON number with a fraction (the engine reads it as a Double).
    const raw = await rawCall(d.url, 'Host.getAllVmStats');
    expect(raw).toMatch(/"sampleTime":\d+\.\d+[,}]/);
    expect(raw).not.toMatch(/"sampleTime":\d+[,}]/);
    console.log(`[vm] libvirt inventory: virsh domiflist ->\n${await virsh('domiflist', two.uuid)}`);
    console.log(
      `[vm] libvirt inventory: Host.getAllVmStats, the domain with two NICs ->\n${JSON.stringify((JSON.parse(raw) as { result: Stats[] }).result.find((x) => x.vmId === two.uuid))}`,
    );
  });

  it('while the guest sends traffic, the first call after each counter sample shows that sample: counters at least what virsh domifstat said before it, the reply as serialising it afresh gives', async () => {
    const devs = (await domiflist(two.uuid)).map((n) => n.device);
    // Broadcast pings on both NICs, 5 a second each, until the rounds below are done (stopped
    // then; -w 300 ends them anyway): the counters move at every sample (1 s here).
    const pings = await guestExec(
      two.uuid,
      'ping -q -i 0.2 -w 300 192.0.2.255 >/dev/null & ping -q -i 0.2 -w 300 198.51.100.255 >/dev/null & wait',
    );
    // sampleTime is the daemon's CLOCK_MONOTONIC in seconds, the clock this process reads too.
    const monotonicSec = (): number => Number(process.hrtime.bigint() / 1_000_000n) / 1000;
    const entry = (raw: string): Stats =>
      (JSON.parse(raw) as { result: Stats[] }).result.find((x) => x.vmId === two.uuid)!;
    try {
      for (let round = 0; round < 3; round++) {
        const before = await Promise.all(devs.map((dev) => domifstat(two.uuid, dev)));
        const t0 = monotonicSec();
        const raw = await eventually(
          () => rawCall(d.url, 'Host.getAllVmStats'),
          (text) => devs.every((dev) => entry(text).network[dev]!.sampleTime > t0),
          15_000,
          `a counter sample taken after virsh domifstat answered (at ${t0} s)`,
        ).catch(async (err: unknown) => {
          // Counters that stop moving give no new sample: say whether the guest still sent.
          throw new Error(`${(err as Error).message}; the guest's pings: ${JSON.stringify(await pings.status())}`);
        });
        const s = entry(raw);
        devs.forEach((dev, i) => {
          expect(BigInt(s.network[dev]!.rx)).toBeGreaterThanOrEqual(BigInt(before[i]!.rx_bytes!));
          expect(BigInt(s.network[dev]!.tx)).toBeGreaterThanOrEqual(BigInt(before[i]!.tx_bytes!));
        });
        expect(Number(s.network[devs[0]!]!.rx)).toBeGreaterThan(0);
        // Byte for byte what serialising the same values afresh gives (sample times keep their fraction).
        expect(raw).toBe(JSON.stringify(JSON.parse(raw)).replace(/"sampleTime":(\d+)(?=[,}])/g, '"sampleTime":$1.0'));
      }
      // The pings ran all along (an early exit means the traffic above was not theirs).
      expect(await pings.status()).toMatchObject({ exited: false });
    } finally {
      // Stopped also when a round failed: the next tests find the guest as it was.
      const stop = await guestExec(two.uuid, 'killall ping');
      await Promise.all([stop.done, pings.done]);
    }
  });

  it('a hot-plugged vNIC shows up (libvirt device-added event)', async () => {
    await virsh('attach-interface', two.uuid, 'bridge', br[0]!, '--model', 'e1000', '--live');
    const want = await domiflist(two.uuid);
    expect(want).toHaveLength(3);
    const s = await eventually(
      () => stats(c, two.uuid),
      (x) => Object.keys(x.network).length === 3,
      15_000,
      'third vNIC',
    );
    const added = want.find((n) => n.model === 'e1000')!;
    expect(s.network[added.device]).toMatchObject({ macAddr: added.mac, model: 'e1000', speed: '1000', bridge: br[0] });
  });

  it('a shutdown from within the guest: Powering down, then Down (user shut down) once', async () => {
    // The tiny guest has no /sbin/shutdown for qemu-ga's guest-shutdown: give it one (and wait
    // until it is there: guest-exec only starts the command).
    const made = await guestExec(
      two.uuid,
      'mkdir -p /sbin; printf "#!/bin/sh\\nexec poweroff -f\\n" > /sbin/shutdown; chmod +x /sbin/shutdown',
    );
    expect((await made.done).exitcode).toBe(0);
    const start = vmEvents(sub, two.uuid).length;
    await virsh('shutdown', two.uuid, '--mode', 'agent');
    const evs = await eventually(
      () => vmEvents(sub, two.uuid).slice(start),
      (e) => e.some((x) => x.body.status === 'Down'),
      30_000,
      'Down',
    );
    // Guest-data events may come between (the agent going away); status changes are one each.
    const transitions = evs.map((e) => e.body.status).filter((st, i, all) => i === 0 || st !== all[i - 1]);
    expect(transitions.filter((st) => st !== 'Up')).toEqual(['Powering down', 'Down']);
    expect(evs.filter((e) => e.body.status === 'Down')).toEqual([
      {
        vmId: two.uuid,
        body: {
          vmId: two.uuid,
          status: 'Down',
          statusTime: expect.stringMatching(/^\d+$/) as unknown,
          exitCode: 0,
          exitMessage: 'User shut down from within the guest',
          exitReason: 7,
        },
      },
    ]);
  });

  it('a libvirtd restart loses no VM and sends no Down', async () => {
    const listings = (): number => d.logs().filter((l) => l.msg === 'VMs from libvirt').length;
    const before = listings();
    const eventsBefore = sub.notifications.length;
    await lv.restartLibvirtd();
    await d.waitForLog(() => listings() > before, 30_000);
    const all = await c.call<Stats[]>('Host.getAllVmStats');
    expect(all.map((x) => x.vmId)).toContain(bare.uuid);
    expect(all.find((x) => x.vmId === bare.uuid)!.status).toBe('Up');
    expect(sub.notifications.slice(eventsBefore).filter((n) => JSON.stringify(n.params).includes('"Down"'))).toEqual(
      [],
    );
  });

  it('virsh suspend, resume, destroy: one VM_status event per change, in order, as virsh domstate says; Down once with exit fields, then gone', async () => {
    const seen = (): Event[] => vmEvents(sub, bare.uuid);
    const start = seen().length;
    const transcript: string[] = [];
    const step = async (cmd: string, status: string): Promise<void> => {
      await virsh(cmd, bare.uuid);
      const ev = await eventually(
        () => seen().slice(start),
        (e) => e.length > 0 && e[e.length - 1]!.body.status === status,
        15_000,
        `${status} event`,
      );
      const state =
        cmd === 'destroy'
          ? (await virsh('domstate', bare.uuid).catch((e: unknown) => (e as Error).message)).trim()
          : await domstate(bare.uuid);
      transcript.push(
        `$ virsh ${cmd} ${bare.name}\n  virsh domstate --reason: ${state}\n  event: ${JSON.stringify(sub.notifications.filter((n) => n.method.endsWith(bare.uuid)).at(-1))}`,
      );
      expect(ev[ev.length - 1]!.body.status).toBe(status);
    };
    await step('suspend', 'Paused');
    expect(await domstate(bare.uuid)).toBe('paused (user)');
    expect((await stats(c, bare.uuid)).status).toBe('Paused');
    await step('resume', 'Up');
    expect(await domstate(bare.uuid)).toBe('running (unpaused)');
    await step('destroy', 'Down');
    const evs = seen().slice(start);
    expect(evs.map((e) => e.body.status)).toEqual(['Paused', 'Up', 'Down']);
    expect(evs[2]!.body).toEqual({
      vmId: bare.uuid,
      status: 'Down',
      statusTime: expect.stringMatching(/^\d+$/) as unknown,
      exitCode: 0,
      exitMessage: 'Admin shut down from the engine',
      exitReason: 6,
    });
    const gone = await stats(c, bare.uuid).then(
      () => null,
      (e: unknown) => (e instanceof RpcCallError ? e.error.code : null),
    );
    expect(gone).toBe(1);
    expect((await c.call<Stats[]>('Host.getAllVmStats')).map((x) => x.vmId)).not.toContain(bare.uuid);
    console.log(`[vm] libvirt lifecycle transcript:\n${transcript.join('\n')}`);
  });
});
