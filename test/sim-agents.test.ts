// The guest simulator over real UNIX sockets, seen from the host side as the daemon sees it.
import { existsSync, readdirSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GuestSimulator } from '../src/sim/simulator.js';
import { generateGuests, type SimGuest } from '../src/sim/guest.js';
import { loadGuestDir } from '../src/sim/guestFile.js';
import { QgaRequestReader } from '../src/sim/qgaReader.js';
import { RawChannel } from './helpers/rawChannel.js';
import { ROOT } from './helpers/daemon.js';
import { tempDir } from './helpers/channelsDir.js';

const names = (msgs: Record<string, unknown>[]): unknown[] => msgs.map((m) => m.__name__);

describe('generated guests', () => {
  it('have 4 interfaces of 4 addresses, half each protocol, and the asked share of changing guests', () => {
    const guests = generateGuests(1000, { changingShare: 0.1 });
    expect(guests.every((g) => g.interfaces.length === 4 && g.interfaces.every((n) => n.addresses.length === 4))).toBe(
      true,
    );
    expect(guests.filter((g) => g.agents[0] === 'qemu').length).toBe(500);
    expect(guests.filter((g) => g.changeEveryMs).length).toBe(100);
    expect(new Set(guests.map((g) => g.vmId)).size).toBe(1000);
    const all = guests.flatMap((g) =>
      g.interfaces.flatMap((n) => n.addresses.filter((a) => a.type === 'ipv4').map((a) => a.address)),
    );
    expect(new Set(all).size).toBe(all.length);
  });
});

describe('oVirt agent guest', () => {
  let sim: GuestSimulator;
  let dir: string;
  let guest: SimGuest;
  beforeEach(async () => {
    dir = tempDir();
    sim = new GuestSimulator({ dir, heartbeatMs: 200, networkMs: 600, tickMs: 20 });
    guest = loadGuestDir(path.join(ROOT, 'fixtures/demo')).find((g) => g.hostName === 'web01')!;
    await sim.add(guest);
  });
  afterEach(async () => {
    await sim.close();
  });

  it('answers refresh with the full set, then heartbeats with the agreed API version', async () => {
    const ch = await RawChannel.connect(path.join(dir, `${guest.vmId}.ovirt-guest-agent.0`));
    ch.write('{"__name__": "refresh", "apiVersion": 3}\n');
    // The full set answers the refresh. Heartbeats run on their own timer: one may go out before
    // the refresh is read (with apiVersion 0, as the real agent's first), so the check is on the
    // heartbeats after the full set.
    const full = ['host-name', 'os-version', 'network-interfaces', 'fqdn'];
    const afterFullSet = (msgs: Record<string, unknown>[]): Record<string, unknown>[] =>
      msgs.slice(msgs.findIndex((m) => m.__name__ === 'host-name')).filter((m) => m.__name__ === 'heartbeat');
    await ch.waitFor(
      (c) => full.every((n) => c.messages().some((m) => m.__name__ === n)) && afterFullSet(c.messages()).length > 0,
      10_000,
      'the full set and a heartbeat after it',
    );
    const msgs = ch.messages();
    expect(names(msgs)).toEqual(expect.arrayContaining(['host-name', 'os-version', 'network-interfaces', 'fqdn']));
    expect(msgs.find((m) => m.__name__ === 'host-name')!.name).toBe('web01');
    expect(msgs.find((m) => m.__name__ === 'fqdn')!.fqdn).toBe('web01.lab.example.com');
    // As the Linux agent: loopback and down devices left out, the eth0:1 label merged into eth0.
    expect(msgs.find((m) => m.__name__ === 'network-interfaces')!.interfaces).toEqual([
      {
        name: 'eth0',
        hw: '00:1a:4a:16:01:51',
        inet: ['192.0.2.21', '192.0.2.22'],
        inet6: ['2001:db8:0:21::15', 'fe80::21a:4aff:fe16:151'],
      },
      { name: 'virbr0', hw: '52:54:00:5b:3f:e1', inet: ['192.168.122.1'], inet6: [] },
    ]);
    expect(afterFullSet(msgs).map((m) => m.apiVersion)).toEqual(afterFullSet(msgs).map(() => 3));
    // Python's json.dumps layout, as the real agent writes.
    expect(ch.bytes().toString()).toContain('{"__name__": "host-name", "name": "web01"}\n');
    ch.close();
  });

  it('reports network data periodically and at once when an address changes', async () => {
    const ch = await RawChannel.connect(path.join(dir, `${guest.vmId}.ovirt-guest-agent.0`));
    await ch.waitFor(
      (c) => c.messages().some((m) => m.__name__ === 'network-interfaces'),
      3000,
      'periodic network-interfaces',
    );
    ch.clear();
    const changed = sim.changeAddress(guest.vmId)!;
    await ch.waitFor((c) => JSON.stringify(c.messages()).includes(`"${changed}"`), 300, 'the changed address');
    ch.close();
  });

  it('serves one host client at a time; the next one is answered once the first leaves', async () => {
    const p = path.join(dir, `${guest.vmId}.ovirt-guest-agent.0`);
    const first = await RawChannel.connect(p);
    const second = await RawChannel.connect(p);
    second.write('{"__name__": "refresh", "apiVersion": 3}\n');
    await first.waitFor((c) => c.messages().some((m) => m.__name__ === 'heartbeat'), 3000, 'heartbeat on the first');
    expect(second.bytes().length).toBe(0);
    first.close();
    await second.waitFor(
      (c) => c.messages().some((m) => m.__name__ === 'host-name'),
      3000,
      'the full set on the second',
    );
    second.close();
  });

  it('goes silent while its agent restarts, then announces everything with API version 0', async () => {
    const ch = await RawChannel.connect(path.join(dir, `${guest.vmId}.ovirt-guest-agent.0`));
    ch.write('{"__name__": "refresh", "apiVersion": 3}\n');
    await ch.waitFor((c) => c.messages().some((m) => m.__name__ === 'heartbeat'), 3000, 'heartbeat');
    sim.restartAgent(guest.vmId, 500);
    ch.clear();
    ch.write('{"__name__": "refresh", "apiVersion": 3}\n'); // lost: nobody reads while the agent is down
    await new Promise((r) => setTimeout(r, 300));
    expect(ch.bytes().length).toBe(0);
    await ch.waitFor((c) => c.messages().some((m) => m.__name__ === 'heartbeat'), 3000, 'heartbeat after restart');
    const msgs = ch.messages();
    expect(names(msgs).slice(0, 1)).toEqual(['host-name']);
    expect(msgs.find((m) => m.__name__ === 'heartbeat')!.apiVersion).toBe(0);
    ch.close();
  });

  it('removes its socket and closes the connection when the VM goes away', async () => {
    const p = path.join(dir, `${guest.vmId}.ovirt-guest-agent.0`);
    const ch = await RawChannel.connect(p);
    await sim.remove(guest.vmId);
    await ch.waitFor((c) => c.closed, 2000, 'close');
    expect(existsSync(p)).toBe(false);
  });
});

