// The simulator must not drift from the real agent: the real Debian qemu-ga runs in a network
// namespace set up like a simulated guest (same names, MACs, addresses, a label alias, a down
// device), both get the same byte sequences, and their replies must have the same shape (keys,
// types, structure) and, where the data is the same, the same content and layout.
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GuestSimulator } from '../src/sim/simulator.js';
import { generateGuest, type SimGuest } from '../src/sim/guest.js';
import { SIMULATED_COMMANDS } from '../src/sim/qgaAgent.js';
import { tempDir } from './helpers/channelsDir.js';
import { createNetns, ipn } from './helpers/netns.js';
import { missing } from './helpers/prereq.js';
import { QEMU_GA, startQemuGa, type QemuGa } from './helpers/qemuGa.js';
import { RawChannel } from './helpers/rawChannel.js';

/** Every leaf path with its JSON type, e.g. `return[].ip-addresses[].prefix:number`. */
function shape(value: unknown, at = '', out = new Set<string>()): Set<string> {
  if (Array.isArray(value)) {
    out.add(`${at}:array`);
    for (const v of value) shape(v, `${at}[]`, out);
  } else if (value !== null && typeof value === 'object') {
    out.add(`${at}:object`);
    for (const [k, v] of Object.entries(value)) shape(v, at ? `${at}.${k}` : k, out);
  } else out.add(`${at}:${value === null ? 'null' : typeof value}`);
  return out;
}

/** Reply bytes with the interface counters zeroed (traffic differs, layout must not). */
const zeroCounters = (text: string): string => text.replace(/("(?:rx|tx)-[a-z]+": )\d+/g, '$10');

function byName(reply: Record<string, unknown>): Record<string, unknown>[] {
  return [...(reply.return as Record<string, unknown>[])].sort((a, b) => String(a.name).localeCompare(String(b.name)));
}

const needs = missing({ root: true, commands: ['ip', QEMU_GA] });

