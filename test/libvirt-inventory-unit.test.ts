// The libvirt inventory without libvirtd: the codec's new calls and event messages, fuzzed with
// fast-check (random bytes and truncations never throw anything but XdrError); the domain XML
// reader; VDSM's status, exit and vNIC shapes; the registry's hypervisor view (listed with or
// without channels, Down once, parked sockets); and the inventory against a scripted libvirtd that
// answers, sends garbage, stalls, or dies mid-reply.
import net from 'node:net';
import path from 'node:path';
import fc from 'fast-check';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { LibvirtClient } from '../src/libvirt/client.js';
import { domainNics } from '../src/libvirt/domainXml.js';
import {
  countersFromBulk,
  exitOfStopped,
  lifecycleChange,
  networkStats,
  statusOfState,
} from '../src/libvirt/domainStatus.js';
import { LibvirtInventory } from '../src/libvirt/inventory.js';
import {
  LIBVIRT,
  MessageFramer,
  XdrError,
  XdrReader,
  XdrWriter,
  decodeAllDomainStats,
  decodeDomainEvent,
  decodeDomainList,
  decodeDomainState,
  decodeInterfaceStats,
  encodeGetAllDomainStats,
  encodeMessage,
  type DomainRef,
  type Message,
} from '../src/libvirt/wire.js';
import { VmRegistry } from '../src/vms/registry.js';
import { statsArrayJson } from '../src/vms/statsJson.js';
import type { VmChange } from '../src/vms/registry.js';
import type { VmStats } from '../src/wire.js';
import { tempDir } from './helpers/channelsDir.js';
import { eventually } from './helpers/scriptedGuest.js';

const silent = pino({ level: 'silent' });
const UUID_A = '4d736c0a-5ce8-45e3-a058-ea16b22fbb5e';
const UUID_B = '00000000-0000-4000-8000-0000000000b2';

function dom(name: string, uuid: string, id = 1): DomainRef {
  return { name, uuid: Buffer.from(uuid.replace(/-/g, ''), 'hex'), id };
}

function writeDom(w: XdrWriter, d: DomainRef): XdrWriter {
  return w.string(d.name).fixedOpaque(d.uuid).i32(d.id);
}

const XML = `<domain type='kvm' id='3'>
  <name>web01</name>
  <uuid>${UUID_A}</uuid>
  <devices>
    <interface type='bridge'>
      <mac address='52:54:00:AB:CD:01'/>
      <source bridge='ovirtmgmt'/>
      <target dev='vnet3'/>
      <model type='virtio'/>
      <alias name='ua-0d5c1c7e'/>
    </interface>
    <interface type="network">
      <mac address="52:54:00:ab:cd:02"/>
      <source network="test &amp; lab" portid='x'/>
      <target dev="vnet4"/>
      <model type="rtl8139"/>
      <alias name="net1"/>
    </interface>
    <interface type='hostdev' managed='yes'>
      <mac address='52:54:00:ab:cd:03'/>
      <source><address type='pci' domain='0x0000' bus='0x03' slot='0x00' function='0x1'/></source>
    </interface>
    <interface type='user'>
      <mac address='52:54:00:ab:cd:04'/>
      <model type='e1000'/>
    </interface>
  </devices>
</domain>`;

