// The serialise-once path must say exactly what serialising the stats afresh says: same VMs,
// same members in the same order, same time stamps, whatever the names contain; and the
// transport must put it into the envelope unchanged (also in batches, and through toJSON).
import { describe, expect, it } from 'vitest';
import { networkStats } from '../src/libvirt/domainStatus.js';
import type { DomainNic } from '../src/libvirt/domainXml.js';
import { prepareNetworkJson, statsArrayJson } from '../src/vms/statsJson.js';
import { stampStats, type VmStatsBase } from '../src/vms/stats.js';
import { JsonText, ReplyBuffers, replyText } from '../src/rpc/jsonText.js';
import { VmRegistry } from '../src/vms/registry.js';
import type { VmNetworkStats, VmStats } from '../src/wire.js';

function base(i: number, name: string): VmStatsBase {
  return {
    vmId: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
    status: 'Up',
    netIfaces: [{ name, hw: '52:54:00:00:00:01', inet: ['192.0.2.1'], inet6: ['fe80::1'] }],
    network: {},
    guestIPs: '192.0.2.1',
    guestName: `vm-${i}`,
    guestFQDN: '',
    guestOs: '',
    guestAgentStatus: 'responsive',
  };
}

describe('stats serialised once per change', () => {
  it('equals JSON.stringify of the stamped stats, with multi-byte names, across digit-width changes', () => {
    const names = ['eth0', 'Ethernet 2', '以太网', 'Red Hat VirtIO Ethernet Adapter #2', 'e\u0301th"\\0', '😀'];
    const vms = names.map((n, i) => ({ base: base(i, n), firstSeenMs: 1000 * i }));
    // Before any agent reported (the engine throws on null), and with host-side vNICs filled in.
    vms.push({
      base: { ...base(90, 'eth0'), netIfaces: [], guestIPs: '', guestAgentStatus: 'unknown' },
      firstSeenMs: 0,
    });
    const vnet = { name: 'vnet3', macAddr: '52:54:00:00:00:01', speed: '1000', state: 'unknown', rx: '123', tx: '456' };
    const counters = {
      rxErrors: '0',
      rxDropped: '0',
      txErrors: '0',
      txDropped: '0',
      sampleTime: 4711.25,
      model: 'virtio',
      bridge: 'br0',
      alias: 'net0',
    };
    vms.push({ base: { ...base(91, 'eth0'), network: { vnet3: { ...vnet, ...counters } } }, firstSeenMs: 0 });
    // statusTime is 2147483647 + now: it gains a digit between 7852516351 and 7852516352.
    for (const now of [5000, 9999, 10_000, 99_999, 123_456_789, 7_852_516_351, 7_852_516_352, 1_000_000_000_000]) {
      const bytes = statsArrayJson(vms, now);
      expect(bytes.toString('utf8')).toBe(JSON.stringify(vms.map((v) => stampStats(v.base, v.firstSeenMs, now))));
    }
    expect(statsArrayJson([], 5).toString()).toBe('[]');
  });

  it('reuses the assembled array only while nothing changed: changes, removals, ages and single-VM calls between', () => {
    let vms = Array.from({ length: 40 }, (_, i) => ({ base: base(i, `eth${i}`), firstSeenMs: 0 }));
    const expected = (list: typeof vms, now: number): string =>
      JSON.stringify(list.map((v) => stampStats(v.base, v.firstSeenMs, now)));
    const steps: ((now: number) => void)[] = [
      () => undefined, // same VMs, later time: digits rewritten in place
      () => (vms[7] = { ...vms[7]!, base: { ...vms[7]!.base, guestName: 'renamed, longer than before' } }),
      () => (vms = vms.filter((_, i) => i !== 3)),
      () => vms.push({ base: base(77, 'new'), firstSeenMs: 0 }),
      (now) => expect(statsArrayJson([vms[5]!], now).toString()).toBe(expected([vms[5]!], now)),
      () => (vms = [...vms].reverse()),
      () => undefined,
    ];
    // Elapsed time crosses 9 -> 10 s and 99 -> 100 s (its width changes) along the way.
    let now = 8_500;
    for (let round = 0; round < 3; round++)
      for (const step of steps) {
        step(now);
        expect(statsArrayJson(vms, now).toString()).toBe(expected(vms, now));
        now += round === 1 ? 13_000 : 700;
      }
  });

  it('follows a change: a new stats object is serialised anew', () => {
    const r = new VmRegistry({ clock: () => 42_000 });
    r.channelAdded('00000000-0000-4000-8000-000000000001', 'ovirt-guest-agent.0');
    const before = JSON.parse(r.allJson().toString()) as { netIfaces: unknown; network: unknown; statusTime: string }[];
    expect(before[0]!.netIfaces).toEqual([]);
    expect(before[0]!.network).toEqual({});
    expect(before[0]!.statusTime).toBe(String(2147483647 + 42_000));
    expect(r.allJson().toString()).toBe(JSON.stringify(r.all()));
    r.report('00000000-0000-4000-8000-000000000001', 'ovirt-guest-agent.0', {
      netIfaces: [{ name: 'eth0', hw: '', inet: ['10.0.0.1'], inet6: [] }],
    });
    expect(r.allJson().toString()).toBe(JSON.stringify(r.all()));
    expect(r.getJson('00000000-0000-4000-8000-000000000001')!.toString()).toBe(
      JSON.stringify([r.get('00000000-0000-4000-8000-000000000001')]),
    );
  });
});

