// vdsm-agent-client's views against the real daemon (--qga-via direct) serving the five demo
// guests (fixtures/demo: oVirt agent, qemu-ga, both, Linux and Windows) played by the simulator.
// The text is what an operator reads on a terminal, so it is compared whole.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GuestSimulator } from '../src/sim/simulator.js';
import { loadGuestDir } from '../src/sim/guestFile.js';
import { RpcClient } from '../src/client/rpcClient.js';
import { nicsTable, type VmStatsView } from '../src/client/views.js';
import type { Route, VmStats } from '../src/wire.js';
import { CLIENT, ROOT, startDaemon, type RunningDaemon } from './helpers/daemon.js';
import { tempDir } from './helpers/channelsDir.js';
import { eventually } from './helpers/scriptedGuest.js';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function client(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLIENT, ...args], { timeout: 20_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr });
    });
  });
}

const guests = loadGuestDir(path.join(ROOT, 'fixtures/demo'));

describe('client views on the demo guests', () => {
  let d: RunningDaemon;
  let sim: GuestSimulator;
  let all: VmStats[];
  beforeAll(async () => {
    const dir = tempDir('vat-views-');
    sim = new GuestSimulator({ dir, heartbeatMs: 500, networkMs: 60_000, tickMs: 50 });
    await sim.addAll(guests);
    d = await startDaemon([
      '--listen',
      '127.0.0.1:0',
      '--channels-dir',
      dir,
      '--qga-via',
      'direct',
      '--qga-poll-interval',
      '0.2',
    ]);
    const ws = await RpcClient.connect(d.url);
    // Every guest has reported its interfaces and its agent answers.
    all = await eventually(
      () => ws.call<VmStats[]>('Host.getAllVmStats'),
      (vms) =>
        vms.length === guests.length &&
        vms.every((v) => (v.netIfaces ?? []).length > 0 && v.guestAgentStatus === 'responsive' && v.guestName !== ''),
      20_000,
      'all demo guests reported',
    );
    await ws.close();
  });
  afterAll(async () => {
    expect(await d.stop()).toBe(0);
    await sim.close();
  });

  it('vms: one line per VM, further IPv4s under the first, within 80 columns', async () => {
    const r = await client(['--url', d.url, 'vms', '--table']);
    expect(r).toEqual({
      code: 0,
      stderr: '',
      stdout: [
        'ID        NAME       STATUS  AGENT       IPV4',
        'a3d5f7e9  db02       Up      responsive  203.0.113.52',
        '                                         203.0.113.53',
        'e1f3b5d7  mail03     Up      responsive  192.0.2.93',
        '                                         10.30.0.93',
        '                                         10.31.0.93',
        '0f4c3a2e  web01      Up      responsive  192.0.2.21',
        '                                         192.0.2.22',
        '                                         192.168.122.1',
        'c7e9a1b3  WIN-APP02  Up      responsive  198.51.100.72',
        '                                         10.20.72.2',
        '6b1e9d40  WIN-SQL01  Up      responsive  198.51.100.40',
        '                                         10.10.20.40',
        '                                         10.10.20.41',
        '',
      ].join('\n'),
    });
    expect(r.stdout.split('\n').every((l) => l.length <= 80)).toBe(true);
  });

  it('vms: JSON, Host.getAllVmStats as is, when stdout is not a terminal', async () => {
    const r = await client(['--url', d.url, 'vms']);
    expect(r.code).toBe(0);
    const piped = JSON.parse(r.stdout) as VmStats[];
    expect(piped.map((v) => [v.vmId, v.guestName, v.guestIPs]).sort()).toEqual(
      all.map((v) => [v.vmId, v.guestName, v.guestIPs]).sort(),
    );
  });

  it('nics: a VM by id prefix, its guest interfaces and addresses; no host side without "network" data', async () => {
    const r = await client(['--url', d.url, '--table', 'nics', '0f4c']);
    expect(r).toEqual({
      code: 0,
      stderr: '',
      stdout: [
        'VM 0f4c3a2e-1b7d-4e59-9c1a-7d2e5b8f6a01 (web01), guest agent responsive',
        'MAC                GUEST   HOST  BRIDGE  MODEL  RX  TX',
        '00:1a:4a:16:01:51  eth0    -     -       -      -   -',
        '  192.0.2.21, 192.0.2.22, 2001:db8:0:21::15, fe80::21a:4aff:fe16:151',
        '52:54:00:5b:3f:e1  virbr0  -     -       -      -   -',
        '  192.168.122.1',
        'host vNICs: not known (no "network" data for this VM; is it run by libvirt?)',
        '',
      ].join('\n'),
    });
  });

  it('nics: an id prefix that matches no VM, or several, is refused with exit 1', async () => {
    expect(await client(['--url', d.url, 'nics', 'ffff'])).toEqual({
      code: 1,
      stdout: '',
      stderr: "vdsm-agent-client: 'ffff' matches no VM known to the daemon\n",
    });
    const many = await client(['--url', d.url, 'nics', '']);
    expect(many.code).toBe(1);
    expect(many.stderr).toMatch(/^vdsm-agent-client: '' matches 5 VMs \(/);
  });

  it("route: the daemon's answer in the manner of ip route get", async () => {
    const ws = await RpcClient.connect(d.url);
    const route = await ws.call<Route>('Host.getRoute', { ip: '127.0.0.1' });
    await ws.close();
    const r = await client(['--url', d.url, '--table', 'route', '127.0.0.1']);
    const src = route.source ? ` src ${route.source}` : '';
    expect(r).toEqual({
      code: 0,
      stderr: '',
      stdout: `127.0.0.1 dev lo${src} table ${route.table} type ${route.type} (looked up over ${route.via})\n`,
    });
    const bad = await client(['--url', d.url, 'route', 'example.com']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^vdsm-agent-client: error -32602: Invalid params: 'ip' /);
  });
});

describe('nics join with the host vNICs (the "network" field)', () => {
  const stats: VmStatsView = {
    vmId: '0f4c3a2e-1b7d-4e59-9c1a-7d2e5b8f6a01',
    status: 'Up',
    statusTime: '1',
    elapsedTime: '1',
    guestName: 'web01',
    guestFQDN: '',
    guestOs: '',
    guestIPs: '192.0.2.21',
    guestAgentStatus: 'responsive',
    netIfaces: [
      { name: 'lo', hw: '00:00:00:00:00:00', inet: ['127.0.0.1'], inet6: ['::1'] },
      { name: 'eth0', hw: '00:1A:4A:16:01:51', inet: ['192.0.2.21'], inet6: [] },
      { name: 'eth9', hw: '52:54:00:99:99:99', inet: [], inet6: [] },
    ],
    network: {
      vnet0: {
        name: 'vnet0',
        macAddr: '00:1a:4a:16:01:51',
        model: 'virtio',
        bridge: 'ovirtmgmt',
        rx: '1536',
        tx: '52428800',
      },
      vnet1: { name: 'vnet1', macAddr: '00:1a:4a:16:01:52', model: 'e1000', bridge: 'storage', rx: '0', tx: '0' },
    },
  };

  it('joins by MAC (any case), marks a guest MAC with no vNIC and a vNIC the guest does not report', () => {
    expect(nicsTable(stats)).toBe(
      [
        'VM 0f4c3a2e-1b7d-4e59-9c1a-7d2e5b8f6a01 (web01), guest agent responsive',
        'MAC                GUEST  HOST   BRIDGE     MODEL   RX       TX',
        '00:00:00:00:00:00  lo     -      -          -       -        -',
        '  127.0.0.1, ::1',
        '00:1a:4a:16:01:51  eth0   vnet0  ovirtmgmt  virtio  1.5 KiB  50 MiB',
        '  192.0.2.21',
        '52:54:00:99:99:99  eth9   -      -          -       -        -',
        '  ! guest MAC matches no vNIC of this VM',
        '00:1a:4a:16:01:52  -      vnet1  storage    e1000   0 B      0 B',
        '  ! vNIC not reported by the guest',
        '',
      ].join('\n'),
    );
  });
});
