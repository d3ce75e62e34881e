// End to end with a scripted oVirt guest agent on real UNIX sockets and the real daemon:
// discovery, the protocol handshake, fixtures replayed to VM.getStats, reconnects, and the
// JSON-RPC errors of the stats verbs.
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { RpcCallError, RpcClient } from '../src/client/rpcClient.js';
import type { VmStats } from '../src/wire.js';
import { channelPath, newVmId, tempDir } from './helpers/channelsDir.js';
import { startDaemon } from './helpers/daemon.js';
import { useGuestDaemon } from './helpers/guestDaemon.js';
import { ovirtSession } from './helpers/guestFixtures.js';
import { ScriptedGuest, eventually } from './helpers/scriptedGuest.js';

const OVIRT = 'ovirt-guest-agent.0';

async function errorOf(p: Promise<unknown>): Promise<{ code: number; message: string }> {
  try {
    await p;
  } catch (err) {
    if (err instanceof RpcCallError) return err.error;
    throw err;
  }
  throw new Error('expected a JSON-RPC error');
}

describe('oVirt guest agent, end to end', () => {
  const t = useGuestDaemon(['--agent-silence-timeout', '1.5']);

  it('replays a Linux agent session: refresh sent, api-version negotiated, VmStats per SPEC', async () => {
    const vm = newVmId();
    const g = await ScriptedGuest.listen(channelPath(t.dir, vm, OVIRT));
    await g.connected();
    expect(JSON.parse(await g.waitForLine((l) => l.includes('refresh')))).toEqual({
      __name__: 'refresh',
      apiVersion: 3,
    });
    const before = await t.stats(vm);
    expect(before).toMatchObject({
      vmId: vm,
      status: 'Up',
      netIfaces: [],
      network: {},
      guestIPs: '',
      guestAgentStatus: 'unknown',
    });
    for (const line of ovirtSession('linux-session')) await g.write(line);
    const s = await eventually(
      () => t.stats(vm),
      (x) => x.netIfaces.length > 0 && x.guestAgentStatus === 'responsive',
      10_000,
      'interfaces reported',
    );
    expect(s).toEqual({
      vmId: vm,
      status: 'Up',
      statusTime: expect.stringMatching(/^\d+$/),
      elapsedTime: expect.stringMatching(/^\d+$/),
      netIfaces: [
        { name: 'eth0', hw: '00:21:cc:68:d7:38', inet: ['9.115.122.77'], inet6: ['fe80::221:ccff:fe68:d738'] },
        { name: 'virbr0', hw: '52:54:00:5b:3f:e1', inet: ['192.168.122.1'], inet6: [] },
      ],
      network: {},
      guestIPs: '9.115.122.77 192.168.122.1',
      guestName: 'web01',
      guestFQDN: 'web01.example.com',
      guestOs: '4.18.0-348.el8.x86_64',
      guestAgentStatus: 'responsive',
    });
    expect(Number(s.statusTime)).toBeGreaterThan(2147483647); // VDSM's event clock
    // The first heartbeat said 0 (nothing to agree), the last 3: exactly one api-version 3.
    await g.waitForLine((l) => l.includes('api-version'));
    expect(g.received.filter((l) => l.includes('api-version')).map((l) => JSON.parse(l))).toEqual([
      { __name__: 'api-version', apiVersion: 3 },
    ]);
    // Aliases and getAllVmStats serve the same data.
    const [alias] = await t.c.call<VmStats[]>('getVmStats', [vm]);
    expect(alias!.netIfaces).toEqual(s.netIfaces);
    const all = await t.c.call<VmStats[]>('getAllVmStats');
    expect(all.find((x) => x.vmId === vm)!.guestIPs).toBe(s.guestIPs);
    await g.close();
  });

  it('an agent that goes silent turns unresponsive and keeps its data; speaking again restores it', async () => {
    const vm = newVmId();
    const g = await ScriptedGuest.listen(channelPath(t.dir, vm, OVIRT));
    for (const line of ovirtSession('windows-session')) await g.write(line);
    await eventually(
      () => t.stats(vm),
      (x) => x.guestAgentStatus === 'responsive' && x.netIfaces.length > 0,
    );
    const quiet = await eventually(
      () => t.stats(vm),
      (x) => x.guestAgentStatus === 'unresponsive',
      10_000,
      'unresponsive after silence',
    );
    expect(quiet.netIfaces[0]!.name).toBe('Red Hat VirtIO Ethernet Adapter #2');
    expect(quiet.guestIPs).toBe('10.35.1.21 169.254.10.9');
    expect(quiet.guestFQDN).toBe('WIN-7QK3G2M1.corp.example');
    await g.send('heartbeat', { 'free-ram': '100', apiVersion: 3 });
    await eventually(
      () => t.stats(vm),
      (x) => x.guestAgentStatus === 'responsive',
    );
    await g.close();
  });

  it('reconnects when the peer closes and when the socket is replaced, sending refresh each time', async () => {
    const vm = newVmId();
    const p = channelPath(t.dir, vm, OVIRT);
    const g = await ScriptedGuest.listen(p);
    await g.waitForLine((l) => l.includes('refresh'));
    const next = g.nextConnection();
    g.hangUp();
    await next;
    await eventually(
      () => g.received.filter((l) => l.includes('refresh')).length,
      (n) => n >= 2,
    );
    // QEMU restarted: a new socket under the same name (created beside it, renamed over it).
    const tmp = path.join(t.dir, 'replacement.sock');
    const g2 = await ScriptedGuest.listen(tmp);
    renameSync(tmp, p);
    await g2.connected();
    await g2.waitForLine((l) => l.includes('refresh'));
    await g2.send('host-name', { name: 'after-restart' });
    await eventually(
      () => t.stats(vm),
      (x) => x.guestName === 'after-restart',
    );
    await g.close(false);
    await g2.close();
  });

  it('a VM is known while a socket exists; removal makes it unknown (code 1)', async () => {
    const vm = newVmId();
    const g = await ScriptedGuest.listen(channelPath(t.dir, vm, OVIRT));
    await eventually(
      () => t.stats(vm).then((s) => s.status),
      (s) => s === 'Up',
    );
    await g.close(); // unlinks the socket
    const err = await eventually(
      () => errorOf(t.stats(vm)),
      (e) => e.code === 1,
      10_000,
      'VM gone',
    );
    expect(err.message).toMatch(/^Virtual machine does not exist/);
  });

  it('ignores everything that is not <uuid>.<known channel> as a socket', async () => {
    const vm = newVmId();
    writeFileSync(channelPath(t.dir, vm, OVIRT), 'a regular file, not a socket');
    writeFileSync(path.join(t.dir, 'notes.txt'), 'x');
    mkdirSync(path.join(t.dir, `${newVmId()}.org.qemu.guest_agent.0`)); // a directory
    const others = [
      await ScriptedGuest.listen(path.join(t.dir, `${newVmId()}.com.example.unknown.0`)),
      await ScriptedGuest.listen(path.join(t.dir, 'not-a-uuid.ovirt-guest-agent.0')),
    ];
    const marker = newVmId();
    const m = await ScriptedGuest.listen(channelPath(t.dir, marker, 'com.redhat.rhevm.vdsm')); // the legacy name counts
    await eventually(
      () => t.stats(marker).then((s) => s.status),
      (s) => s === 'Up',
    );
    const all = await t.c.call<VmStats[]>('Host.getAllVmStats');
    expect(all.map((s) => s.vmId)).not.toContain(vm);
    expect(all.every((s) => /^[0-9a-f-]{36}$/.test(s.vmId))).toBe(true);
    for (const o of others) expect(o.connections).toBe(0);
    rmSync(channelPath(t.dir, vm, OVIRT));
    for (const o of [...others, m]) await o.close();
  });

  it('one VM under two spellings of its UUID: one connection; removing the spare keeps the VM', async () => {
    const vm = newVmId();
    const first = await ScriptedGuest.listen(channelPath(t.dir, vm, OVIRT));
    await first.waitForLine((l) => l.includes('refresh'));
    const spare = await ScriptedGuest.listen(channelPath(t.dir, vm.toUpperCase(), OVIRT));
    await first.send('host-name', { name: 'first' });
    await eventually(
      () => t.stats(vm),
      (x) => x.guestName === 'first',
    );
    await spare.close();
    await first.send('host-name', { name: 'still-here' });
    await eventually(
      () => t.stats(vm),
      (x) => x.guestName === 'still-here',
    );
    expect(spare.connections).toBe(0);
    expect((await t.c.call<VmStats[]>('Host.getAllVmStats')).filter((x) => x.vmId === vm)).toHaveLength(1);
    await first.close();
  });

  it('errors: unknown vmID is code 1, malformed params are -32602 naming the param', async () => {
    expect(await errorOf(t.c.call('VM.getStats', { vmID: newVmId() }))).toMatchObject({ code: 1 });
    for (const bad of [{ vmID: 'not-a-uuid' }, { vmID: 42 }, {}, ['x'], { vmId: newVmId() }]) {
      const e = await errorOf(t.c.call('VM.getStats', bad));
      expect(e.code).toBe(-32602);
      expect(e.message).toMatch(/vmI[Dd]/);
    }
    expect((await errorOf(t.c.call('Host.getAllVmStats', { x: 1 }))).code).toBe(-32602);
  });
});

