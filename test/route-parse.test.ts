// Pure parts of the route lookup: address validation and formatting, and the parser of
// `ip -d -N -j route get` output (fixtures captured with iproute2 6.1 on Debian 12).
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ConcurrencyLimit } from '../src/route/concurrencyLimit.js';
import { formatIPv6, parseIPv6, parseRouteTarget } from '../src/route/ipLiteral.js';
import { ipRouteGetArgs, parseIpRouteError, parseIpRouteGet } from '../src/route/ipRoute.js';

function target(text: string) {
  const r = parseRouteTarget(text);
  if (!r.ok) throw new Error(r.reason);
  return r.target;
}

describe('parseRouteTarget', () => {
  it('accepts IPv4 and IPv6 literals and canonicalises them', () => {
    expect(target('192.0.2.1')).toMatchObject({ family: 4, text: '192.0.2.1', zone: null });
    expect(target('2001:DB8:0:0:0:0:0:1')).toMatchObject({ family: 6, text: '2001:db8::1', zone: null });
    expect(target('::')).toMatchObject({ family: 6, text: '::' });
    expect(target('fe80::1%eth0')).toMatchObject({ family: 6, text: 'fe80::1', zone: 'eth0' });
    expect(target('fe80::1%br-ovirt.100')).toMatchObject({ zone: 'br-ovirt.100' });
    expect([...target('::ffff:10.1.2.3').bytes]).toEqual([10, 1, 2, 3]);
  });

  it('looks up IPv4-mapped IPv6 as IPv4, in either spelling', () => {
    expect(target('::ffff:10.1.2.3')).toMatchObject({ family: 4, text: '10.1.2.3' });
    expect(target('::FFFF:a01:203')).toMatchObject({ family: 4, text: '10.1.2.3' });
    // IPv4-compatible (deprecated) and NAT64 forms are IPv6 destinations, not IPv4.
    expect(target('::10.1.2.3')).toMatchObject({ family: 6 });
    expect(target('64:ff9b::10.1.2.3')).toMatchObject({ family: 6, text: '64:ff9b::a01:203' });
  });

  it.each([
    ['', /empty/],
    ['x'.repeat(65), /too long/],
    ['10.1', /not an IPv4 address/],
    ['1.2.3', /not an IPv4 address/],
    ['0x0a.1.2.3', /host name/],
    ['1.2.3.04', /not an IPv4 address/],
    ['1.2.3.4/32', /prefix/],
    ['db8::/32', /prefix/],
    ['my-host', /host name/],
    ['ovirt-engine.example.org', /host name/],
    ['1.2.3.4 ', /contains " "/],
    ['1.2.3.4\u0000', /contains "\\u0000"/],
    ['1.2.3.4,5.6.7.8', /contains ","/],
    ["'1.2.3.4'", /contains "'"/],
    ['::1::', /not a valid IPv6/],
    ['1:2:3:4:5:6:7', /not a valid IPv6/],
    ['1:2:3:4:5:6:7::8', /not a valid IPv6/],
    ['12345::1', /not a valid IPv6/],
    ['1.2.3.4::', /not a valid IPv6/],
    ['::1.2.3', /not a valid IPv6/],
    ['fe80::1%', /not a valid interface name/],
    ['fe80::1%abcdefghijklmnop', /not a valid interface name/],
    ['fe80::1%a%b', /not a valid interface name/],
    ['fe80::1%.', /not a valid interface name/],
    ['10.0.0.1%eth0', /zones apply only to IPv6/],
  ])('refuses %j', (input, why) => {
    const r = parseRouteTarget(input);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(why);
  });
});

describe('formatIPv6', () => {
  it.each([
    ['::', '::'],
    ['::1', '::1'],
    ['1::', '1::'],
    ['2001:db8:0:1:0:0:0:1', '2001:db8:0:1::1'],
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['1:0:2:3:4:5:6:7', '1:0:2:3:4:5:6:7'],
    ['::ffff:1.2.3.4', '::ffff:1.2.3.4'],
    ['::1.2.3.4', '::1.2.3.4'],
  ])('%s -> %s', (input, text) => {
    expect(formatIPv6(parseIPv6(input)!)).toBe(text);
  });

  it("writes what glibc's inet_ntop writes, for 3000 random addresses rich in zero groups", () => {
    const py = '/usr/bin/python3';
    const samples: Buffer[] = [];
    for (let i = 0; i < 3000; i++) {
      const b = randomBytes(16);
      const mask = randomBytes(1)[0]!;
      for (let w = 0; w < 8; w++) if (mask & (1 << w)) b.writeUInt16BE(0, 2 * w);
      if (i % 50 === 0) b.fill(0, 0, 10).writeUInt16BE(0xffff, 10);
      samples.push(b);
    }
    const script =
      'import socket,sys\nfor l in sys.stdin:\n  print(socket.inet_ntop(socket.AF_INET6, bytes.fromhex(l.strip())))';
    const out = execFileSync(py, ['-c', script], {
      input: samples.map((b) => b.toString('hex')).join('\n'),
      encoding: 'utf8',
    });
    expect(samples.map((b) => formatIPv6(b))).toEqual(out.trim().split('\n'));
  });
});