describe('libvirt codec: the inventory calls and event messages', () => {
  it('decodes a domain list, a state, interface counters (64-bit exact) and bulk stats of every typed-parameter kind', () => {
    const a = dom('a', UUID_A, 3);
    const b = dom('b', UUID_B, -1);
    expect(
      decodeDomainList(
        writeDom(writeDom(new XdrWriter().u32(2), a), b)
          .u32(2)
          .bytes(),
      ),
    ).toEqual([a, b]);
    expect(decodeDomainState(new XdrWriter().i32(3).i32(2).bytes())).toEqual({ state: 3, reason: 2 });
    const big = Buffer.alloc(64);
    big.writeBigInt64BE(2n ** 62n + 7n, 0);
    big.writeBigInt64BE(-1n, 8);
    expect(decodeInterfaceStats(big)).toMatchObject({ rxBytes: '4611686018427387911', rxPackets: '-1', txDrop: '0' });
    const w = writeDom(new XdrWriter().u32(1), a).u32(7);
    const d = Buffer.alloc(8);
    d.writeDoubleBE(1.5);
    w.string('i')
      .i32(1)
      .i32(-5)
      .string('ui')
      .i32(2)
      .u32(7)
      .string('l')
      .i32(3)
      .i32(0)
      .u32(9)
      .string('ul')
      .i32(4)
      .u32(1)
      .u32(0);
    w.string('d').i32(5).fixedOpaque(d).string('b').i32(6).i32(1).string('s').i32(7).string('vnet3');
    const [rec] = decodeAllDomainStats(w.bytes());
    expect(rec!.dom).toEqual(a);
    expect([...rec!.params]).toEqual([
      ['i', -5],
      ['ui', 7],
      ['l', '9'],
      ['ul', '4294967296'],
      ['d', 1.5],
      ['b', true],
      ['s', 'vnet3'],
    ]);
    const args = new XdrReader(encodeGetAllDomainStats([a], 16, 0));
    expect([args.u32(), args.string(), args.fixedOpaque(16).length, args.i32(), args.u32(), args.u32()]).toEqual([
      1,
      'a',
      16,
      3,
      16,
      0,
    ]);
  });

  it('decodes the server-sent lifecycle and device events; other procedures are not events', () => {
    const a = dom('a', UUID_A);
    expect(
      decodeDomainEvent(
        LIBVIRT.proc.domainEventCallbackLifecycle,
        writeDom(new XdrWriter().i32(4), a).i32(5).i32(1).bytes(),
      ),
    ).toEqual({ kind: 'lifecycle', callbackId: 4, dom: a, event: 5, detail: 1 });
    expect(
      decodeDomainEvent(
        LIBVIRT.proc.domainEventCallbackDeviceAdded,
        writeDom(new XdrWriter().i32(5), a).string('net2').bytes(),
      ),
    ).toEqual({ kind: 'deviceAdded', callbackId: 5, dom: a, alias: 'net2' });
    expect(
      decodeDomainEvent(
        LIBVIRT.proc.domainEventCallbackDeviceRemoved,
        writeDom(new XdrWriter().i32(6), a).string('net2').bytes(),
      ),
    ).toMatchObject({ kind: 'deviceRemoved', alias: 'net2' });
    expect(decodeDomainEvent(319, Buffer.alloc(0))).toBeNull();
  });

  it('an array count beyond its bound or beyond the bytes left is refused before anything is allocated', () => {
    expect(() => decodeDomainList(new XdrWriter().u32(0xffffffff).bytes())).toThrow(XdrError);
    expect(() => decodeDomainList(new XdrWriter().u32(16384).bytes())).toThrow(/longer than/);
    expect(() => decodeAllDomainStats(writeDom(new XdrWriter().u32(1), dom('a', UUID_A)).u32(5000).bytes())).toThrow(
      /bound/,
    );
    expect(() =>
      decodeAllDomainStats(writeDom(new XdrWriter().u32(1), dom('a', UUID_A)).u32(1).string('x').i32(99).bytes()),
    ).toThrow(/typed parameter type 99/);
  });

  // Property-based, fixed seed (a failure prints the seed and path to replay it).
  const decoders: [string, (b: Buffer) => unknown][] = [
    ['domain list', decodeDomainList],
    ['state', decodeDomainState],
    ['interface stats', decodeInterfaceStats],
    ['bulk stats', decodeAllDomainStats],
    ['lifecycle event', (b) => decodeDomainEvent(LIBVIRT.proc.domainEventCallbackLifecycle, b)],
    ['device event', (b) => decodeDomainEvent(LIBVIRT.proc.domainEventCallbackDeviceAdded, b)],
  ];
  const valid: Buffer[] = [
    writeDom(new XdrWriter().u32(1), dom('web01', UUID_A)).u32(1).bytes(),
    writeDom(new XdrWriter().u32(1), dom('a', UUID_A))
      .u32(2)
      .string('net.count')
      .i32(2)
      .u32(1)
      .string('net.0.name')
      .i32(7)
      .string('vnet0')
      .bytes(),
    writeDom(new XdrWriter().i32(4), dom('a', UUID_A)).i32(5).i32(1).bytes(),
  ];

  it('random bytes never throw anything but XdrError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.constantFrom(...decoders), (bytes, [, decode]) => {
        try {
          decode(Buffer.from(bytes));
        } catch (err) {
          if (!(err instanceof XdrError)) throw err;
        }
      }),
      { seed: 0x11b7, numRuns: 3000 },
    );
  });

  it('truncated and bit-flipped valid messages never throw anything but XdrError', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...valid),
        fc.nat(),
        fc.nat(),
        fc.integer({ min: 0, max: 7 }),
        fc.constantFrom(...decoders),
        (msg, cut, at, bit, [, decode]) => {
          const b = Buffer.from(msg.subarray(0, cut % (msg.length + 1)));
          if (b.length) b[at % b.length]! ^= 1 << bit;
          try {
            decode(b);
          } catch (err) {
            if (!(err instanceof XdrError)) throw err;
          }
        },
      ),
      { seed: 0x11b8, numRuns: 3000 },
    );
  });

  it('the framer takes any byte stream: whole messages out, or XdrError, never a hang or another exception', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 8 }), (chunks) => {
        const f = new MessageFramer();
        try {
          for (const c of chunks) for (const m of f.push(Buffer.from(c))) expect(m.body).toBeInstanceOf(Buffer);
        } catch (err) {
          if (!(err instanceof XdrError)) throw err;
        }
      }),
      { seed: 0x11b9, numRuns: 2000 },
    );
  });
});