describe('channels directory lifecycle', () => {
  it('a missing directory is logged once, picked up when it appears, and its loss forgets its VMs', async () => {
    const parent = tempDir();
    const dir = path.join(parent, 'channels');
    const d = await startDaemon(['--listen', '127.0.0.1:0', '--channels-dir', dir]);
    const c = await RpcClient.connect(d.url);
    try {
      expect(await c.call('Host.getAllVmStats')).toEqual([]);
      await d.waitForLog((l) => l.msg === 'channels directory is missing; waiting for it to appear');
      mkdirSync(dir);
      const vm = newVmId();
      const g = await ScriptedGuest.listen(channelPath(dir, vm, OVIRT));
      await eventually(
        () => c.call<VmStats[]>('Host.getAllVmStats'),
        (a) => a.some((s) => s.vmId === vm),
        15_000,
        'VM after the directory appeared',
      );
      await g.close(false);
      rmSync(dir, { recursive: true });
      await eventually(
        () => c.call<VmStats[]>('Host.getAllVmStats'),
        (a) => a.length === 0,
        15_000,
        'VMs forgotten with the directory',
      );
      // Its sockets' own events may forget the VMs first; the loss of the directory is said by
      // the next check of it (every 2 s). Recreating it before then would hide the gap.
      const missing = (): number =>
        d.logs().filter((l) => l.msg === 'channels directory is missing; waiting for it to appear').length;
      await d.waitForLog(() => missing() >= 2, 15_000);
      mkdirSync(dir);
      const g2 = await ScriptedGuest.listen(channelPath(dir, vm, OVIRT));
      await eventually(
        () => c.call<VmStats[]>('Host.getAllVmStats'),
        (a) => a.some((s) => s.vmId === vm),
        15_000,
        'VM after the directory came back',
      );
      await g2.close();
      expect(missing()).toBe(2); // once at start, once after it vanished: not once per check
    } finally {
      await c.close();
      await d.stop();
    }
  });

  it('start-up with 300 sockets already present knows every VM before it answers', async () => {
    const dir = tempDir();
    const ids = Array.from({ length: 300 }, () => newVmId());
    const servers = await Promise.all(
      ids.map(
        (id) =>
          new Promise<net.Server>((resolve) => {
            const s = net.createServer((sock) => sock.on('error', () => {}));
            s.listen(channelPath(dir, id, OVIRT), () => resolve(s));
          }),
      ),
    );
    const d = await startDaemon(['--listen', '127.0.0.1:0', '--channels-dir', dir]);
    const c = await RpcClient.connect(d.url);
    try {
      const all = await c.call<VmStats[]>('Host.getAllVmStats');
      expect(new Set(all.map((s) => s.vmId))).toEqual(new Set(ids));
      expect(await c.call('Host.ping2')).toBe(true);
    } finally {
      await c.close();
      await d.stop();
      for (const s of servers) s.close();
    }
  });
});
