// VM_status events end to end: the real daemon, scripted oVirt agents on real UNIX sockets, the
// real qemu-ga in a network namespace, and WebSocket subscribers (one that never reads).
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RpcClient, type Notification } from '../src/client/rpcClient.js';
import type { GuestNetworkDeviceInfo, VmStats } from '../src/wire.js';
import { startDaemon, type RunningDaemon } from './helpers/daemon.js';
import { channelPath, newVmId, tempDir } from './helpers/channelsDir.js';
import { ScriptedGuest, eventually, withTimeout } from './helpers/scriptedGuest.js';
import { rssBytes } from './helpers/floodGuest.js';
import { missing } from './helpers/prereq.js';
import { createNetns, ipn } from './helpers/netns.js';
import { startQemuGa, QEMU_GA } from './helpers/qemuGa.js';

type EventParams = Record<string, Partial<VmStats>> & { notify_time: number };

const iface = (name: string, hw: string, inet: string[], inet6: string[] = []): GuestNetworkDeviceInfo => ({
  name,
  hw,
  inet,
  inet6,
});
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function eventsFor(c: RpcClient, vmId: string): Notification[] {
  return c.notifications.filter((n) => n.method === `|virt|VM_status|${vmId}`);
}

function bodyOf(n: Notification, vmId: string): Partial<VmStats> {
  return (n.params as EventParams)[vmId]!;
}

/** A guest that connected and said hello, so later messages are changes. */
async function ovirtGuest(dir: string, vmId: string): Promise<ScriptedGuest> {
  const g = await ScriptedGuest.listen(channelPath(dir, vmId, 'ovirt-guest-agent.0'));
  await g.connected();
  await g.waitForLine((l) => l.includes('"refresh"'));
  return g;
}