describe('domain XML: vNICs', () => {
  it('reads host device, MAC (lower-case), model, bridge or network, alias; hostdev NICs left out', () => {
    expect(domainNics(XML)).toEqual([
      {
        device: 'vnet3',
        mac: '52:54:00:ab:cd:01',
        model: 'virtio',
        bridge: 'ovirtmgmt',
        alias: 'ua-0d5c1c7e',
        type: 'bridge',
      },
      {
        device: 'vnet4',
        mac: '52:54:00:ab:cd:02',
        model: 'rtl8139',
        bridge: 'test & lab',
        alias: 'net1',
        type: 'network',
      },
      { device: '', mac: '52:54:00:ab:cd:04', model: 'e1000', bridge: '', alias: '', type: 'user' },
    ]);
    expect(domainNics('<domain/>')).toEqual([]);
    fc.assert(
      fc.property(fc.string({ maxLength: 400 }), (s) =>
        Array.isArray(domainNics(`<domain><devices>${s}</devices></domain>`)),
      ),
      { seed: 7, numRuns: 1000 },
    );
  });
});

describe("VDSM's words for libvirt's states and events", () => {
  it('status, lifecycle changes and exit fields (exitCode 0 or 1 only)', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 0].map(statusOfState)).toEqual([
      'Up',
      'Up',
      'Paused',
      'Powering down',
      null,
      null,
      'Paused',
      'Up',
    ]);
    expect(lifecycleChange(3, 0)).toEqual({ kind: 'status', status: 'Paused' });
    expect(lifecycleChange(4, 0)).toEqual({ kind: 'status', status: 'Up' });
    expect(lifecycleChange(6, 1)).toEqual({ kind: 'status', status: 'Powering down' });
    expect(lifecycleChange(6, 2)).toEqual({ kind: 'none' }); // QEMU killed (virsh destroy)
    expect(lifecycleChange(0, 0)).toEqual({ kind: 'none' }); // defined: not a running VM's change
    expect(lifecycleChange(2, 0)).toEqual({ kind: 'started' });
    for (let detail = 0; detail < 8; detail++) expect([0, 1]).toContain(exitOfStopped(detail).exitCode);
    expect(exitOfStopped(0)).toEqual({
      exitCode: 0,
      exitMessage: 'User shut down from within the guest',
      exitReason: 7,
    });
    expect(exitOfStopped(1)).toEqual({ exitCode: 0, exitMessage: 'Admin shut down from the engine', exitReason: 6 });
    expect(exitOfStopped(2)).toEqual({ exitCode: 1, exitMessage: 'Lost connection with qemu process', exitReason: 2 });
  });

  it('network: keyed by host device, counters as strings from bulk stats, speed by model, {} without host devices', () => {
    const nics = domainNics(XML);
    const counters = countersFromBulk(
      new Map<string, string | number | boolean>([
        ['net.count', 2],
        ['net.0.name', 'vnet3'],
        ['net.0.rx.bytes', '123'],
        ['net.0.tx.bytes', '456'],
        ['net.0.rx.drop', '-1'],
        ['net.1.name', 'vnet4'],
      ]),
    );
    const net = networkStats(nics, counters, 4711);
    expect(Object.keys(net)).toEqual(['vnet3', 'vnet4']);
    expect(net.vnet3).toEqual({
      name: 'vnet3',
      macAddr: '52:54:00:ab:cd:01',
      speed: '1000',
      state: 'unknown',
      rx: '123',
      tx: '456',
      rxErrors: '0',
      rxDropped: '0',
      txErrors: '0',
      txDropped: '0',
      sampleTime: 4711,
      model: 'virtio',
      bridge: 'ovirtmgmt',
      alias: 'ua-0d5c1c7e',
    });
    expect(net.vnet4!.speed).toBe('100');
    expect(networkStats([], counters, 1)).toEqual({});
  });

  it('sampleTime is written with a fraction, also when whole (the engine needs a Double)', () => {
    const r = new VmRegistry({ clock: () => 10_000 });
    r.hypervisorSet(UUID_A, { status: 'Up', startMs: 0, network: networkStats(domainNics(XML), new Map(), 4711) });
    const text = r.allJson().toString();
    expect(text).toContain('"sampleTime":4711.0,');
    expect(JSON.parse(text)).toEqual(JSON.parse(JSON.stringify(r.all())));
    const frac = new VmRegistry({ clock: () => 10_000 });
    frac.hypervisorSet(UUID_A, {
      status: 'Up',
      startMs: 0,
      network: networkStats(domainNics(XML), new Map(), 4711.25),
    });
    expect(statsArrayJson([], 1).toString()).toBe('[]');
    expect(frac.allJson().toString()).toContain('"sampleTime":4711.25,');
  });
});

