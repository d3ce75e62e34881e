// Hostile guests against the real daemon over real UNIX sockets (SPEC section 4, "The guest is
// untrusted"): every bad input is dropped or replaced with a logged code, a valid message after
// it is used, a flood or a silent guest holds up no other VM, memory stays bounded and the log
// is not flooded.
import { describe, expect, it } from 'vitest';
import { GuestIssue } from '../src/guest/issues.js';
import type { VmStats } from '../src/wire.js';
import { channelPath, newVmId } from './helpers/channelsDir.js';
import { useGuestDaemon } from './helpers/guestDaemon.js';
import { rssBytes, startFloodGuest } from './helpers/floodGuest.js';
import { guestDataProblem } from './helpers/sanitisedShape.js';
import { ScriptedGuest, eventually } from './helpers/scriptedGuest.js';

const OVIRT = 'ovirt-guest-agent.0';
const MiB = 1024 * 1024;

describe('hostile guests', () => {
  const t = useGuestDaemon();
  const stats = (vmId: string): Promise<VmStats> => t.stats(vmId);
  const codesFor = (vmId: string): string[] =>
    t.d
      .logs()
      .filter((l) => l.vmId === vmId && typeof l.code === 'string')
      .map((l) => l.code as string);

  it('a 2 MiB line is dropped whole and the valid message after it is used', async () => {
    const vm = newVmId();
    const g = await ScriptedGuest.listen(channelPath(t.dir, vm, OVIRT));
    const chunk = Buffer.alloc(256 * 1024, 'a');
    await g.write('{"__name__":"host-name","name":"');
    for (let i = 0; i < 8; i++) await g.write(chunk);
    await g.write('"}\n{"__name__":"host-name","name":"after-long-line"}\n');
    const s = await eventually(
      () => stats(vm),
      (x) => x.guestName !== '',
      10_000,
      'host name after the long line',
    );
    expect(s.guestName).toBe('after-long-line');
    await eventually(
      () => codesFor(vm),
      (codes) => codes.includes(GuestIssue.lineTooLong),
    );
    await g.close();
  });

  it('bad encodings, wrong shapes and __proto__ are dropped or replaced; valid data still lands', async () => {
    const vm = newVmId();
    const g = await ScriptedGuest.listen(channelPath(t.dir, vm, OVIRT));
    const step = async (bytes: Buffer | string, check: (s: VmStats) => boolean, what: string): Promise<VmStats> => {
      await g.write(bytes);
      await g.write('{"__name__":"heartbeat"}\n');
      return eventually(() => stats(vm), check, 10_000, what);
    };
    let s = await step(
      Buffer.concat([
        Buffer.from('{"__name__":"host-name","name":"bad'),
        Buffer.of(0xff, 0xfe, 0xc3),
        Buffer.from('name"}\n'),
      ]),
      (x) => x.guestName !== '',
      'invalid UTF-8',
    );
    expect(s.guestName).toBe('bad\ufffd\ufffd\ufffdname');
    s = await step(
      '{"__name__":"fqdn","fqdn":"a\\u0007b\\u009bc\\u0000d"}\n',
      (x) => x.guestFQDN !== '',
      'control characters',
    );
    expect(s.guestFQDN).toBe('a\ufffdb\ufffdc\ufffdd');
    await g.write('[{"__name__":"host-name","name":"from-an-array"}]\n');
    await g.write('{"name":"no-name-key"}\n');
    await g.write('"just a string"\n');
    s = await step(
      '{"__proto__":{"__name__":"host-name","name":"via-proto"},"__name__":"os-version","version":"os-1","constructor":{"prototype":{"polluted":1}}}\n',
      (x) => x.guestOs === 'os-1',
      '__proto__',
    );
    expect(s.guestName).toBe('bad\ufffd\ufffd\ufffdname'); // none of the invalid messages took effect
    const interfaces = Array.from({ length: 300 }, (_, i) => ({
      name: `${'n'.repeat(76)}${String(i).padStart(4, '0')}`, // 80 characters
      hw: i % 2 ? 'AA:BB:CC:DD:EE:FF' : 'not-a-mac',
      inet: [...Array.from({ length: 50 }, (_, j) => `10.${i % 250}.${j}.1`), 'bogus', '999.1.1.1'],
      inet6: [
        ...Array.from({ length: 50 }, (_, j) => `fd00:${i.toString(16)}::${j.toString(16)}`),
        'fe80::zz',
        '10.0.0.1',
      ],
    }));
    s = await step(
      JSON.stringify({ __name__: 'network-interfaces', interfaces }) + '\n',
      (x) => x.netIfaces.length > 0,
      '300 interfaces',
    );
    expect(s.netIfaces).toHaveLength(128);
    expect(s.netIfaces.every((i) => i.name === 'n'.repeat(50) && i.inet.length + i.inet6.length === 64)).toBe(true);
    expect(s.netIfaces.slice(0, 2).map((i) => i.hw)).toEqual(['', 'aa:bb:cc:dd:ee:ff']);
    expect(s.netIfaces[0]!.inet).toHaveLength(50);
    expect(guestDataProblem(s as unknown as Record<string, unknown>)).toBeNull();
    await eventually(
      () => codesFor(vm),
      (codes) => [GuestIssue.textReplaced, GuestIssue.notObject, GuestIssue.noName].every((k) => codes.includes(k)),
    );
    expect(t.d.logs().filter((l) => l.vmId === vm && l.level === 'warn').length).toBeLessThanOrEqual(5); // rate-limited
    expect(t.d.proc.exitCode).toBeNull();
    await g.close();
  });

  it('a flooding guest: other VMs stay current, ping answers, memory stays bounded, few log lines', async () => {
    const flooder = newVmId();
    const calm = newVmId();
    const silent = newVmId();
    const rssBefore = await rssBytes(t.d.proc.pid!);
    const flood = await startFloodGuest(channelPath(t.dir, flooder, OVIRT));
    const quiet = await ScriptedGuest.listen(channelPath(t.dir, silent, 'org.qemu.guest_agent.0')); // accepts, never speaks
    const quietOvirt = await ScriptedGuest.listen(channelPath(t.dir, silent, OVIRT)); // likewise
    const g = await ScriptedGuest.listen(channelPath(t.dir, calm, OVIRT));
    await eventually(
      () => flood.sent(),
      (n) => n > 16 * MiB,
      20_000,
      'flood under way',
    );
    let peakRss = 0;
    for (let i = 0; i < 5; i++) {
      await g.send('host-name', { name: `calm-${i}` });
      await eventually(
        () => stats(calm),
        (x) => x.guestName === `calm-${i}`,
        10_000,
        `calm VM update ${i} during the flood`,
      );
      expect(await t.c.call('Host.ping2')).toBe(true);
      peakRss = Math.max(peakRss, await rssBytes(t.d.proc.pid!));
    }
    expect((await stats(flooder)).guestAgentStatus).toBe('responsive');
    expect(await stats(silent)).toMatchObject({ guestAgentStatus: 'unresponsive', netIfaces: [], status: 'Up' }); // its qemu-ga never answers
    expect(quiet.received.some((l) => l.includes('guest-sync-delimited'))).toBe(true);
    expect(quietOvirt.received.some((l) => l.includes('refresh'))).toBe(true);
    // Reading stops while the byte budget is in debt: the guest's writes back up, not our heap.
    expect(peakRss - rssBefore).toBeLessThan(96 * MiB);
    const floodWarnings = t.d.logs().filter((l) => l.vmId === flooder && l.level === 'warn');
    expect(floodWarnings.length).toBeGreaterThan(0);
    expect(floodWarnings.length).toBeLessThanOrEqual(6); // 5 a minute, plus at most one summary
    expect(floodWarnings.some((l) => l.code === GuestIssue.rateLimited)).toBe(true);
    flood.stop();
    await quiet.close();
    await quietOvirt.close();
    await g.close();
  });
});