describe('parseIpRouteGet', () => {
  it('maps a gateway route', () => {
    const out =
      '[{"type":"1","dst":"10.30.1.1","gateway":"10.20.0.2","dev":"h1","table":"254","prefsrc":"10.20.0.1","flags":[],"uid":0,"cache":[]}]';
    expect(parseIpRouteGet(out)).toEqual({
      device: 'h1',
      gateway: '10.20.0.2',
      source: '10.20.0.1',
      table: 254,
      type: 'unicast',
    });
  });
  it('maps an IPv6 route with its extra fields, a local address, and a route with no table', () => {
    const v6 =
      '[{"type":"1","dst":"2001:db8:30::9","from":"::","gateway":"2001:db8:20::2","dev":"h1","table":"254","protocol":"3","scope":"0","prefsrc":"2001:db8:20::1","metric":1024,"flags":[],"pref":"medium"}]';
    expect(parseIpRouteGet(v6)).toEqual({
      device: 'h1',
      gateway: '2001:db8:20::2',
      source: '2001:db8:20::1',
      table: 254,
      type: 'unicast',
    });
    const local =
      '[{"type":"2","dst":"10.10.0.1","dev":"lo","table":"255","prefsrc":"10.10.0.1","flags":[],"uid":0,"cache":["local"]}]';
    expect(parseIpRouteGet(local)).toEqual({ device: 'lo', source: '10.10.0.1', table: 255, type: 'local' });
    const none = '[{"type":"2","dst":"0.0.0.0","dev":"lo","prefsrc":"127.0.0.1","flags":[],"uid":0,"cache":["local"]}]';
    expect(parseIpRouteGet(none)).toMatchObject({ table: 0, type: 'local' });
  });
  it('refuses output that is not a route', () => {
    expect(() => parseIpRouteGet('')).toThrow(/no JSON/);
    expect(() => parseIpRouteGet('[]')).toThrow(/no route/);
    expect(() => parseIpRouteGet('[{"dst":"1.2.3.4"}]')).toThrow(/no route/);
    expect(() => parseIpRouteGet('[{"dev":"x","table":"main"}]')).toThrow(/non-numeric/);
  });
  it('reads the errno from what ip prints on a refusal', () => {
    expect(parseIpRouteError('RTNETLINK answers: No route to host\n')).toEqual({
      kind: 'refused',
      errno: 'EHOSTUNREACH',
    });
    expect(parseIpRouteError('RTNETLINK answers: Invalid argument\n')).toEqual({ kind: 'refused', errno: 'EINVAL' });
    expect(parseIpRouteError('RTNETLINK answers: Permission denied\n')).toEqual({ kind: 'refused', errno: 'EACCES' });
    expect(parseIpRouteError('RTNETLINK answers: Network is unreachable\n')).toEqual({
      kind: 'refused',
      errno: 'ENETUNREACH',
    });
    expect(parseIpRouteError('Cannot find device "eth9"\n')).toEqual({ kind: 'unknown-device', device: 'eth9' });
    expect(parseIpRouteError('Error: any valid prefix is expected rather than "x".\n')).toMatchObject({
      kind: 'other',
    });
  });
  it('passes the validated address and zone as separate arguments', () => {
    expect(ipRouteGetArgs(target('fe80::1%h0'))).toEqual(['-d', '-N', '-j', 'route', 'get', 'fe80::1', 'oif', 'h0']);
    expect(ipRouteGetArgs(target('::ffff:10.0.0.1'))).toEqual(['-d', '-N', '-j', 'route', 'get', '10.0.0.1']);
  });
});

describe('ConcurrencyLimit', () => {
  it('never runs more than its maximum at once, and runs everything', async () => {
    const limit = new ConcurrencyLimit(3);
    let running = 0;
    let peak = 0;
    const done = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        limit.run(async () => {
          peak = Math.max(peak, ++running);
          await new Promise((r) => setTimeout(r, i % 3));
          running--;
          return i;
        }),
      ),
    );
    expect(peak).toBe(3);
    expect(done).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(limit.inFlight).toBe(0);
  });
  it('frees the slot when a task throws', async () => {
    const limit = new ConcurrencyLimit(1);
    await expect(limit.run(() => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await limit.run(() => Promise.resolve('next'))).toBe('next');
  });
});