describe('the registry with a hypervisor view', () => {
  function setup(): { r: VmRegistry; changes: VmChange[]; clock: { now: number } } {
    const clock = { now: 100_000 };
    const r = new VmRegistry({ clock: () => clock.now });
    const changes: VmChange[] = [];
    r.onChange((c) => changes.push(c));
    return { r, changes, clock };
  }

  it('a libvirt VM is listed without channels, elapsedTime from its start; a socket going away does not take it', () => {
    const { r, changes, clock } = setup();
    r.hypervisorSet(UUID_A, { status: 'Up', startMs: 40_000, network: {} });
    expect(r.get(UUID_A)).toMatchObject({ status: 'Up', elapsedTime: '60', network: {} });
    r.channelAdded(UUID_A.toUpperCase(), 'org.qemu.guest_agent.0');
    r.channelRemoved(UUID_A, 'org.qemu.guest_agent.0');
    expect(r.has(UUID_A)).toBe(true);
    clock.now += 1000;
    r.hypervisorSet(UUID_A, { status: 'Paused', startMs: 40_000, network: {} });
    r.hypervisorSet(UUID_A, { status: 'Paused', startMs: 40_000, network: {} }); // no change, no event
    expect(changes.map((c) => c.stats.status)).toEqual(['Up', 'Paused']);
  });

  it('stopped: one Down with exit fields, then gone; its lingering socket does not list it again', () => {
    const { r, changes } = setup();
    r.hypervisorSet(UUID_A, { status: 'Up', startMs: 0, network: {} });
    r.channelAdded(UUID_A, 'ovirt-guest-agent.0');
    r.hypervisorStopped(UUID_A, exitOfStopped(1));
    r.hypervisorStopped(UUID_A, exitOfStopped(1));
    expect(changes.map((c) => [c.stats.status, c.stats.exitCode, c.stats.exitReason])).toEqual([
      ['Up', undefined, undefined],
      ['Down', 0, 6],
    ]);
    expect(r.has(UUID_A)).toBe(false);
    r.channelAdded(UUID_A, 'org.qemu.guest_agent.0');
    expect(r.has(UUID_A)).toBe(false);
    r.channelRemoved(UUID_A, 'ovirt-guest-agent.0');
    r.channelRemoved(UUID_A, 'org.qemu.guest_agent.0');
    expect(changes).toHaveLength(2);
    // Started again: listed again.
    r.hypervisorSet(UUID_A, { status: 'Up', startMs: 0, network: {} });
    expect(r.has(UUID_A)).toBe(true);
  });

  it("a VM known only by its sockets keeps today's behaviour: Up while one exists, Down (no exit fields) when the last goes", () => {
    const { r, changes } = setup();
    r.channelAdded(UUID_B, 'ovirt-guest-agent.0');
    r.channelRemoved(UUID_B, 'ovirt-guest-agent.0');
    expect(changes.map((c) => [c.stats.status, c.stats.exitCode])).toEqual([
      ['Up', undefined],
      ['Down', undefined],
    ]);
  });
});