describe('qemu-ga guest', () => {
  let sim: GuestSimulator;
  let dir: string;
  let guest: SimGuest;
  let ch: RawChannel;
  beforeEach(async () => {
    dir = tempDir();
    sim = new GuestSimulator({ dir });
    guest = loadGuestDir(path.join(ROOT, 'fixtures/demo')).find((g) => g.hostName === 'WIN-APP02')!;
    await sim.add(guest);
    ch = await RawChannel.connect(path.join(dir, `${guest.vmId}.org.qemu.guest_agent.0`));
  });
  afterEach(async () => {
    ch.close();
    await sim.close();
  });

  it('resynchronises: 0xFF-prefixed guest-sync-delimited gets the stray-byte error, then 0xFF and the id', async () => {
    const [stray, sync] = await ch.request(
      Buffer.concat([Buffer.from([0xff]), Buffer.from('{"execute":"guest-sync-delimited","arguments":{"id":4242}}')]),
      2,
    );
    expect(stray).toEqual({ error: { class: 'GenericError', desc: "JSON parse error, stray '\uFFFD'" } });
    expect(sync).toEqual({ return: 4242 });
    const raw = ch.bytes();
    const ff = raw.indexOf(0xff);
    expect(raw.subarray(ff + 1).toString()).toBe('{"return": 4242}\n');
  });

  it('answers the polled commands with Windows-style data', async () => {
    const [ifaces] = await ch.request('{"execute":"guest-network-get-interfaces"}');
    const list = ifaces!.return as Record<string, unknown>[];
    expect(list.map((i) => i.name)).toEqual(['Ethernet', 'Ethernet 2', 'Loopback Pseudo-Interface 1']);
    expect(list[2]).not.toHaveProperty('hardware-address');
    expect(JSON.stringify(list[0])).toContain('fe80::b1c4:2a9e:77d0:6f12%12');
    const [host] = await ch.request('{"execute":"guest-get-host-name"}');
    expect(host).toEqual({ return: { 'host-name': 'WIN-APP02' } });
    const [osinfo] = await ch.request('{"execute":"guest-get-osinfo"}');
    expect((osinfo!.return as Record<string, string>).id).toBe('mswindows');
    const [ping] = await ch.request('{"execute":"guest-ping","id":"x1"}');
    expect(ping).toEqual({ return: {}, id: 'x1' });
  });

  it('reads a streaming JSON: requests split across writes and several in one write', async () => {
    ch.write('{"execute":"guest-');
    await new Promise((r) => setTimeout(r, 50));
    expect(ch.bytes().length).toBe(0);
    const replies = await ch.request('ping"}{"execute":"guest-get-host-name"}\n  {"execute":"guest-ping"}', 3);
    expect(replies).toEqual([{ return: {} }, { return: { 'host-name': 'WIN-APP02' } }, { return: {} }]);
  });

  it('reports unknown commands and bad arguments as the real agent does', async () => {
    const replies = await ch.request(
      '{"execute":"guest-bogus"}{"execute":"guest-ping","arguments":{"x":1}}{"execute":"guest-sync-delimited"}[1]junk{"foo":1}',
      6,
    );
    expect(replies).toEqual([
      { error: { class: 'CommandNotFound', desc: 'The command guest-bogus has not been found' } },
      { error: { class: 'GenericError', desc: "Parameter 'x' is unexpected" } },
      { error: { class: 'GenericError', desc: "Parameter 'id' is missing" } },
      { error: { class: 'GenericError', desc: 'QMP input must be a JSON object' } },
      { error: { class: 'GenericError', desc: "JSON parse error, invalid keyword 'junk'" } },
      { error: { class: 'GenericError', desc: "QMP input member 'foo' is unexpected" } },
    ]);
  });

  it('answers nothing while its agent restarts, then answers again', async () => {
    sim.restartAgent(guest.vmId, 400);
    ch.write('{"execute":"guest-ping"}');
    await new Promise((r) => setTimeout(r, 200));
    expect(ch.bytes().length).toBe(0);
    await new Promise((r) => setTimeout(r, 500));
    const [ping] = await ch.request('{"execute":"guest-ping"}');
    expect(ping).toEqual({ return: {} });
  });

  it('shows a changed address at the next poll', async () => {
    const changed = sim.changeAddress(guest.vmId)!;
    const [ifaces] = await ch.request('{"execute":"guest-network-get-interfaces"}');
    expect(JSON.stringify(ifaces)).toContain(`"${changed}"`);
  });
});

