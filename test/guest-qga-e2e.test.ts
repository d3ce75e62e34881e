// qemu-ga end to end. With the real Debian qemu-ga inside a network namespace: VM.getStats must
// show exactly the interfaces, MACs and addresses `ip -j addr` shows in that namespace; killing
// the agent makes the VM unresponsive with its last data kept; restarting it recovers without
// restarting the daemon. With a scripted agent on a real socket: a silent agent, a stalled one,
// stale replies and agent errors.
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { beforeAll, describe, expect, it } from 'vitest';
import type { GuestNetworkDeviceInfo, VmStats } from '../src/wire.js';
import { channelPath, newVmId } from './helpers/channelsDir.js';
import { fixtureBytes } from './helpers/guestFixtures.js';
import { useGuestDaemon } from './helpers/guestDaemon.js';
import { createNetns, ipn } from './helpers/netns.js';
import { missing } from './helpers/prereq.js';
import { QEMU_GA, startQemuGa } from './helpers/qemuGa.js';
import { ScriptedGuest, actAsQemuGa, eventually } from './helpers/scriptedGuest.js';

const QGA = 'org.qemu.guest_agent.0';

interface IpLink {
  ifname: string;
  address?: string;
  addr_info: { family: string; local: string }[];
}

/** What `ip -j addr` shows in the namespace, in VDSM's shape, keyed by name, addresses sorted. */
function ipView(ns: string): Record<string, { hw: string; inet: string[]; inet6: string[] }> {
  const links = JSON.parse(ipn(ns, '-j', 'addr', 'show')) as IpLink[];
  return Object.fromEntries(
    links.map((l) => [
      l.ifname,
      {
        hw: (l.address ?? '').toLowerCase(),
        inet: l.addr_info
          .filter((a) => a.family === 'inet')
          .map((a) => a.local)
          .sort(),
        inet6: l.addr_info
          .filter((a) => a.family === 'inet6')
          .map((a) => a.local)
          .sort(),
      },
    ]),
  );
}

function daemonView(
  netIfaces: GuestNetworkDeviceInfo[],
): Record<string, { hw: string; inet: string[]; inet6: string[] }> {
  return Object.fromEntries(
    netIfaces.map((i) => [i.name, { hw: i.hw, inet: [...i.inet].sort(), inet6: [...i.inet6].sort() }]),
  );
}

const needs = missing({ root: true, commands: ['ip', QEMU_GA] });