/** A scripted libvirtd for the inventory: domains, their state and XML, events on demand, misbehaviour. */
class FakeLibvirtd {
  readonly server: net.Server;
  readonly sockets = new Set<net.Socket>();
  readonly eventSockets = new Set<net.Socket>();
  domains: { ref: DomainRef; state: number; xml: string }[] = [];
  /** What to do with the next call of this procedure. */
  misbehave: Partial<Record<number, 'garbage' | 'silence' | 'die-mid-reply'>> = {};
  calls: number[] = [];
  /** Answer polkit with an error (access denied), as libvirtd does for a user polkit refuses. */
  denyPolkit = false;
  /** Bulk stats also carry vnet3's counters, moving with every bulk call (QEMU's driver sends them). */
  counters = false;
  bulkCalls = 0;
  /** Bulk stats answered this late (a libvirtd slower than the sampling interval). */
  bulkDelayMs = 0;

  constructor(readonly path: string) {
    this.server = net.createServer((s) => {
      this.sockets.add(s);
      s.on('close', () => (this.sockets.delete(s), this.eventSockets.delete(s)));
      s.on('error', () => undefined);
      const framer = new MessageFramer();
      s.on('data', (chunk: Buffer) => {
        for (const m of framer.push(chunk)) this.handle(s, m);
      });
    });
  }

  listen(): Promise<void> {
    return new Promise((r) => this.server.listen(this.path, r));
  }

  private handle(s: net.Socket, m: Message): void {
    const h = m.header;
    this.calls.push(h.proc);
    const P = LIBVIRT.proc;
    let out: Buffer;
    const find = (body: Buffer): { ref: DomainRef; state: number; xml: string } | undefined => {
      const r = new XdrReader(body);
      r.string();
      const uuid = r.fixedOpaque(16);
      return this.domains.find((d) => d.ref.uuid.equals(uuid));
    };
    const how = this.misbehave[h.proc];
    if (how) {
      this.misbehave = { ...this.misbehave, [h.proc]: undefined };
      if (how === 'silence') return;
      if (how === 'garbage') {
        s.write(Buffer.from([0xff, 0xff, 0xff, 0xf0, 1, 2, 3, 4, 5, 6, 7, 8]));
        return;
      }
      const reply = encodeMessage(
        { prog: h.prog, vers: 1, proc: h.proc, type: LIBVIRT.type.reply, serial: h.serial, status: 0 },
        Buffer.alloc(400),
      );
      s.end(reply.subarray(0, 60)); // half a reply, then gone
      s.destroy();
      return;
    }
    switch (h.proc) {
      case P.authList:
        out = new XdrWriter()
          .u32(1)
          .i32(this.denyPolkit ? 2 : 0)
          .bytes();
        break;
      case P.authPolkit:
        if (this.denyPolkit) {
          const err = new XdrWriter()
            .i32(6)
            .i32(7)
            .optionalString('authentication failed: access denied by policy')
            .i32(2)
            .bytes();
          s.write(
            encodeMessage(
              {
                prog: h.prog,
                vers: 1,
                proc: h.proc,
                type: LIBVIRT.type.reply,
                serial: h.serial,
                status: LIBVIRT.status.error,
              },
              err,
            ),
          );
          return;
        }
        out = new XdrWriter().i32(1).bytes();
        break;
      case P.connectDomainEventCallbackRegisterAny:
        this.eventSockets.add(s);
        out = new XdrWriter().i32(this.calls.length).bytes();
        break;
      case P.connectListAllDomains: {
        const live = this.domains.filter((d) => d.state !== 5);
        const w = new XdrWriter().u32(live.length);
        for (const d of live) writeDom(w, d.ref);
        out = w.u32(live.length).bytes();
        break;
      }
      case P.connectGetAllDomainStats: {
        const live = this.domains.filter((d) => d.state !== 5);
        const w = new XdrWriter().u32(live.length);
        const rx = String(++this.bulkCalls * 1000);
        for (const d of live) {
          writeDom(w, d.ref).u32(this.counters ? 5 : 2);
          w.string('state.state').i32(1).i32(d.state).string('state.reason').i32(1).i32(1);
          // typed parameters: 1 int, 7 string
          if (this.counters) w.string('net.count').i32(1).i32(1).string('net.0.name').i32(7).string('vnet3');
          if (this.counters) w.string('net.0.rx.bytes').i32(7).string(rx);
        }
        out = w.bytes();
        break;
      }
      case P.domainGetState:
        out = new XdrWriter()
          .i32(find(m.body)?.state ?? 5)
          .i32(1)
          .bytes();
        break;
      case P.domainGetXmlDesc:
        out = new XdrWriter().string(find(m.body)?.xml ?? '<domain/>').bytes();
        break;
      default:
        out = Buffer.alloc(0);
    }
    const reply = encodeMessage(
      { prog: h.prog, vers: 1, proc: h.proc, type: LIBVIRT.type.reply, serial: h.serial, status: 0 },
      out,
    );
    if (h.proc === P.connectGetAllDomainStats && this.bulkDelayMs > 0)
      setTimeout(() => !s.destroyed && s.write(reply), this.bulkDelayMs);
    else s.write(reply);
  }