describe('libvirt counter samples', () => {
  // What the engine reads: every VM's stats as serialising them afresh gives, sample times with a
  // fraction (its JSON reader takes a whole number for an Integer and drops it).
  const fresh = (r: VmRegistry): string =>
    JSON.stringify(r.all()).replace(/"sampleTime":(-?\d+)(?=[,}])/g, '"sampleTime":$1.0');
  const id = (i: number): string => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
  const nics = (i: number): DomainNic[] => [
    {
      device: `vnet${i}`,
      mac: `52:54:00:00:01:${(i % 256).toString(16).padStart(2, '0')}`,
      model: 'virtio',
      bridge: 'br0',
      alias: 'net0',
      type: 'bridge',
    },
    ...(i % 3 === 0
      ? [
          {
            device: `vnet${i}b`,
            mac: `52:54:00:00:02:00`,
            model: 'e1000',
            bridge: 'br1',
            alias: 'net1',
            type: 'bridge',
          },
        ]
      : []),
  ];

  it("a call right after a sample lands shows every VM's new counters, byte for byte what serialising afresh gives", () => {
    let now = 40_000;
    const r = new VmRegistry({ clock: () => now });
    const n = 30;
    for (let i = 0; i < n; i++)
      r.hypervisorSet(id(i), { status: 'Up', startMs: 0, network: networkStats(nics(i), new Map(), 1) });
    // Some VMs have an agent too, with data that needs escaping and multi-byte text.
    for (const i of [2, 5, 9]) {
      r.channelAdded(id(i), 'ovirt-guest-agent.0');
      r.report(id(i), 'ovirt-guest-agent.0', {
        netIfaces: [{ name: 'Ethernet "2"', hw: '52:54:00:00:01:02', inet: ['192.0.2.9'], inet6: [] }],
        guestName: `vm-${i}-以太网\\`,
      });
    }
    expect(r.allJson().toString()).toBe(fresh(r));
    for (let round = 1; round <= 7; round++) {
      // Round 4 crosses elapsedTime 99 -> 100 s (its width changes) between the sample and the call.
      now += round === 4 ? 50_000 : 1_000;
      const rx = (i: number): string => String(round * 1_000_000 + i * 7);
      const sampleTime = round === 2 ? 41 : now / 1000 + 0.125; // round 2: a whole second
      const sample = Array.from({ length: n }, (_, i) =>
        networkStats(
          nics(i),
          new Map([
            [
              `vnet${i}`,
              { rxBytes: rx(i), txBytes: String(round), rxErrs: '0', rxDrop: '1', txErrs: '0', txDrop: '0' },
            ],
          ]),
          sampleTime,
        ),
      );
      // As the inventory does: each VM's new map serialised ahead, but not every VM's (those are made at the call).
      sample.forEach((net, i) => {
        if (i % 7 !== 3) prepareNetworkJson(id(i), net);
      });
      // Before the sample lands a call still shows the previous one.
      expect(r.allJson().toString()).toBe(fresh(r));
      // Guest data changes between the preparation and the landing: that VM's prepared bytes are not its bytes.
      if (round === 3) {
        r.report(id(5), 'ovirt-guest-agent.0', { guestName: 'renamed while sampling' });
        expect(r.allJson().toString()).toBe(fresh(r));
      }
      sample.forEach((net, i) => r.hypervisorNetwork(id(i), net));
      // Round 5: a call arrives before the cached reply is brought up to date (it does it itself).
      if (round !== 5) r.warmJson();
      const after = r.allJson().toString();
      expect(after).toBe(fresh(r));
      const got = JSON.parse(after) as (VmStats & { network: Record<string, VmNetworkStats> })[];
      expect(got).toHaveLength(n);
      for (let i = 0; i < n; i++) expect(got.find((v) => v.vmId === id(i))!.network[`vnet${i}`]!.rx).toBe(rx(i));
      expect(after).toContain(`"sampleTime":${round === 2 ? '41.0' : String(sampleTime)}`);
      // VM.getStats says the same as the array.
      expect(r.getJson(id(3))!.toString()).toBe(
        JSON.stringify([r.get(id(3))]).replace(/"sampleTime":(\d+)(?=[,}])/g, '"sampleTime":$1.0'),
      );
    }
    // A VM gone after its map was prepared: the others are still right.
    prepareNetworkJson(id(0), networkStats(nics(0), new Map(), 99.5));
    r.hypervisorStopped(id(0), { exitCode: 0, exitMessage: 'VM terminated succesfully', exitReason: 0 });
    r.warmJson();
    expect(r.allJson().toString()).toBe(fresh(r));
  });
});