describe('qemu-ga request reader', () => {
  it('keeps strings with braces and escaped quotes whole, and drops a half-read value at 0xFF', () => {
    const r = new QgaRequestReader();
    expect(r.push(Buffer.from('{"execute":"a}\\"{"'))).toEqual([]);
    expect(r.push(Buffer.from(', "id": [1, {"b": 2}]}'))).toEqual([
      { kind: 'request', value: { execute: 'a}"{', id: [1, { b: 2 }] } },
    ]);
    expect(r.push(Buffer.from('{"execute": "x"'))).toEqual([]);
    const out = r.push(Buffer.from([0xff, ...Buffer.from('{"execute":"y"}')]));
    expect(out).toEqual([
      { kind: 'error', desc: "JSON parse error, stray '\uFFFD'" },
      { kind: 'request', value: { execute: 'y' } },
    ]);
  });
});

describe('simulator scale', () => {
  it('plays 1,000 guests from one shared timer, and each answers', async () => {
    const dir = tempDir();
    const timersBefore = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const sim = new GuestSimulator({ dir });
    try {
      const guests = generateGuests(1000, { changingShare: 0.2, changeEveryMs: 1000 });
      await sim.addAll(guests);
      expect(readdirSync(dir).length).toBe(1000);
      const timersAfter = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
      expect(timersAfter - timersBefore).toBeLessThanOrEqual(1);
      const qemu = guests.filter((g) => g.agents[0] === 'qemu').slice(0, 50);
      const chans = await Promise.all(
        qemu.map((g) => RawChannel.connect(path.join(dir, `${g.vmId}.org.qemu.guest_agent.0`))),
      );
      const replies = await Promise.all(chans.map((c) => c.request('{"execute":"guest-get-host-name"}')));
      expect(replies.map((r) => (r[0]!.return as Record<string, string>)['host-name'])).toEqual(
        qemu.map((g) => g.hostName),
      );
      for (const c of chans) c.close();
    } finally {
      await sim.close();
    }
    expect(readdirSync(dir).length).toBe(0);
  });
});

describe('guest files', () => {
  it('loads every demo fixture, and names the file and field of a broken one', () => {
    const demo = loadGuestDir(path.join(ROOT, 'fixtures/demo'));
    expect(demo.length).toBeGreaterThanOrEqual(4);
    expect(demo.some((g) => g.agents.includes('ovirt'))).toBe(true);
    expect(demo.some((g) => g.agents.includes('qemu'))).toBe(true);
    const dir = tempDir();
    mkdirSync(path.join(dir, 'g'));
    writeFileSync(
      path.join(dir, 'g', 'bad.json'),
      JSON.stringify({
        ...demo[0],
        interfaces: [{ name: 'eth0', addresses: [{ type: 'ipv5', address: '1.2.3.4', prefix: 8 }] }],
      }),
    );
    expect(() => loadGuestDir(path.join(dir, 'g'))).toThrow(
      /bad\.json\.interfaces\[0\]\.addresses\[0\]: 'type' must be "ipv4" or "ipv6"/,
    );
  });
});