  event(d: DomainRef, event: number, detail: number): void {
    const body = writeDom(new XdrWriter().i32(1), d).i32(event).i32(detail).bytes();
    for (const s of this.eventSockets)
      s.write(
        encodeMessage(
          {
            prog: LIBVIRT.remoteProgram,
            vers: 1,
            proc: LIBVIRT.proc.domainEventCallbackLifecycle,
            type: LIBVIRT.type.message,
            serial: 0,
            status: 0,
          },
          body,
        ),
      );
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server.close(r));
  }
}

describe('the inventory against a scripted libvirtd', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function setup(
    intervalMs = 60_000,
    counters = false,
  ): Promise<{
    fake: FakeLibvirtd;
    client: LibvirtClient;
    reg: VmRegistry;
    inv: LibvirtInventory;
    changes: VmChange[];
    sock: string;
  }> {
    const sock = path.join(tempDir('vdsm-fake-libvirt-inv-'), 'libvirt-sock');
    const fake = new FakeLibvirtd(sock);
    fake.domains = [
      { ref: dom('web01', UUID_A), state: 1, xml: XML },
      { ref: dom('db01', UUID_B), state: 3, xml: '<domain><devices></devices></domain>' },
    ];
    fake.counters = counters;
    await fake.listen();
    cleanups.push(() => (fake.server.listening ? fake.stop() : undefined));
    const client = new LibvirtClient({
      uri: `qemu+unix:///system?socket=${sock}`,
      log: silent,
      connections: 2,
      callTimeoutMs: 300,
      reconnectMinMs: 30,
      reconnectMaxMs: 100,
    });
    const reg = new VmRegistry();
    const changes: VmChange[] = [];
    reg.onChange((c) => changes.push(c));
    const inv = new LibvirtInventory({
      client,
      registry: reg,
      log: silent,
      intervalMs,
      clock: () => reg.now(),
      retryMs: 100,
    });
    inv.start();
    cleanups.push(() => {
      inv.stop();
      client.stop();
    });
    await client.start();
    await inv.settled();
    return { fake, client, reg, inv, changes, sock };
  }

  it('lists the active domains with their status and vNICs, then follows lifecycle events one change each', async () => {
    const { fake, reg, changes } = await setup();
    expect(reg.get(UUID_A)).toMatchObject({
      status: 'Up',
      network: { vnet3: { macAddr: '52:54:00:ab:cd:01' }, vnet4: { bridge: 'test & lab' } },
    });
    expect(reg.get(UUID_B)).toMatchObject({ status: 'Paused', network: {} });
    fake.event(dom('web01', UUID_A), 3, 0); // suspended
    fake.event(dom('web01', UUID_A), 4, 0); // resumed
    fake.event(dom('web01', UUID_A), 5, 1); // stopped, destroyed
    await eventually(
      () => changes.filter((c) => c.vmId === UUID_A).length,
      (n) => n === 4,
      5000,
      'events applied',
    );
    expect(changes.filter((c) => c.vmId === UUID_A).map((c) => c.stats.status)).toEqual(['Up', 'Paused', 'Up', 'Down']);
    expect(reg.has(UUID_A)).toBe(false);
  });

  it('a counter sample shows in the next call, whether stats were asked for before it (serialised ahead) or not', async () => {
    const { reg } = await setup(30, true);
    const rxOf = (): string | undefined => reg.get(UUID_A)?.network.vnet3?.rx;
    const served = (): { rx: string | undefined; same: boolean } => {
      const json = reg.allJson().toString();
      const all = JSON.parse(json) as VmStats[];
      // What the call serves is what the registry holds at that moment, nothing older (the
      // clock-stamped times aside: the two are read a moment apart).
      const untimed = (list: VmStats[]): string =>
        JSON.stringify(list.map(({ statusTime: _s, elapsedTime: _e, ...rest }) => rest));
      return { rx: all.find((v) => v.vmId === UUID_A)?.network.vnet3?.rx, same: untimed(all) === untimed(reg.all()) };
    };
    // Nobody has asked yet: samples land without being serialised; the first call builds them.
    const first = await eventually(rxOf, (rx) => rx !== undefined && rx !== '0', 5000, 'a first sample');
    const late = await eventually(rxOf, (rx) => rx !== first, 5000, 'a second sample with nobody asking');
    let now = served();
    expect(now.same).toBe(true);
    expect(Number(now.rx)).toBeGreaterThanOrEqual(Number(late));
    // Asked just now: the next samples are serialised as they land; calls show each of them.
    for (let k = 0; k < 3; k++) {
      const seen = now.rx;
      await eventually(rxOf, (rx) => rx !== seen, 5000, `sample ${k + 1} after a call`);
      now = served();
      expect(now.same).toBe(true);
      expect(Number(now.rx)).toBeGreaterThan(Number(seen));
    }
  });

  it('libvirtd gone and back: no VM lost, no Down; a domain gone meanwhile is Down once', async () => {
    const { fake, reg, changes, sock, client } = await setup();
    await fake.stop();
    await eventually(
      () => client.state,
      (s) => s === 'down',
      5000,
      'down',
    );
    expect(reg.has(UUID_A) && reg.has(UUID_B)).toBe(true);
    const again = new FakeLibvirtd(sock);
    again.domains = [{ ref: dom('web01', UUID_A), state: 1, xml: XML }];
    await again.listen();
    cleanups.push(() => (again.server.listening ? again.stop() : undefined));
    await eventually(
      () => reg.has(UUID_B),
      (x) => !x,
      5000,
      'db01 reconciled',
    );
    expect(changes.filter((c) => c.stats.status === 'Down').map((c) => [c.vmId, c.stats.exitReason])).toEqual([
      [UUID_B, 11],
    ]);
    expect(reg.get(UUID_A)!.status).toBe('Up');
  });

  it('a counter sample libvirtd never answers costs that sample only: the samples after it land', async () => {
    const { fake, reg, client } = await setup(30, true);
    const rxOf = (): number => Number(reg.get(UUID_A)?.network.vnet3?.rx ?? 0);
    await eventually(rxOf, (rx) => rx > 0, 5000, 'a first sample');
    fake.misbehave[LIBVIRT.proc.connectGetAllDomainStats] = 'silence';
    await eventually(
      () => fake.misbehave[LIBVIRT.proc.connectGetAllDomainStats],
      (how) => how === undefined,
      5000,
      'the sample libvirtd leaves unanswered',
    );
    const before = rxOf();
    // The unanswered call times out (the client's call timeout, 300 ms here); the next ticks sample again.
    await eventually(rxOf, (rx) => rx > before, 5000, 'a sample after the unanswered one');
    expect(client.state).toBe('up');
  });

  it('libvirtd answering slower than the sampling interval: samples do not pile up, a lifecycle event waits for the one sample in flight at most', async () => {
    const { fake, reg } = await setup(10);
    fake.bulkDelayMs = 150; // 15 ticks per answer
    await eventually(
      () => fake.bulkCalls,
      (n) => n >= 4,
      10_000,
      'slow samples',
    );
    let bulkCallsWhenPaused: number | undefined;
    reg.onChange((c) => {
      if (c.vmId === UUID_A && c.stats.status === 'Paused') bulkCallsWhenPaused ??= fake.bulkCalls;
    });
    const bulkCallsWhenSent = fake.bulkCalls;
    fake.event(dom('web01', UUID_A), 3, 0); // suspended
    await eventually(
      () => bulkCallsWhenPaused,
      (n) => n !== undefined,
      10_000,
      'Paused',
    );
    // A backlog of samples queued while libvirtd was slow would all be asked before the event.
    expect(bulkCallsWhenPaused! - bulkCallsWhenSent).toBeLessThanOrEqual(1);
  });

  for (const how of ['garbage', 'silence', 'die-mid-reply'] as const) {
    it(`a libvirtd that answers the listing with ${how} hurts nothing: the registry keeps what it had, and the next connection lists again`, async () => {
      const { fake, reg, client } = await setup();
      const listings = fake.calls.filter((p) => p === LIBVIRT.proc.connectListAllDomains).length;
      fake.misbehave[LIBVIRT.proc.connectListAllDomains] = how;
      // Force a reconnection (as a libvirtd restart would): the bad listing, then a good one.
      for (const s of fake.sockets) s.destroy();
      await eventually(
        () => fake.calls.filter((p) => p === LIBVIRT.proc.connectListAllDomains).length,
        (n) => n >= listings + 2,
        8000,
        'listed again',
      );
      await eventually(
        () => fake.calls.filter((p) => p === LIBVIRT.proc.connectGetAllDomainStats).length,
        (n) => n >= 2,
        8000,
        'listing completed',
      );
      await eventually(
        () => client.state,
        (s) => s === 'up',
        5000,
        'up',
      );
      expect(reg.get(UUID_A)!.status).toBe('Up');
      expect(reg.get(UUID_B)!.status).toBe('Paused');
    });
  }
});

