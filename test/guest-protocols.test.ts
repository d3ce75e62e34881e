// The pure agent protocols on captured payloads (fixtures/), and hostile variants of them.
import { describe, expect, it } from 'vitest';
import { GuestIssue, type IssueCounts } from '../src/guest/issues.js';
import { OVIRT_API_VERSION, encodeRefresh, negotiateApiVersion, parseOvirtLine } from '../src/guest/ovirtAgent.js';
import {
  QgaReader,
  encodeCommand,
  encodeSync,
  mapQgaHostName,
  mapQgaInterfaces,
  mapQgaOsInfo,
  parseQgaReply,
} from '../src/guest/qemuAgent.js';
import { fixtureBytes, ovirtSession, qgaReturn } from './helpers/guestFixtures.js';

const line = (obj: unknown): Buffer => Buffer.from(JSON.stringify(obj));

describe('oVirt guest agent messages', () => {
  it('reads a Linux agent session: names, FQDN, OS, interfaces; other messages counted', () => {
    const msgs = ovirtSession('linux-session').map((l) => parseOvirtLine(l));
    expect(msgs.every((m) => m.valid)).toBe(true);
    const reports = Object.assign({}, ...msgs.map((m) => m.report ?? {}));
    expect(reports).toEqual({
      guestName: 'web01',
      guestOs: '4.18.0-348.el8.x86_64',
      guestFQDN: 'web01.example.com',
      netIfaces: [
        { name: 'eth0', hw: '00:21:cc:68:d7:38', inet: ['9.115.122.77'], inet6: ['fe80::221:ccff:fe68:d738'] },
        { name: 'virbr0', hw: '52:54:00:5b:3f:e1', inet: ['192.168.122.1'], inet6: [] },
      ],
    });
    expect(msgs.map((m) => m.apiVersion).filter((v) => v !== null)).toEqual([0, 3]);
    const unknown = msgs.filter((m) => m.issues.get(GuestIssue.unknownMessage)).map((m) => m.name);
    expect(unknown).toEqual(['os-info', 'active-user', 'applications', 'disks-usage', 'number-of-cpus', 'timezone']);
  });

  it('reads a Windows agent: adapter descriptions as names, zone removed from link-local', () => {
    const ni = ovirtSession('windows-session')
      .map((l) => parseOvirtLine(l))
      .find((m) => m.name === 'network-interfaces')!;
    expect(ni.report!.netIfaces![0]).toEqual({
      name: 'Red Hat VirtIO Ethernet Adapter #2',
      hw: '00:1a:4a:16:01:51',
      inet: ['10.35.1.21', '169.254.10.9'],
      inet6: ['fe80::c1d2:7b3a:9f0e:1a2b', '2620:52:0:2322::15'],
    });
  });

  it('an empty interface list is a report of no interfaces', () => {
    const ni = parseOvirtLine(ovirtSession('empty-interfaces')[1]!);
    expect(ni.report).toEqual({ netIfaces: [] });
  });

  it('host side: refresh with apiVersion 3, api-version only when the agreed version changes', () => {
    expect(encodeRefresh().toString()).toBe('{"__name__":"refresh","apiVersion":3}\n');
    expect(negotiateApiVersion(0, 0)).toBeNull();
    expect(negotiateApiVersion(0, 3)).toBe(3);
    expect(negotiateApiVersion(3, 3)).toBeNull();
    expect(negotiateApiVersion(3, 7)).toBeNull(); // capped at ours
    expect(negotiateApiVersion(0, 7)).toBe(OVIRT_API_VERSION);
    expect(negotiateApiVersion(3, 1)).toBe(1);
    expect(negotiateApiVersion(3, null)).toBeNull();
  });

  it('rejects, with a code, what is not a named object', () => {
    const cases: [Buffer, string][] = [
      [Buffer.from('[{"__name__":"heartbeat"}]'), GuestIssue.notObject],
      [Buffer.from('"heartbeat"'), GuestIssue.notObject],
      [Buffer.from('null'), GuestIssue.notObject],
      [Buffer.from('{"name":"x"}'), GuestIssue.noName],
      [Buffer.from('{"__name__":42}'), GuestIssue.noName],
      [Buffer.from('{"__name__":"host-name","name":'), GuestIssue.badJson],
      [Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), GuestIssue.badJson],
    ];
    for (const [bytes, code] of cases) {
      const m = parseOvirtLine(bytes);
      expect(m.valid).toBe(false);
      expect(m.report).toBeNull();
      expect(m.issues.has(code as never)).toBe(true);
    }
  });

  it('__proto__ and constructor keys are plain data, never prototypes', () => {
    const m = parseOvirtLine(
      Buffer.from(
        '{"__proto__":{"__name__":"host-name","name":"evil"},"__name__":"fqdn","fqdn":"good.example","constructor":{"prototype":{"x":1}}}',
      ),
    );
    expect(m.report).toEqual({ guestFQDN: 'good.example' });
    const n = parseOvirtLine(Buffer.from('{"__proto__":{"__name__":"heartbeat"}}'));
    expect(n.valid).toBe(false);
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });

  it('sanitises hostile interface lists: names, MACs, addresses, wrong types', () => {
    const m = parseOvirtLine(
      line({
        __name__: 'network-interfaces',
        interfaces: [
          {
            name: 'n'.repeat(80),
            hw: 'ZZ:ZZ:ZZ:ZZ:ZZ:ZZ',
            inet: ['300.1.1.1', '192.0.2.5', 7, null],
            inet6: ['fe80::1%eth0', 'nope'],
          },
          { name: 'e\u0000v\u001bil\u0085', hw: 'AA:BB:CC:DD:EE:FF', inet: 'not-a-list' },
          'not-an-object',
          { hw: null },
        ],
      }),
    );
    expect(m.report!.netIfaces).toEqual([
      { name: 'n'.repeat(50), hw: '', inet: ['192.0.2.5'], inet6: ['fe80::1'] },
      { name: 'e\ufffdv\ufffdil\ufffd', hw: 'aa:bb:cc:dd:ee:ff', inet: [], inet6: [] },
      { name: '', hw: '', inet: [], inet6: [] },
    ]);
    const codes = [...m.issues.keys()].sort();
    expect(codes).toEqual(
      [
        GuestIssue.badAddress,
        GuestIssue.badField,
        GuestIssue.badMac,
        GuestIssue.textReplaced,
        GuestIssue.textTruncated,
      ].sort(),
    );
  });

  it('a host-name that is not a string is dropped, not reported', () => {
    expect(parseOvirtLine(line({ __name__: 'host-name', name: { a: 1 } })).report).toBeNull();
    expect(parseOvirtLine(line({ __name__: 'fqdn' })).report).toBeNull();
    expect(parseOvirtLine(line({ __name__: 'os-version', version: 'x'.repeat(1000) })).report!.guestOs).toHaveLength(
      255,
    );
  });
});