describe.skipIf(needs)('real qemu-ga in a network namespace', () => {
  const t = useGuestDaemon(['--qga-poll-interval', '0.2', '--qga-timeout', '2']);
  let ns: string;
  const vm = newVmId();
  const stats = (): Promise<VmStats> => t.stats(vm);

  beforeAll(() => {
    ns = createNetns('vgq');
    execFileSync('ip', [
      'netns',
      'exec',
      ns,
      'sysctl',
      '-q',
      '-w',
      'net.ipv6.conf.all.accept_dad=0',
      'net.ipv6.conf.default.accept_dad=0',
    ]);
    ipn(
      ns,
      'link',
      'add',
      'g0',
      'address',
      '52:54:00:1a:2b:3c',
      'type',
      'veth',
      'peer',
      'name',
      'g1',
      'address',
      '52:54:00:1a:2b:3d',
    );
    ipn(ns, 'addr', 'add', '192.0.2.10/24', 'dev', 'g0');
    ipn(ns, 'addr', 'add', '192.0.2.11/24', 'dev', 'g0', 'label', 'g0:1'); // a label alias: merged into g0
    ipn(ns, 'addr', 'add', '2001:db8::10/64', 'dev', 'g0', 'nodad');
    ipn(ns, 'addr', 'add', '198.51.100.1/30', 'dev', 'g1');
    ipn(ns, 'link', 'set', 'g0', 'up');
    ipn(ns, 'link', 'set', 'g1', 'up');
  });

  it('VM.getStats equals `ip -j addr` in the namespace: every interface, MAC and address', async () => {
    await startQemuGa(ns, channelPath(t.dir, vm, QGA));
    let expected: ReturnType<typeof ipView> = {};
    const s = await eventually(
      async () => {
        expected = ipView(ns);
        return stats();
      },
      (x) => isEqual(daemonView(x.netIfaces), expected),
      15_000,
      'daemon view equal to ip -j addr',
    );
    expect(daemonView(s.netIfaces)).toEqual(expected);
    if (process.env.SHOW_QGA_E2E) console.log(JSON.stringify({ ipJAddr: expected, vmGetStats: s }, null, 1));
    expect(Object.keys(expected).sort()).toEqual(['g0', 'g1', 'lo']);
    expect(expected.g0!.inet).toEqual(['192.0.2.10', '192.0.2.11']);
    expect(expected.g0!.hw).toBe('52:54:00:1a:2b:3c');
    // Derived and other fields, from the same agent.
    const v4 = s.netIfaces.flatMap((i) => i.inet).filter((a) => !a.startsWith('127.'));
    expect(s.guestIPs).toBe(v4.join(' '));
    expect(s.guestName).toBe(os.hostname()); // a network namespace shares the host's UTS name
    expect(s.guestOs).toBe(os.release());
    expect(s.guestAgentStatus).toBe('responsive');
  });

  it('killed: unresponsive with the last data kept; restarted: recovers, no daemon restart', async () => {
    const before = await stats();
    expect(before.guestAgentStatus).toBe('responsive');
    const pid = t.d.proc.pid;
    // The agent is the listener; find it by its socket's VM and kill it as a crash would.
    const agents = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split(/\s+/).filter(Boolean);
    for (const p of agents) process.kill(Number(p), 'SIGKILL');
    const down = await eventually(
      stats,
      (x) => x.guestAgentStatus === 'unresponsive',
      15_000,
      'unresponsive after kill',
    );
    expect(down.netIfaces).toEqual(before.netIfaces);
    expect(down.guestIPs).toBe(before.guestIPs);
    expect(down.guestName).toBe(before.guestName);
    ipn(ns, 'addr', 'add', '192.0.2.99/24', 'dev', 'g0'); // changed while the agent was away
    await startQemuGa(ns, channelPath(t.dir, vm, QGA));
    const up = await eventually(
      stats,
      (x) => x.guestAgentStatus === 'responsive' && x.guestIPs.includes('192.0.2.99'),
      20_000,
      'recovered',
    );
    expect(daemonView(up.netIfaces)).toEqual(ipView(ns));
    expect(t.d.proc.pid).toBe(pid);
    expect(t.d.proc.exitCode).toBeNull();
  });
});

function isEqual(a: unknown, b: unknown): boolean {
  try {
    expect(a).toEqual(b);
    return true;
  } catch {
    return false;
  }
}