describe('a libvirt socket that refuses the daemon (issue 15 item 2)', () => {
  it('says so once per cause at warn with the socket and the reason, and once at info when it recovers', async () => {
    const sock = path.join(tempDir('vdsm-fake-libvirt-deny-'), 'libvirt-sock');
    const fake = new FakeLibvirtd(sock);
    fake.denyPolkit = true;
    await fake.listen();
    const lines: Record<string, unknown>[] = [];
    const log = pino({ level: 'info' }, { write: (l: string) => lines.push(JSON.parse(l) as Record<string, unknown>) });
    const client = new LibvirtClient({
      uri: `qemu+unix:///system?socket=${sock}`,
      log,
      connections: 1,
      callTimeoutMs: 300,
      reconnectMinMs: 20,
      reconnectMaxMs: 40,
      downLevel: 'info',
    });
    try {
      await client.start();
      await eventually(
        () => fake.calls.filter((p) => p === LIBVIRT.proc.authPolkit).length,
        (n) => n >= 4,
        5000,
        'retries',
      );
      const refusals = lines.filter((l) => l.code === 'LIBVIRT_ERR_ACCESS');
      expect(refusals).toHaveLength(1);
      expect(refusals[0]).toMatchObject({
        level: 40,
        socket: sock,
        errno: 'libvirt error 6',
        reason: expect.stringMatching(/access denied by policy/),
      });
      fake.denyPolkit = false;
      await eventually(
        () => client.state,
        (st) => st === 'up',
        5000,
        'up',
      );
      expect(lines.filter((l) => l.msg === 'libvirt connected')).toEqual([
        expect.objectContaining({ level: 30, socket: sock, after: expect.stringMatching(/access denied/) }),
      ]);
    } finally {
      client.stop();
      await fake.stop();
    }
  });
});
