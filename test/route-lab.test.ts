// Host.getRoute against real kernel routing tables in network namespaces, through the real daemon
// running inside the lab's host namespace: on the netlink path and with netlink forced off
// (--route-lookup ip), each answer compared with `ip -j route get` run in the same namespace.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RpcCallError, RpcClient } from '../src/client/rpcClient.js';
import type { Route } from '../src/wire.js';
import { runDaemonExpectingExit, startDaemon, type RunningDaemon } from './helpers/daemon.js';
import { ipn } from './helpers/netns.js';
import { relayIntoNetns } from './helpers/netnsRelay.js';
import { missing } from './helpers/prereq.js';
import { LAB_EXPECTATIONS, buildRouteLab, destroyRouteLab, ipRouteGet, up, type RouteLab } from './helpers/routeLab.js';

const skip = missing({ root: true, commands: ['ip'] });

async function callError(c: RpcClient, method: string, params: unknown): Promise<RpcCallError['error']> {
  try {
    const r = await c.call(method, params);
    throw new Error(`expected an error, got ${JSON.stringify(r)}`);
  } catch (err) {
    if (!(err instanceof RpcCallError)) throw err;
    return err.error;
  }
}

describe.skipIf(skip)('Host.getRoute in a routing lab', () => {
  let lab: RouteLab;
  const paths = {} as Record<'netlink' | 'ip', { daemon: RunningDaemon; client: RpcClient }>;

  beforeAll(async () => {
    lab = buildRouteLab();
    for (const mode of ['netlink', 'ip'] as const) {
      const daemon = await startDaemon(
        // --route-timeout well above the 2 s default: with both cores busy, 5000 concurrent lookups
        // can keep a netlink answer waiting longer, and these tests are about answers, not timeouts.
        [
          '--listen',
          '127.0.0.1:0',
          '--channels-dir',
          '/nonexistent-vdsm-agentd',
          '--route-lookup',
          mode,
          '--max-in-flight',
          '6000',
          '--route-timeout',
          '30',
        ],
        { wrap: ['ip', 'netns', 'exec', lab.host] },
      );
      paths[mode] = { daemon, client: await RpcClient.connect(await relayIntoNetns(lab.host, daemon.url)) };
    }
  });
  afterAll(async () => {
    for (const p of Object.values(paths)) {
      await p.client.close();
      await p.daemon.stop();
    }
    destroyRouteLab(lab);
  });

  for (const mode of ['netlink', 'ip'] as const) {
    describe(`via ${mode}`, () => {
      for (const e of LAB_EXPECTATIONS) {
        it(`${e.ip} (${e.why}) matches ip route get`, async () => {
          const { client } = paths[mode];
          const admin = ipRouteGet(lab, e.ip.startsWith('::ffff:') ? e.ip.slice(7) : e.ip);
          if (e.errno) {
            const err = await callError(client, 'Host.getRoute', { ip: e.ip });
            expect(err.code).toBe(1201);
            expect(err.message).toMatch(new RegExp(`^No route to ${e.ip.replace(/\./g, '\\.')}: `));
            expect(err.data).toEqual({ errno: e.errno });
            expect(admin.ok).toBe(false); // ip refuses too ("RTNETLINK answers: ...")
            return;
          }
          const route = await client.call<Route>('Host.getRoute', { ip: e.ip });
          expect(route.via).toBe(mode);
          expect(route.device).toBe(e.device);
          expect(route.gateway).toBe(e.gateway);
          if (e.table !== undefined) expect(route.table).toBe(e.table);
          expect(route.type).toBe(e.type ?? 'unicast');
          if (!admin.ok) throw new Error(`ip route get ${e.ip} failed: ${admin.stderr}`);
          expect(route.device).toBe(admin.route.dev);
          expect(route.gateway).toBe(admin.route.gateway);
          expect(route.source).toBe(admin.route.prefsrc);
        });
      }

      it('answers the alias getRoute with positional params the same', async () => {
        const { client } = paths[mode];
        expect(await client.call('getRoute', ['10.30.1.1'])).toEqual(
          await client.call('Host.getRoute', { ip: '10.30.1.1' }),
        );
      });
    });
  }

  it('answers identically on both paths for every destination (apart from via)', async () => {
    for (const e of LAB_EXPECTATIONS) {
      const answers = await Promise.all(
        (['netlink', 'ip'] as const).map((m) =>
          paths[m].client.call<Route>('Host.getRoute', { ip: e.ip }).then(
            ({ via: _via, ...rest }) => JSON.stringify(rest),
            (err: unknown) => JSON.stringify((err as RpcCallError).error),
          ),
        ),
      );
      expect(answers[0], e.ip).toBe(answers[1]);
    }
  });

  it('answers with the new name after an interface is renamed between two lookups, and never with a removed one', async () => {
    for (const mode of ['netlink', 'ip'] as const) {
      const { client } = paths[mode];
      const renamed = `r0${mode[0]}`;
      ipn(lab.host, 'link', 'set', 'r0', 'up');
      expect((await client.call<Route>('Host.getRoute', { ip: '10.80.0.9' })).device).toBe('r0');
      ipn(lab.host, 'link', 'set', 'r0', 'down');
      ipn(lab.host, 'link', 'set', 'r0', 'name', renamed);
      up(lab, renamed);
      const after = await client.call<Route>('Host.getRoute', { ip: '10.80.0.9' });
      expect(after).toMatchObject({ device: renamed, via: mode });
      // Rename back for the other path, then check a removal on the last one.
      ipn(lab.host, 'link', 'set', renamed, 'down');
      ipn(lab.host, 'link', 'set', renamed, 'name', 'r0');
    }
    up(lab, 'r0');
    expect((await paths.netlink.client.call<Route>('Host.getRoute', { ip: '10.80.0.9' })).device).toBe('r0');
    ipn(lab.host, 'link', 'del', 'r0');
    for (const mode of ['netlink', 'ip'] as const) {
      // With r0 gone the default route takes over.
      expect(await paths[mode].client.call<Route>('Host.getRoute', { ip: '10.80.0.9' })).toMatchObject({
        device: 'h0',
        gateway: '10.10.0.254',
      });
    }
  });

  it('answers 5000 concurrent lookups over one WebSocket on the netlink path, and stays alive', async () => {
    const { client, daemon } = paths.netlink;
    const mix = LAB_EXPECTATIONS.filter((e) => e.device && !e.ip.includes('%'));
    const results = await Promise.all(
      Array.from({ length: 5000 }, (_, i) => {
        const e = mix[i % mix.length]!;
        return client.call<Route>('Host.getRoute', { ip: e.ip }).then((r) => [e, r] as const);
      }),
    );
    expect(results).toHaveLength(5000);
    for (const [e, r] of results) expect(r.device, e.ip).toBe(e.device);
    // Every one went over netlink (nothing fell back), and the daemon is still there.
    expect(results.every(([, r]) => r.via === 'netlink')).toBe(true);
    expect(daemon.proc.exitCode).toBeNull();
    expect(await client.call('Host.ping2')).toBe(true);
    expect(daemon.logs().some((l) => l.msg === 'route lookups fall back to `ip route get`')).toBe(false);
  });

  describe('rejects invalid input with -32602 naming the problem, on both paths', () => {
    const cases: [unknown, RegExp][] = [
      ['localhost', /host name/],
      ['host.example.com', /host name/],
      ['1.2.3.4/24', /prefix/],
      ['2001:db8::/32', /prefix/],
      ['10.1', /not an IPv4 address/],
      ['127.1', /not an IPv4 address/],
      ['10.1.2', /not an IPv4 address/],
      ['256.1.1.1', /not an IPv4 address/],
      ['010.1.1.1', /not an IPv4 address/],
      ['1.2.3.4.5', /not an IPv4 address/],
      ['', /empty/],
      ['1.2.3.4;reboot', /contains ";"/],
      ['$(id)', /contains "\$"/],
      ['`id`', /contains "`"/],
      ['10.0.0.1 && ls', /contains " "/],
      ['10.0.0.1|cat', /contains "\|"/],
      ['10.0.0.1\n', /contains "\\n"/],
      ['-h', /host name/],
      ['2001:db8::1::2', /not a valid IPv6/],
      ['1:2:3:4:5:6:7:8:9', /not a valid IPv6/],
      ['[::1]', /contains "\["/],
      ['10.0.0.1%h0', /zones apply only to IPv6/],
      ['::ffff:10.0.0.1%h0', /zones apply only to IPv6/],
      ['fe80::1%-x', /not a valid interface name/],
      ['fe80::1%nosuchdev', /names no interface/],
      [42, /must be an IPv4 or IPv6 address string, got number/],
      [null, /got null/],
      [['10.0.0.1'], /got an array/],
    ];
    for (const mode of ['netlink', 'ip'] as const) {
      it(`via ${mode}`, async () => {
        const { client } = paths[mode];
        for (const [input, why] of cases) {
          const err = await callError(client, 'Host.getRoute', { ip: input });
          expect(err.code, JSON.stringify(input)).toBe(-32602);
          expect(err.message, JSON.stringify(input)).toMatch(/^Invalid params: 'ip' /);
          expect(err.message, JSON.stringify(input)).toMatch(why);
        }
        expect((await callError(client, 'Host.getRoute', {})).message).toMatch(/'ip' is missing/);
        expect((await callError(client, 'Host.getRoute', { addr: '10.0.0.1' })).message).toMatch(
          /unknown param 'addr'/,
        );
        // Still serving after all of that.
        expect((await client.call<Route>('Host.getRoute', ['10.10.0.5'])).device).toBe('h0');
      });
    }
  });
});

describe('--route-lookup', () => {
  it('refuses an unknown value at start-up with one line and status 2', async () => {
    const r = await runDaemonExpectingExit(['--listen', '127.0.0.1:0', '--route-lookup', 'ioctl']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--route-lookup: expected netlink or ip, got 'ioctl'/);
  });
});