describe('VM_status events from oVirt agents', () => {
  let dir: string;
  let d: RunningDaemon;
  beforeAll(async () => {
    dir = tempDir();
    d = await startDaemon(['--listen', '127.0.0.1:0', '--channels-dir', dir]);
  });
  afterAll(async () => {
    await d?.stop();
  });

  it('sends Up when a socket appears and Down when it goes, in VDSM event shape', async () => {
    const c = await RpcClient.connect(d.url);
    expect(await c.call('Host.subscribeEvents')).toBe(true);
    const vmId = newVmId();
    const g = await ScriptedGuest.listen(channelPath(dir, vmId, 'ovirt-guest-agent.0'));
    const up = await eventually(
      () => eventsFor(c, vmId),
      (e) => e.length >= 1,
      10_000,
      'Up event',
    );
    expect(up[0]!.params).toMatchObject({ [vmId]: { status: 'Up' } });
    expect(typeof (up[0]!.params as EventParams).notify_time).toBe('number');
    expect((up[0]!.params as EventParams).notify_time).toBeGreaterThan(2147483647); // VDSM's event clock
    await g.close(); // removes the socket file
    const evs = await eventually(
      () => eventsFor(c, vmId),
      (e) => e.some((n) => bodyOf(n, vmId).status === 'Down'),
      10_000,
      'Down event',
    );
    expect(bodyOf(evs[evs.length - 1]!, vmId).status).toBe('Down');
    await c.close();
  });

  it('sends exactly one event per change of interfaces, and none when a report repeats', async () => {
    const vmId = newVmId();
    const g = await ovirtGuest(dir, vmId);
    const first = [iface('eth0', '00:21:cc:68:d7:38', ['192.0.2.10'], ['fe80::221:ccff:fe68:d738'])];
    await g.send('network-interfaces', { interfaces: first });
    await g.send('host-name', { name: 'web01' });
    const probe = await RpcClient.connect(d.url);
    await eventually(
      () => probe.call<VmStats[]>('VM.getStats', { vmID: vmId }),
      (s) => s[0]!.guestName === 'web01',
      10_000,
      'first report',
    );

    const c = await RpcClient.connect(d.url);
    await c.call('Host.subscribeEvents', { prefixes: [`|virt|VM_status|${vmId}`] });
    const changed = [
      iface('eth0', '00:21:cc:68:d7:38', ['192.0.2.11'], ['fe80::221:ccff:fe68:d738']),
      iface('eth1', '52:54:00:5b:3f:e1', ['198.51.100.7']),
    ];
    await g.send('network-interfaces', { interfaces: changed });
    const evs = await eventually(
      () => eventsFor(c, vmId),
      (e) => e.length >= 1,
      10_000,
      'change event',
    );
    const body = bodyOf(evs[0]!, vmId);
    expect(body.netIfaces).toEqual(changed);
    expect(body.guestIPs).toBe('192.0.2.11 198.51.100.7');
    expect(body.status).toBe('Up');

    // The same list again, heartbeats, the same host name: nothing is news.
    await g.send('network-interfaces', { interfaces: changed });
    await g.send('heartbeat', { 'free-ram': '1024', apiVersion: 3 });
    await g.send('host-name', { name: 'web01' });
    await g.send('network-interfaces', { interfaces: changed });
    // A marker change proves the repeats were processed before it (one channel, in order).
    await g.send('fqdn', { fqdn: 'web01.example.test' });
    const after = await eventually(
      () => eventsFor(c, vmId),
      (e) => e.length >= 2,
      10_000,
      'fqdn event',
    );
    await sleep(300);
    expect(eventsFor(c, vmId)).toHaveLength(2);
    expect(bodyOf(after[1]!, vmId).guestFQDN).toBe('web01.example.test');
    await Promise.all([c.close(), probe.close()]);
  });

  it('filters by prefix: a subscriber to another prefix receives nothing', async () => {
    const all = await RpcClient.connect(d.url);
    const other = await RpcClient.connect(d.url);
    await all.call('Host.subscribeEvents', { prefixes: ['|virt|'] });
    await other.call('Host.subscribeEvents', [['|net|']]); // positional: the first param is the list
    const vmId = newVmId();
    const g = await ovirtGuest(dir, vmId);
    await g.send('network-interfaces', { interfaces: [iface('eth0', '52:54:00:00:00:01', ['192.0.2.20'])] });
    await eventually(
      () => eventsFor(all, vmId),
      (e) => e.some((n) => bodyOf(n, vmId).guestIPs === '192.0.2.20'),
      10_000,
      'event for |virt|',
    );
    expect(await other.call('Host.ping2')).toBe(true); // anything sent before this reply has arrived
    expect(other.notifications).toEqual([]);
    await Promise.all([all.close(), other.close()]);
  });

  it('stops delivery after Host.unsubscribeEvents', async () => {
    const c = await RpcClient.connect(d.url);
    await c.call('Host.subscribeEvents');
    const vmId = newVmId();
    const g = await ovirtGuest(dir, vmId);
    await g.send('host-name', { name: 'before' });
    await eventually(
      () => eventsFor(c, vmId),
      (e) => e.some((n) => bodyOf(n, vmId).guestName === 'before'),
      10_000,
      'event before',
    );
    expect(await c.call('Host.unsubscribeEvents')).toBe(true);
    const seen = c.notifications.length;
    await g.send('host-name', { name: 'after' });
    const probe = await RpcClient.connect(d.url);
    await eventually(
      () => probe.call<VmStats[]>('VM.getStats', [vmId]),
      (s) => s[0]!.guestName === 'after',
      10_000,
      'change applied',
    );
    expect(await c.call('Host.ping2')).toBe(true);
    expect(c.notifications.length).toBe(seen);
    await Promise.all([c.close(), probe.close()]);
  });

  it('rejects a prefixes param that is not a list of strings', async () => {
    const c = await RpcClient.connect(d.url);
    await expect(c.call('Host.subscribeEvents', { prefixes: '|virt|' })).rejects.toMatchObject({
      error: { code: -32602 },
    });
    await expect(c.call('Host.subscribeEvents', { prefixes: [1] })).rejects.toMatchObject({ error: { code: -32602 } });
    expect(await c.call('Host.ping2')).toBe(true);
    await c.close();
  });
});

