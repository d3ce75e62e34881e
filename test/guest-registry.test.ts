// VmRegistry: VMs come and go with their channel sockets, data merges per SPEC (qemu-ga wins),
// and listeners hear of real changes only.
import { describe, expect, it } from 'vitest';
import { VmRegistry, type VmChange } from '../src/vms/registry.js';
import type { GuestNetworkDeviceInfo } from '../src/wire.js';

const VM = '6f2b1a8e-0c5d-4e6f-9a7b-8c9d0e1f2a3b';
const QGA = 'org.qemu.guest_agent.0' as const;
const OVIRT = 'ovirt-guest-agent.0' as const;

function setup(): { reg: VmRegistry; changes: VmChange[]; clock: { now: number } } {
  const clock = { now: 1_000_000 };
  const reg = new VmRegistry({ clock: () => clock.now });
  const changes: VmChange[] = [];
  reg.onChange((c) => changes.push(c));
  return { reg, changes, clock };
}

const eth0 = (...inet: string[]): GuestNetworkDeviceInfo[] => [
  { name: 'lo', hw: '00:00:00:00:00:00', inet: ['127.0.0.1'], inet6: ['::1'] },
  { name: 'eth0', hw: '52:54:00:00:00:01', inet, inet6: ['fe80::1'] },
];

describe('VmRegistry', () => {
  it('a VM is Up from its first socket, with VDSM types, [] netIfaces until reported, statusTime on the event clock', () => {
    const { reg, changes, clock } = setup();
    reg.channelAdded(VM.toUpperCase(), QGA);
    expect(reg.size).toBe(1);
    clock.now += 2500;
    expect(reg.get(VM)).toEqual({
      vmId: VM,
      status: 'Up',
      statusTime: String(2147483647 + clock.now),
      elapsedTime: '2',
      netIfaces: [],
      network: {},
      guestIPs: '',
      guestName: '',
      guestFQDN: '',
      guestOs: '',
      guestAgentStatus: 'unknown',
    });
    expect(changes.map((c) => [c.stats.status, c.changed])).toEqual([['Up', ['status']]]);
  });

  it('guestIPs: IPv4 of netIfaces in order, loopback left out', () => {
    const { reg } = setup();
    reg.channelAdded(VM, QGA);
    reg.report(VM, QGA, {
      netIfaces: [...eth0('192.0.2.1', '127.0.0.2'), { name: 'eth1', hw: '', inet: ['198.51.100.9'], inet6: [] }],
    });
    expect(reg.get(VM)!.guestIPs).toBe('192.0.2.1 198.51.100.9');
  });

  it('fires once per real change and never for a repeat', () => {
    const { reg, changes } = setup();
    reg.channelAdded(VM, OVIRT);
    reg.report(VM, OVIRT, {}); // first heartbeat: the agent is now responsive
    reg.report(VM, OVIRT, {}); // heartbeat again: nothing new
    reg.report(VM, OVIRT, { netIfaces: eth0('192.0.2.1') });
    reg.report(VM, OVIRT, { netIfaces: eth0('192.0.2.1') }); // same list, new objects
    reg.report(VM, OVIRT, { guestName: 'vm1' });
    reg.report(VM, OVIRT, { guestName: 'vm1', guestFQDN: '' });
    reg.report(VM, OVIRT, { netIfaces: eth0('192.0.2.2') });
    reg.report(VM, OVIRT, { guestOs: '6.1.0' }); // served, but not an announced field
    expect(changes.map((c) => c.changed)).toEqual([
      ['status'],
      ['guestAgentStatus'],
      ['netIfaces', 'guestIPs'],
      ['guestName'],
      ['netIfaces', 'guestIPs'],
    ]);
    expect(reg.get(VM)!.guestOs).toBe('6.1.0');
  });

  it('address order is a change (the engine shows them in order)', () => {
    const { reg, changes } = setup();
    reg.channelAdded(VM, QGA);
    reg.report(VM, QGA, { netIfaces: eth0('192.0.2.1', '192.0.2.2') });
    reg.report(VM, QGA, { netIfaces: eth0('192.0.2.2', '192.0.2.1') });
    expect(changes.at(-1)!.changed).toEqual(['netIfaces', 'guestIPs']);
  });

  it('qemu-ga data wins over oVirt data for a VM with both channels; each keeps its own', () => {
    const { reg } = setup();
    reg.channelAdded(VM, OVIRT);
    reg.channelAdded(VM, QGA);
    reg.report(VM, OVIRT, { netIfaces: eth0('10.0.0.1'), guestName: 'from-ovirt', guestFQDN: 'vm.example' });
    expect(reg.get(VM)!.guestIPs).toBe('10.0.0.1');
    reg.report(VM, QGA, { netIfaces: eth0('10.0.0.2'), guestName: 'from-qga' });
    const s = reg.get(VM)!;
    expect([s.guestIPs, s.guestName, s.guestFQDN]).toEqual(['10.0.0.2', 'from-qga', 'vm.example']);
    reg.channelRemoved(VM, QGA); // its data goes with its socket
    expect(reg.get(VM)!.guestName).toBe('from-ovirt');
  });

  it('unresponsive keeps the last data; a silent oVirt agent never heard stays unknown, a qemu-ga not answering is unresponsive', () => {
    const { reg, changes } = setup();
    reg.channelAdded(VM, OVIRT);
    reg.setAgentStatus(VM, OVIRT, 'unresponsive');
    expect(reg.get(VM)!.guestAgentStatus).toBe('unknown');
    reg.channelRemoved(VM, OVIRT);
    reg.channelAdded(VM, QGA);
    reg.setAgentStatus(VM, QGA, 'unresponsive');
    expect(reg.get(VM)!.guestAgentStatus).toBe('unresponsive');
    reg.setAgentStatus(VM, QGA, 'responsive');
    reg.report(VM, QGA, { netIfaces: eth0('192.0.2.1'), guestName: 'vm' });
    reg.setAgentStatus(VM, QGA, 'unresponsive');
    const s = reg.get(VM)!;
    expect([s.guestAgentStatus, s.guestIPs, s.guestName]).toEqual(['unresponsive', '192.0.2.1', 'vm']);
    expect(changes.at(-1)!.changed).toEqual(['guestAgentStatus']);
  });

  it('the last socket removed: one Down change, and the VM is unknown', () => {
    const { reg, changes } = setup();
    reg.channelAdded(VM, QGA);
    reg.channelAdded(VM, OVIRT);
    reg.channelRemoved(VM, QGA);
    expect(reg.get(VM)!.status).toBe('Up');
    reg.channelRemoved(VM, OVIRT);
    reg.channelRemoved(VM, OVIRT);
    expect(reg.get(VM)).toBeUndefined();
    expect(reg.size).toBe(0);
    expect(changes.filter((c) => c.stats.status === 'Down')).toHaveLength(1);
    reg.report(VM, QGA, { guestName: 'late' }); // a late report for a gone VM is ignored
    expect(reg.size).toBe(0);
  });

  it('served netIfaces cannot be altered by a consumer', () => {
    const { reg } = setup();
    reg.channelAdded(VM, QGA);
    reg.report(VM, QGA, { netIfaces: eth0('192.0.2.1') });
    const s = reg.get(VM)!;
    expect(() => s.netIfaces[1]!.inet.push('6.6.6.6')).toThrow();
    expect(reg.all()).toHaveLength(1);
  });
});