describe('QEMU guest agent protocol', () => {
  it('encodes commands and the 0xFF-prefixed resync', () => {
    expect(encodeCommand('guest-get-host-name').toString()).toBe('{"execute":"guest-get-host-name"}\n');
    const sync = encodeSync(42);
    expect(sync[0]).toBe(0xff);
    expect(sync.subarray(1).toString()).toBe('{"execute":"guest-sync-delimited","arguments":{"id":42}}\n');
  });

  it('resync skips the stray-byte error and waits for its own id (captured bytes)', () => {
    const r = new QgaReader();
    r.beginSync(1234);
    const events = r.push(fixtureBytes('qga/sync-after-stray.bin'));
    expect(events.map((e) => e.type)).toEqual(['discarded', 'synced']);
    expect(r.syncing).toBe(false);
    const after = r.push(fixtureBytes('qga/host-name.json'));
    expect(after).toMatchObject([{ type: 'reply', reply: { kind: 'return', value: { 'host-name': 'vm' } } }]);
  });

  it('resync skips stale replies after the delimiter until the one with its id', () => {
    const r = new QgaReader();
    r.beginSync(99);
    const bytes = Buffer.concat([
      Buffer.from('{"return": [{"name": "late"}]}\n{"retu'),
      Buffer.of(0xff),
      Buffer.from('{"return": 98}\n{"return": {}}\n{"return": 99}\n{"return": "next"}\n'),
    ]);
    const events = r.push(bytes);
    expect(events.map((e) => e.type)).toEqual(['discarded', 'discarded', 'discarded', 'synced', 'reply']);
  });

  it('a fake sync reply before the 0xFF does not count', () => {
    const r = new QgaReader();
    r.beginSync(5);
    expect(r.push(Buffer.from('{"return": 5}\n')).map((e) => e.type)).toEqual(['discarded']);
    expect(r.syncing).toBe(true);
  });

  it('parses errors with sanitised class and desc; other shapes are invalid', () => {
    const issues: IssueCounts = new Map();
    expect(parseQgaReply(fixtureBytes('qga/error-command-not-found.json'), issues)).toEqual({
      kind: 'error',
      errorClass: 'CommandNotFound',
      desc: 'The command guest-bogus has not been found',
    });
    expect(parseQgaReply(Buffer.from('{"error": {"class": "X\\u0000", "desc": 5}}'), issues)).toEqual({
      kind: 'error',
      errorClass: 'X\ufffd',
      desc: '',
    });
    expect(parseQgaReply(Buffer.from('{"greeting": 1}'), issues)).toEqual({ kind: 'invalid' });
    expect(parseQgaReply(Buffer.from('[1]'), issues)).toEqual({ kind: 'invalid' });
  });

  it('maps the captured Linux reply: lo reported, MACs kept, prefixes dropped', () => {
    expect(mapQgaInterfaces(qgaReturn('linux-interfaces'), new Map())).toEqual([
      { name: 'lo', hw: '00:00:00:00:00:00', inet: ['127.0.0.1'], inet6: ['::1'] },
      { name: 'vg0', hw: 'b6:19:28:1d:b7:b7', inet: ['192.0.2.10'], inet6: ['2001:db8::10'] },
    ]);
  });

  it('merges label aliases into their interface and reports address-less interfaces', () => {
    expect(mapQgaInterfaces(qgaReturn('alias-interfaces'), new Map())).toEqual([
      { name: 'lo', hw: '00:00:00:00:00:00', inet: ['127.0.0.1'], inet6: [] },
      {
        name: 'eth0',
        hw: '52:54:00:12:34:56',
        inet: ['192.0.2.20', '198.51.100.7'],
        inet6: ['fe80::5054:ff:fe12:3456'],
      },
      { name: 'eth1', hw: '52:54:00:ab:cd:ef', inet: [], inet6: [] },
    ]);
  });

  it('maps a Windows reply: friendly names, zone removed, missing MAC is "", MAC lower-cased', () => {
    expect(mapQgaInterfaces(qgaReturn('windows-interfaces'), new Map())).toEqual([
      { name: 'Ethernet 2', hw: '56:6f:2e:3a:00:02', inet: ['10.0.0.15'], inet6: ['fe80::3c5a:b1ff:fe29:9d10'] },
      { name: '以太网', hw: '56:6f:2e:3a:00:03', inet: ['172.16.5.4'], inet6: [] },
      { name: 'Loopback Pseudo-Interface 1', hw: '', inet: ['127.0.0.1'], inet6: ['::1'] },
    ]);
  });

  it('every field may be missing or null', () => {
    const issues: IssueCounts = new Map();
    expect(
      mapQgaInterfaces(
        [{}, { name: null, 'ip-addresses': null }, { name: 'x', 'ip-addresses': [{}, { 'ip-address-type': 'ipv4' }] }],
        issues,
      ),
    ).toEqual([
      { name: '', hw: '', inet: [], inet6: [] },
      { name: '', hw: '', inet: [], inet6: [] },
      { name: 'x', hw: '', inet: [], inet6: [] },
    ]);
    expect(mapQgaInterfaces({ not: 'a list' }, issues)).toBeNull();
  });

  it('host name and OS: as the oVirt agent reports it (Linux kernel release, Windows version name)', () => {
    expect(mapQgaHostName(qgaReturn('host-name'), new Map())).toBe('vm');
    expect(mapQgaOsInfo(qgaReturn('osinfo'), new Map())).toBe('6.1.0-18-amd64');
    expect(mapQgaOsInfo(qgaReturn('osinfo-windows'), new Map())).toBe('Windows Server 2019 Standard');
    expect(mapQgaOsInfo({ name: 'Debian', version: '12' }, new Map())).toBe('Debian 12');
    expect(mapQgaOsInfo({}, new Map())).toBeNull();
    expect(mapQgaHostName({ 'host-name': 5 }, new Map())).toBeNull();
  });
});