describe('scripted qemu-ga on a real socket', () => {
  const t = useGuestDaemon(['--qga-poll-interval', '0.2', '--qga-timeout', '0.5']);
  const fixtureReply = (command: string): Buffer =>
    command === 'guest-network-get-interfaces'
      ? fixtureBytes('qga/alias-interfaces.json')
      : command === 'guest-get-host-name'
        ? fixtureBytes('qga/host-name.json')
        : fixtureBytes('qga/error-command-not-found.json');

  it('an agent that never answers is unresponsive (qga not answering) and is resynced with a new random id after each timeout', async () => {
    const vm = newVmId();
    const g = await ScriptedGuest.listen(channelPath(t.dir, vm, QGA));
    const syncs = await eventually(
      () => g.received.filter((l) => l.includes('guest-sync-delimited')),
      (l) => l.length >= 3,
      15_000,
      'repeated resyncs',
    );
    expect(syncs.every((l) => l.charCodeAt(0) === 0xff)).toBe(true); // 0xFF-prefixed (latin1-decoded)
    const ids = syncs.map((l) => (JSON.parse(l.slice(1)) as { arguments: { id: number } }).arguments.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(g.received.some((l) => l.includes('guest-network-get-interfaces'))).toBe(false); // never polled unsynced
    expect(await t.stats(vm)).toMatchObject({ guestAgentStatus: 'unresponsive', netIfaces: [] });
    await g.close();
  });

  it('a stalled agent turns unresponsive keeping its data; stale replies are skipped on resync', async () => {
    const vm = newVmId();
    const g = await ScriptedGuest.listen(channelPath(t.dir, vm, QGA));
    const agent = actAsQemuGa(g, fixtureReply);
    const s = await eventually(
      () => t.stats(vm),
      (x) => x.guestAgentStatus === 'responsive' && x.netIfaces.length > 0,
      10_000,
      'first poll',
    );
    expect(s.netIfaces.map((i) => i.name)).toEqual(['lo', 'eth0', 'eth1']);
    expect(s.guestIPs).toBe('192.0.2.20 198.51.100.7');
    expect(s.guestName).toBe('vm');
    expect(s.guestOs).toBe(''); // CommandNotFound: the agent is alive, the field stays unknown
    agent.silent = true;
    const stalled = await eventually(
      () => t.stats(vm),
      (x) => x.guestAgentStatus === 'unresponsive',
      10_000,
      'unresponsive',
    );
    expect(stalled.netIfaces).toEqual(s.netIfaces);
    expect(stalled.guestName).toBe('vm');
    // Stale replies both before the 0xFF and between it and the sync reply.
    agent.stale('{"return": {"host-name": "stale"}}\n', '{"return": [{"name": "stale0"}]}\n');
    agent.silent = false;
    await eventually(
      () => t.stats(vm),
      (x) => x.guestAgentStatus === 'responsive',
      10_000,
      'responsive again',
    );
    const names = new Set<string>();
    for (let i = 0; i < 5; i++) {
      const x = await t.stats(vm);
      names.add(x.guestName);
      for (const n of x.netIfaces) names.add(n.name);
    }
    expect(names.has('stale')).toBe(false);
    expect(names.has('stale0')).toBe(false);
    // CommandNotFound is not asked again on the same connection.
    expect(g.received.filter((l) => l.includes('guest-get-osinfo')).length).toBeLessThanOrEqual(2);
    await g.close();
  });

  it('a VM with both agents: qemu-ga data wins, oVirt fills what qemu-ga lacks (FQDN)', async () => {
    const vm = newVmId();
    const ovirt = await ScriptedGuest.listen(channelPath(t.dir, vm, 'ovirt-guest-agent.0'));
    await ovirt.send('network-interfaces', {
      interfaces: [{ name: 'eth0', hw: '52:54:00:00:00:aa', inet: ['10.9.9.9'], inet6: [] }],
    });
    await ovirt.send('host-name', { name: 'ovirt-name' });
    await ovirt.send('fqdn', { fqdn: 'vm.ovirt.example' });
    await eventually(
      () => t.stats(vm),
      (x) => x.guestIPs === '10.9.9.9',
      10_000,
      'oVirt data first',
    );
    const qga = await ScriptedGuest.listen(channelPath(t.dir, vm, QGA));
    actAsQemuGa(qga, (command) =>
      command === 'guest-network-get-interfaces'
        ? fixtureBytes('qga/linux-interfaces.json')
        : command === 'guest-get-host-name'
          ? fixtureBytes('qga/host-name.json')
          : fixtureBytes('qga/osinfo.json'),
    );
    const s = await eventually(
      () => t.stats(vm),
      (x) => x.guestIPs === '192.0.2.10',
      10_000,
      'qemu-ga data wins',
    );
    expect(s).toMatchObject({
      guestName: 'vm',
      guestFQDN: 'vm.ovirt.example',
      guestOs: '6.1.0-18-amd64',
      guestAgentStatus: 'responsive',
    });
    expect(s.netIfaces.map((i) => i.name)).toEqual(['lo', 'vg0']);
    await qga.close(); // its socket goes: the oVirt data is what is left
    await eventually(
      () => t.stats(vm),
      (x) => x.guestIPs === '10.9.9.9' && x.guestName === 'ovirt-name',
      10_000,
      'oVirt data after qemu-ga left',
    );
    await ovirt.close();
  });
});

describe('--qga-via libvirt, for a VM no libvirtd runs', () => {
  const t = useGuestDaemon(['--qga-via', 'libvirt', '--qga-poll-interval', '0.2']);

  it('knows the VM from its socket but never connects to the qemu-ga socket (libvirtd owns it)', async () => {
    const vm = newVmId();
    const g = await ScriptedGuest.listen(channelPath(t.dir, vm, QGA));
    await eventually(
      () => t.stats(vm),
      (x) => x.status === 'Up',
    );
    // No libvirtd here (or, while the libvirt tests run, one that does not know this VM).
    await t.d.waitForLog(
      (l) => l.vmId === vm && (l.code === 'LIBVIRT_ERR_UNAVAILABLE' || l.code === 'LIBVIRT_ERR_NO_DOMAIN'),
    );
    await new Promise((r) => setTimeout(r, 500)); // several poll intervals
    expect(g.connections).toBe(0);
    expect((await t.stats(vm)).guestAgentStatus).toBe('unresponsive'); // libvirt could not ask it
    await g.close();
  });
});