describe.skipIf(needs)('simulated qemu-ga vs the real qemu-ga', () => {
  let sim: GuestSimulator;
  let qga: QemuGa;
  let real: RawChannel;
  let fake: RawChannel;
  let guest: SimGuest;

  beforeAll(async () => {
    const ns = createNetns('vsd');
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
    // No kernel-made link-local addresses: every address is one the simulated guest also has.
    ipn(
      ns,
      'link',
      'add',
      'vg0',
      'address',
      '52:54:00:00:00:10',
      'type',
      'veth',
      'peer',
      'name',
      'vg1',
      'address',
      '52:54:00:00:00:11',
    );
    for (const dev of ['vg0', 'vg1']) ipn(ns, 'link', 'set', dev, 'addrgenmode', 'none');
    ipn(
      ns,
      'link',
      'add',
      'vg2',
      'address',
      '52:54:00:00:00:12',
      'type',
      'veth',
      'peer',
      'name',
      'vg3',
      'address',
      '52:54:00:00:00:13',
    );
    ipn(ns, 'addr', 'add', '192.0.2.10/24', 'dev', 'vg0');
    ipn(ns, 'addr', 'add', '192.0.2.11/24', 'dev', 'vg0', 'label', 'vg0:1');
    ipn(ns, 'addr', 'add', '2001:db8::10/64', 'dev', 'vg0', 'nodad');
    ipn(ns, 'addr', 'add', 'fe80::5054:ff:fe00:10/64', 'dev', 'vg0', 'nodad');
    ipn(ns, 'addr', 'add', 'fe80::5054:ff:fe00:11/64', 'dev', 'vg1', 'nodad');
    ipn(ns, 'link', 'set', 'vg0', 'up');
    ipn(ns, 'link', 'set', 'vg1', 'up');

    const dir = tempDir('vat-drift-');
    // The simulated guest: generated (so its osinfo is what the fleet uses), with the namespace's devices.
    guest = {
      ...generateGuest(0, 1, { qemuShare: 1 }),
      hostName: os.hostname(),
      interfaces: [
        {
          name: 'lo',
          hw: '00:00:00:00:00:00',
          addresses: [
            { type: 'ipv4', address: '127.0.0.1', prefix: 8 },
            { type: 'ipv6', address: '::1', prefix: 128 },
          ],
        },
        {
          name: 'vg0',
          hw: '52:54:00:00:00:10',
          addresses: [
            { type: 'ipv4', address: '192.0.2.10', prefix: 24 },
            { type: 'ipv6', address: '2001:db8::10', prefix: 64 },
            { type: 'ipv6', address: 'fe80::5054:ff:fe00:10', prefix: 64 },
          ],
        },
        { name: 'vg0:1', hw: '52:54:00:00:00:10', addresses: [{ type: 'ipv4', address: '192.0.2.11', prefix: 24 }] },
        {
          name: 'vg1',
          hw: '52:54:00:00:00:11',
          addresses: [{ type: 'ipv6', address: 'fe80::5054:ff:fe00:11', prefix: 64 }],
        },
        { name: 'vg2', hw: '52:54:00:00:00:12', up: false, addresses: [] },
        { name: 'vg3', hw: '52:54:00:00:00:13', up: false, addresses: [] },
      ],
    };
    sim = new GuestSimulator({ dir });
    await sim.add(guest);
    const realPath = path.join(dir, 'real.org.qemu.guest_agent.0');
    qga = await startQemuGa(ns, realPath);
    real = await RawChannel.connect(realPath);
    fake = await RawChannel.connect(path.join(dir, `${guest.vmId}.org.qemu.guest_agent.0`));
  });

  afterAll(async () => {
    real?.close();
    fake?.close();
    await qga?.kill('SIGTERM');
    await sim?.close();
  });

  /** Sends the same bytes to both; returns both replies (parsed) and both raw byte runs. */
  async function both(
    request: string | Buffer,
    lines = 1,
  ): Promise<{ real: Record<string, unknown>[]; sim: Record<string, unknown>[]; realBytes: Buffer; simBytes: Buffer }> {
    real.clear();
    fake.clear();
    const [r, s] = await Promise.all([real.request(request, lines), fake.request(request, lines)]);
    return { real: r, sim: s, realBytes: real.bytes(), simBytes: fake.bytes() };
  }

  it('guest-sync-delimited after a 0xFF: identical bytes (stray-byte error, 0xFF, the id)', async () => {
    const r = await both(
      Buffer.concat([
        Buffer.from([0xff]),
        Buffer.from('{"execute":"guest-sync-delimited","arguments":{"id":918273645}}'),
      ]),
      2,
    );
    expect(r.simBytes.equals(r.realBytes)).toBe(true);
    expect(r.sim[1]).toEqual({ return: 918273645 });
  });

  it('guest-network-get-interfaces: same shape, same interfaces and addresses, same layout', async () => {
    const r = await both('{"execute":"guest-network-get-interfaces"}');
    expect([...shape(r.sim[0])].sort()).toEqual([...shape(r.real[0])].sort());
    const strip = (list: Record<string, unknown>[]): Record<string, unknown>[] =>
      list.map(({ statistics, ...rest }) => ({ ...rest, statistics: statistics === undefined ? 'absent' : 'present' }));
    expect(strip(byName(r.sim[0]!))).toEqual(strip(byName(r.real[0]!)));
    // Layout (member order, separators, which members appear): with the simulated interfaces in
    // the order the real agent lists them, the replies are identical up to traffic counters.
    const order = (r.real[0]!.return as { name: string }[]).map((i) => i.name);
    guest.interfaces.sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name));
    const again = await both('{"execute":"guest-network-get-interfaces"}');
    expect(zeroCounters(again.simBytes.toString())).toBe(zeroCounters(again.realBytes.toString()));
  });

  it('guest-get-host-name, guest-ping and a request id: identical bytes', async () => {
    for (const req of [
      '{"execute":"guest-get-host-name"}',
      '{"execute":"guest-ping","id":"abc"}',
      '{"execute":"guest-ping"}\n  {"execute":"guest-ping","id":7}',
    ]) {
      const r = await both(req, req.includes('\n') ? 2 : 1);
      expect(r.simBytes.toString(), req).toBe(r.realBytes.toString());
    }
  });

  it('guest-get-osinfo: same members, all strings', async () => {
    const r = await both('{"execute":"guest-get-osinfo"}');
    expect([...shape(r.sim[0])].sort()).toEqual([...shape(r.real[0])].sort());
  });

  it('guest-info: same shape, and every simulated command is one the real agent has enabled', async () => {
    const r = await both('{"execute":"guest-info"}');
    expect([...shape(r.sim[0])].sort()).toEqual([...shape(r.real[0])].sort());
    const enabled = (
      r.real[0]!.return as { supported_commands: { name: string; enabled: boolean }[] }
    ).supported_commands
      .filter((c) => c.enabled)
      .map((c) => c.name);
    expect(enabled).toEqual(expect.arrayContaining([...SIMULATED_COMMANDS]));
    expect((r.sim[0]!.return as { version: string }).version).toBe((r.real[0]!.return as { version: string }).version);
  });

  it('errors: unknown command, bad and missing arguments, stray input, non-objects: identical bytes', async () => {
    const cases: [string | Buffer, number][] = [
      ['{"execute":"guest-bogus","id":5}', 1],
      ['{"execute":"guest-ping","arguments":{"x":1}}', 1],
      ['{"execute":"guest-sync-delimited"}', 1],
      ['{"execute":"guest-sync-delimited","arguments":{"id":"x"}}', 1],
      ['{"execute":5}', 1],
      ['{"arguments":{}}', 1],
      ['{"execute":"guest-ping","arguments":[]}', 1],
      ['{"foo":1}', 1],
      ['[1]', 1],
      ['garbage{"execute":"guest-ping"}', 2],
      ['12 {"execute":"guest-ping"}', 2],
      [
        Buffer.concat([
          Buffer.from('{"execute":"guest-ping"'),
          Buffer.from([0xff]),
          Buffer.from('{"execute":"guest-ping"}'),
        ]),
        2,
      ],
    ];
    for (const [req, lines] of cases) {
      const r = await both(req, lines);
      expect(r.simBytes.toString(), String(req)).toBe(r.realBytes.toString());
    }
  });
});