/** A WebSocket client that subscribes and then never reads another byte. */
async function stalledSubscriber(url: string): Promise<net.Socket> {
  const u = new URL(url);
  const s = net.connect(Number(u.port), u.hostname);
  await new Promise<void>((resolve, reject) => s.once('connect', resolve).once('error', reject));
  s.write(
    `GET / HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  let head = '';
  await new Promise<void>((resolve) => {
    const onData = (c: Buffer): void => {
      head += c.toString('latin1');
      if (head.includes('"result":true')) {
        s.off('data', onData);
        resolve();
      } else if (head.includes('\r\n\r\n') && !head.includes('sent')) {
        head += 'sent';
        const payload = Buffer.from(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'Host.subscribeEvents' }));
        const mask = Buffer.from([1, 2, 3, 4]);
        const frame = Buffer.concat([
          Buffer.from([0x81, 0x80 | payload.length]),
          mask,
          payload.map((b, i) => b ^ mask[i % 4]!),
        ]);
        s.write(frame);
      }
    };
    s.on('data', onData);
  });
  s.pause(); // from here on the daemon's writes pile up: the kernel buffers fill, then its own
  return s;
}

describe('a subscriber that never reads', () => {
  let dir: string;
  let d: RunningDaemon;
  beforeAll(async () => {
    dir = tempDir();
    d = await startDaemon([
      '--listen',
      '127.0.0.1:0',
      '--channels-dir',
      dir,
      '--max-subscriber-buffer-bytes',
      '1048576',
    ]);
  });
  afterAll(async () => {
    await d?.stop();
  });

  it('is cut off while 10,000 events flow; readers get them all and memory stays bounded', async () => {
    const guests = 60;
    const changesEach = 170; // within a guest's message burst (SPEC rate budget), 10,200 events in all
    const ids = Array.from({ length: guests }, () => newVmId());
    const gs = await Promise.all(ids.map((id) => ovirtGuest(dir, id)));
    // Large events (40 interfaces) so that 10,000 of them would be ~60 MB if buffered.
    const list = (n: number): GuestNetworkDeviceInfo[] =>
      Array.from({ length: 40 }, (_, i) =>
        iface(
          `eth${i}`,
          `52:54:00:00:${(i + 16).toString(16)}:01`,
          [`10.${n % 250}.${i}.1`, `10.${n % 250}.${i}.2`],
          [`fd00::${i}:${n}`],
        ),
      );
    const reader = await RpcClient.connect(d.url);
    await reader.call('Host.subscribeEvents');
    const stalled = await stalledSubscriber(d.url);
    const stalledPort = stalled.localPort;
    const rssBefore = await rssBytes(d.proc.pid!);

    // Produced in rounds (one change per guest), each round once the reader has the previous
    // one: the reader never lags, so only the stalled subscriber can fall behind.
    const expected = guests * changesEach;
    let received = 0;
    let roundDone: (() => void) | null = null;
    let roundTarget = 0;
    reader.onNotification = (n) => {
      const body = Object.values(n.params as object).find((b) => typeof b === 'object' && b !== null) as
        VmStats | undefined;
      if (body?.netIfaces.length === 40) received++;
      if (received >= roundTarget) roundDone?.();
    };
    for (let k = 0; k < changesEach; k++) {
      roundTarget = (k + 1) * guests;
      const round = new Promise<void>((resolve) => (roundDone = resolve));
      await Promise.all(gs.map((g, gi) => g.send('network-interfaces', { interfaces: list(gi + k) })));
      await withTimeout(
        round,
        30_000,
        `round ${k}: ${received}/${roundTarget} events at the reader (reader closed: ${JSON.stringify(reader.closed)})`,
      );
    }
    expect(received).toBe(expected);
    const rssAfter = await rssBytes(d.proc.pid!);
    console.log(
      `events: ${received} delivered to the reader; daemon RSS ${(rssBefore / 2 ** 20).toFixed(1)} MiB -> ${(rssAfter / 2 ** 20).toFixed(1)} MiB`,
    );

    const cut = await d.waitForLog((l) => l.msg === 'event subscriber too slow, disconnecting', 10_000);
    expect(String(cut.peer)).toBe(`127.0.0.1:${stalledPort}`);
    await d.waitForLog((l) => l.msg === 'connection closed' && l.peer === `127.0.0.1:${stalledPort}`, 10_000);
    // ~60 MB of events were produced: buffered for the stalled subscriber they add ~100 MiB (measured with
    // the bound lifted); cut off at its 1 MiB bound, what remains is the reader's traffic (~40 MiB).
    expect(rssAfter - rssBefore).toBeLessThan(70 * 2 ** 20);
    expect(await reader.call('Host.ping2')).toBe(true);
    stalled.destroy();
    await reader.close();
  }, 150_000);
});

const noQga = missing({ root: true, commands: ['ip', QEMU_GA] });

describe.skipIf(noQga)('VM_status events from the real qemu-ga', () => {
  let dir: string;
  let d: RunningDaemon;
  let ns: string;
  const vmId = newVmId();
  const pollSeconds = 1;
  beforeAll(async () => {
    ns = createNetns('vatev');
    ipn(ns, 'link', 'add', 'vg0', 'address', '52:54:00:aa:bb:01', 'type', 'veth', 'peer', 'name', 'vg0p');
    ipn(ns, 'link', 'set', 'vg0p', 'up');
    ipn(ns, 'link', 'set', 'vg0', 'up');
    ipn(ns, 'addr', 'add', '192.0.2.10/24', 'dev', 'vg0');
    dir = tempDir();
    await startQemuGa(ns, channelPath(dir, vmId, 'org.qemu.guest_agent.0'));
    d = await startDaemon([
      '--listen',
      '127.0.0.1:0',
      '--channels-dir',
      dir,
      '--qga-poll-interval',
      String(pollSeconds),
      // A VM found at start-up says its first 'responsive' at debug (docs/operations.md, "Start-up log").
      '--log-level',
      'debug',
    ]);
  });
  afterAll(async () => {
    await d?.stop();
  });

  it('a qemu-ga found at start-up goes from unknown straight to responsive (no unresponsive flicker)', async () => {
    const c = await RpcClient.connect(d.url);
    await eventually(
      () => c.call<VmStats[]>('VM.getStats', [vmId]),
      (s) => s[0]!.guestAgentStatus === 'responsive',
      15_000,
      'responsive',
    );
    const changes = d
      .logs()
      .filter((l) => l.msg === 'guest agent status changed' && l.vmId === vmId)
      .map((l) => `${String(l.level)} ${String(l.guestAgentStatus)}`);
    expect(changes).toEqual(['debug responsive']);
    await c.close();
  });

  it('sends one event within one poll interval when `ip addr add` gives the guest a new address', async () => {
    const c = await RpcClient.connect(d.url);
    await eventually(
      () => c.call<VmStats[]>('VM.getStats', [vmId]),
      (s) => s[0]!.guestIPs.includes('192.0.2.10'),
      15_000,
      'first poll',
    );
    await c.call('Host.subscribeEvents', { prefixes: ['|virt|VM_status|'] });
    // Let the guest settle (IPv6 link-local shows up after the link is up).
    let n = -1;
    while (n !== c.notifications.length) {
      n = c.notifications.length;
      await sleep(pollSeconds * 2500);
    }
    const before = c.notifications.length;
    const t0 = Date.now();
    ipn(ns, 'addr', 'add', '198.51.100.99/24', 'dev', 'vg0');
    const evs = await eventually(
      () => eventsFor(c, vmId).slice(before),
      (e) => e.length >= 1,
      10_000,
      'event for the new address',
    );
    const latency = Date.now() - t0;
    const body = bodyOf(evs[0]!, vmId);
    const vg0 = body.netIfaces!.find((i) => i.name === 'vg0')!;
    expect(vg0.inet).toEqual(['192.0.2.10', '198.51.100.99']);
    expect(body.guestIPs).toContain('198.51.100.99');
    console.log(
      `qemu-ga address change reached the subscriber after ${latency} ms (poll interval ${pollSeconds * 1000} ms)`,
    );
    expect(latency).toBeLessThanOrEqual(pollSeconds * 1000 + 1000);
    await sleep(pollSeconds * 2500); // two more polls that see the same data: no more events
    expect(eventsFor(c, vmId).slice(before)).toHaveLength(1);
    await c.close();
  });
});
