// The netlink side and the facade in-process, with real sockets: a socket that fails mid-flight is
// replaced and its lookups fall back to `ip` (logged once), and a native module that cannot load
// sends every lookup to `ip`. The only destination asked about is 127.0.0.1 (read-only; the
// answer is `lo` in any namespace), so nothing depends on or changes the machine's routes.
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { parseRouteTarget, type RouteTarget } from '../src/route/ipLiteral.js';
import { NetlinkRoute } from '../src/route/netlinkRoute.js';
import { LookupFailed } from '../src/route/routeAnswer.js';
import { missing } from './helpers/prereq.js';

const skip = missing({ commands: ['ip'] });
const LOOPBACK = (parseRouteTarget('127.0.0.1') as { ok: true; target: RouteTarget }).target;

function capturingLogger() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { log: pino({ level: 'debug' }, stream), lines };
}

/** The socket a NetlinkRoute currently uses, to break it from outside as a kernel error would. */
function currentSocket(route: NetlinkRoute): { socket: { close(): void } } {
  return (route as unknown as { channel: { sock: { socket: { close(): void } } } }).channel.sock;
}

describe.skipIf(skip)('netlink route lookups, in-process', () => {
  afterEach(() => {
    vi.doUnmock('netlink');
    vi.resetModules();
  });

  it('rejects the lookups of a failed socket at once, replaces it, and answers on the new one', async () => {
    const failures: Error[] = [];
    const route = await NetlinkRoute.open({}, (err) => failures.push(err));
    try {
      expect(await route.lookup(LOOPBACK)).toMatchObject({ device: 'lo', type: 'local' });
      const inFlight = Array.from({ length: 20 }, () =>
        route.lookup(LOOPBACK).then(
          () => 'answered',
          (e: unknown) => e as Error,
        ),
      );
      currentSocket(route).socket.close();
      const outcomes = await Promise.all(inFlight);
      // Whatever had not been answered yet failed as a mechanism failure, not as a route answer.
      for (const o of outcomes) if (o !== 'answered') expect(o).toBeInstanceOf(LookupFailed);
      expect(outcomes.some((o) => o !== 'answered')).toBe(true);
      expect(route.replacedSockets).toBe(1);
      expect(failures).toHaveLength(1);
      expect(await route.lookup(LOOPBACK)).toMatchObject({ device: 'lo' });
      expect(route.inFlight).toBe(0);
    } finally {
      route.close();
    }
  });

  it('sends the lookups caught by a socket failure to ip, logs the switch once, and returns to netlink', async () => {
    const { RouteLookup } = await import('../src/route/routeLookup.js');
    const { log, lines } = capturingLogger();
    const lookup = new RouteLookup('netlink', log);
    try {
      await lookup.ready();
      const { via, ...first } = await lookup.lookup(LOOPBACK);
      expect(via).toBe('netlink');
      expect(first).toMatchObject({ device: 'lo', type: 'local' });
      const nl = await (lookup as unknown as { netlink: Promise<NetlinkRoute> }).netlink;
      const inFlight = Array.from({ length: 20 }, () => lookup.lookup(LOOPBACK));
      currentSocket(nl).socket.close();
      const answers = await Promise.all(inFlight);
      // Same answer whichever path gave it.
      for (const { via: _via, ...rest } of answers) expect(rest).toEqual(first);
      expect(answers.some((a) => a.via === 'ip')).toBe(true);
      expect(await lookup.lookup(LOOPBACK)).toMatchObject({ via: 'netlink' });
      expect(lines.filter((l) => l.msg === 'route lookups fall back to `ip route get`')).toHaveLength(1);
      expect(lines.filter((l) => l.msg === 'route lookups use netlink again')).toHaveLength(1);
    } finally {
      await lookup.close();
    }
  });

  it('answers through ip when the native module cannot be loaded, logging that once', async () => {
    vi.doMock('netlink', () => {
      throw new Error('cannot open shared object file');
    });
    const { RouteLookup } = await import('../src/route/routeLookup.js');
    const { log, lines } = capturingLogger();
    const lookup = new RouteLookup('netlink', log);
    try {
      for (let i = 0; i < 3; i++) expect(await lookup.lookup(LOOPBACK)).toMatchObject({ device: 'lo', via: 'ip' });
      const warnings = lines.filter((l) => l.msg === 'route lookups fall back to `ip route get`');
      expect(warnings).toHaveLength(1);
      expect(String(warnings[0]!.reason)).toMatch(/netlink module cannot be loaded/);
    } finally {
      await lookup.close();
    }
  });
});