describe('pre-serialised results in the transport', () => {
  const text = new JsonText((before, after, alloc) => {
    const body = Buffer.from('[{"a":"ü"}]');
    const out = alloc(before.length + body.length + after.length);
    before.copy(out, 0);
    body.copy(out, before.length);
    after.copy(out, before.length + body.length);
    return out;
  });

  it('splices the bytes into the response, alone and in a batch, and stays right through JSON.stringify', () => {
    const one = replyText({ jsonrpc: '2.0', id: 7, result: text });
    expect(JSON.parse(one.toString())).toEqual({ jsonrpc: '2.0', id: 7, result: [{ a: 'ü' }] });
    const batch = replyText([
      { jsonrpc: '2.0', id: 'x', result: text },
      { jsonrpc: '2.0', id: 8, error: { code: 1, message: 'Virtual machine does not exist' } },
    ]);
    expect(JSON.parse(batch.toString())).toEqual([
      { jsonrpc: '2.0', id: 'x', result: [{ a: 'ü' }] },
      { jsonrpc: '2.0', id: 8, error: { code: 1, message: 'Virtual machine does not exist' } },
    ]);
    expect(JSON.parse(JSON.stringify({ result: text }))).toEqual({ result: [{ a: 'ü' }] });
  });

  it('reuses a released reply buffer and keeps at most the bound idle', () => {
    const pool = new ReplyBuffers(1, 16);
    const a = pool.alloc(100);
    expect(pool.pooled(a)).toBe(true);
    pool.release(a);
    const b = pool.alloc(90);
    expect(b.buffer).toBe(a.buffer);
    const c = pool.alloc(100);
    expect(c.buffer).not.toBe(a.buffer);
    pool.release(b);
    pool.release(c); // over the bound: dropped
    expect(pool.alloc(100).buffer).toBe(a.buffer);
    expect(pool.alloc(100).buffer).not.toBe(c.buffer);
    expect(pool.pooled(pool.alloc(8))).toBe(false);
  });

  it('a pool filled by smaller replies makes room for a larger one, so larger replies reuse it', () => {
    const pool = new ReplyBuffers(2, 16);
    // Start-up: replies grow while VMs report; the pool fills with the smaller buffers.
    const small = [pool.alloc(100), pool.alloc(200)];
    for (const b of small) pool.release(b);
    const big = pool.alloc(1000);
    expect(small.map((b) => b.buffer)).not.toContain(big.buffer);
    pool.release(big);
    // Every later reply of that size gets the same buffer back instead of a fresh one.
    for (let i = 0; i < 3; i++) {
      const again = pool.alloc(1000);
      expect(again.buffer).toBe(big.buffer);
      pool.release(again);
    }
    // And the larger of the small ones is still there for a middle-sized reply.
    expect(pool.alloc(200).buffer).toBe(small[1]!.buffer);
  });
});
