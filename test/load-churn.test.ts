// Load with churn, asserting correctness, not speed: 200 simulated VMs, 50 WebSocket clients
// issuing a fixed mix of Host.getAllVmStats, VM.getStats and Host.ping2 while guests churn
// (sockets disappear and come back, agents restart, addresses change). Every response must be
// well-formed and right for the VM's state at that moment, no request may be lost, no error but
// the expected "no such VM" for a VM that is away, and the daemon's memory must come back to its
// steady level afterwards.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RpcCallError, RpcClient } from '../src/client/rpcClient.js';
import { GuestSimulator } from '../src/sim/simulator.js';
import { generateGuests, ovirtInterfaces, type SimGuest } from '../src/sim/guest.js';
import type { GuestNetworkDeviceInfo, VmStats } from '../src/wire.js';
import { tempDir } from './helpers/channelsDir.js';
import { startDaemon, type RunningDaemon } from './helpers/daemon.js';
import { eventually, withTimeout } from './helpers/scriptedGuest.js';

const VMS = 200;
const CLIENTS = 50;
const REQUESTS_PER_CLIENT = 40;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const STATS_KEYS = [
  'elapsedTime',
  'guestAgentStatus',
  'guestFQDN',
  'guestIPs',
  'guestName',
  'guestOs',
  'netIfaces',
  'network',
  'status',
  'statusTime',
  'vmId',
];

/** What the daemon must show as netIfaces for the guest's current model, per agent. */
function expectedNetIfaces(g: SimGuest): GuestNetworkDeviceInfo[] {
  if (g.agents[0] === 'ovirt') return ovirtInterfaces(g);
  return g.interfaces.map((n) => ({
    name: n.name,
    hw: n.hw ?? '',
    inet: n.addresses.filter((a) => a.type === 'ipv4').map((a) => a.address),
    inet6: n.addresses.filter((a) => a.type === 'ipv6').map((a) => a.address),
  }));
}

/** Problems with one VmStats' shape (exact keys, VDSM's types), or [] when well-formed. */
function shapeProblems(s: VmStats): string[] {
  const p: string[] = [];
  if (JSON.stringify(Object.keys(s).sort()) !== JSON.stringify(STATS_KEYS)) p.push(`keys ${Object.keys(s).join(',')}`);
  if (!UUID.test(s.vmId)) p.push('vmId');
  if (s.status !== 'Up') p.push(`status ${s.status}`);
  if (!/^\d+$/.test(s.statusTime) || Number(s.statusTime) <= 2147483647 || !/^\d+$/.test(s.elapsedTime))
    p.push('time stamps');
  for (const k of ['guestIPs', 'guestName', 'guestFQDN', 'guestOs'] as const) if (typeof s[k] !== 'string') p.push(k);
  if (!['responsive', 'unresponsive', 'unknown'].includes(s.guestAgentStatus)) p.push('guestAgentStatus');
  const network: unknown = s.network; // as received: the type says what it should be, not what it is
  if (typeof network !== 'object' || network === null || Array.isArray(network)) p.push('network');
  if (!Array.isArray(s.netIfaces)) p.push('netIfaces');
  else
    for (const i of s.netIfaces) {
      const ok =
        JSON.stringify(Object.keys(i).sort()) === '["hw","inet","inet6","name"]' &&
        typeof i.name === 'string' &&
        typeof i.hw === 'string' &&
        Array.isArray(i.inet) &&
        Array.isArray(i.inet6) &&
        i.inet.every((a) => typeof a === 'string') &&
        i.inet6.every((a) => typeof a === 'string');
      if (!ok) p.push(`interface ${JSON.stringify(i)}`);
    }
  const ips = (Array.isArray(s.netIfaces) ? s.netIfaces : [])
    .flatMap((i) => i.inet)
    .filter((a) => !a.startsWith('127.'))
    .join(' ');
  if (s.guestIPs !== ips) p.push(`guestIPs '${s.guestIPs}' vs netIfaces '${ips}'`);
  return p;
}

const rssKiB = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('200 VMs, 50 clients, churning guests', () => {
  let sim: GuestSimulator;
  let d: RunningDaemon;
  let guests: SimGuest[];
  /** Never touched: their stats must be exactly the model's, in every response. */
  let stable: SimGuest[];
  /** Addresses change: netIfaces must be one of the states the guest has been in. */
  let changing: SimGuest[];
  /** Sockets go and come back, agents restart: present or not, but never wrong. */
  let churned: SimGuest[];
  /** Every netIfaces each VM has had (JSON), for the changing and churned ones. */
  const history = new Map<string, Set<string>>();

  beforeAll(async () => {
    const dir = tempDir('vat-load-');
    sim = new GuestSimulator({ dir, heartbeatMs: 1000, networkMs: 5000 });
    guests = generateGuests(VMS, { idPrefix: '10ad0000' });
    await sim.addAll(guests);
    stable = guests.slice(0, 120);
    changing = guests.slice(120, 160);
    churned = guests.slice(160);
    for (const g of [...changing, ...churned]) history.set(g.vmId, new Set([JSON.stringify(expectedNetIfaces(g))]));
    d = await startDaemon([
      '--listen',
      '127.0.0.1:0',
      '--channels-dir',
      dir,
      '--qga-poll-interval',
      '0.5',
      '--qga-timeout',
      '1',
    ]);
  });

  afterAll(async () => {
    await d?.stop();
    await sim?.close();
  });

  async function allReported(c: RpcClient): Promise<void> {
    await eventually(
      () => c.call<VmStats[]>('Host.getAllVmStats'),
      (all) => all.length === VMS && all.every((s) => s.netIfaces.length > 0 && s.guestAgentStatus === 'responsive'),
      30_000,
      'every VM reported by its agent',
    );
  }

  /** One client's fixed share of requests; returns the problems found. */
  async function client(index: number): Promise<{ problems: string[]; answered: number; noSuchVm: number }> {
    // 50 connect at once: with both cores busy the 5 s default handshake bound was too short.
    const c = await RpcClient.connect(d.url, { timeoutMs: 60_000 });
    const problems: string[] = [];
    let answered = 0;
    let noSuchVm = 0;
    const byId = new Map(guests.map((g) => [g.vmId, g]));
    const check = (s: VmStats, where: string): void => {
      const bad = shapeProblems(s);
      if (bad.length) problems.push(`${where} ${s.vmId}: ${bad.join('; ')}`);
      const g = byId.get(s.vmId);
      if (!g) return void problems.push(`${where}: unknown VM ${s.vmId}`);
      if (stable.includes(g)) {
        if (JSON.stringify(s.netIfaces) !== JSON.stringify(expectedNetIfaces(g)))
          problems.push(`${where} ${s.vmId}: netIfaces ${JSON.stringify(s.netIfaces)}`);
        if (s.guestName !== g.hostName) problems.push(`${where} ${s.vmId}: guestName ${s.guestName}`);
      } else if (s.netIfaces.length > 0 && !history.get(g.vmId)!.has(JSON.stringify(s.netIfaces))) {
        problems.push(`${where} ${s.vmId}: netIfaces never reported by the guest ${JSON.stringify(s.netIfaces)}`);
      }
    };
    try {
      for (let i = 0; i < REQUESTS_PER_CLIENT; i++) {
        const kind = (i + index) % 3;
        if (kind === 0) {
          const all = await withTimeout(c.call<VmStats[]>('Host.getAllVmStats'), 30_000, 'Host.getAllVmStats answer');
          answered++;
          const ids = new Set(all.map((s) => s.vmId));
          if (ids.size !== all.length) problems.push('getAllVmStats: a VM listed twice');
          for (const g of [...stable, ...changing])
            if (!ids.has(g.vmId)) problems.push(`getAllVmStats: ${g.vmId} missing`);
          for (const s of all) check(s, 'getAllVmStats');
        } else if (kind === 1) {
          const g = guests[(index * 7 + i * 13) % VMS]!;
          try {
            const res = await withTimeout(
              c.call<VmStats[]>('VM.getStats', { vmID: g.vmId }),
              30_000,
              'VM.getStats answer',
            );
            answered++;
            if (!Array.isArray(res) || res.length !== 1 || res[0]!.vmId !== g.vmId)
              problems.push(`VM.getStats ${g.vmId}: ${JSON.stringify(res).slice(0, 200)}`);
            else check(res[0]!, 'VM.getStats');
          } catch (err) {
            if (!(err instanceof RpcCallError)) throw err;
            answered++;
            // The only expected error: a VM whose sockets are away, or were a moment ago.
            if (err.error.code === 1 && churned.includes(g)) noSuchVm++;
            else problems.push(`VM.getStats ${g.vmId}: error ${err.message}`);
          }
        } else {
          const pong = await withTimeout(c.call('Host.ping2'), 30_000, 'Host.ping2 answer');
          answered++;
          if (pong !== true) problems.push(`Host.ping2: ${JSON.stringify(pong)}`);
        }
      }
    } finally {
      await c.close();
    }
    return { problems, answered, noSuchVm };
  }

  it('answers every request correctly while guests churn, and its memory returns to its steady level', async () => {
    const warm = await RpcClient.connect(d.url);
    await allReported(warm);
    // Warm-up round: the steady level is measured after the daemon has served this load once.
    const warmup = await Promise.all(Array.from({ length: CLIENTS }, (_, i) => client(i)));
    expect(warmup.flatMap((r) => r.problems)).toEqual([]);
    await sleep(3000);
    const steadyKiB = rssKiB(d.proc.pid!);

    const events: { method: string; params: unknown }[] = [];
    await warm.call('Host.subscribeEvents', { prefixes: ['|virt|VM_status|'] });
    warm.onNotification = (n) => events.push(n);

    // Churn until the clients are done: four workers, each over its own tenth of the churned VMs.
    const away = new Set<string>();
    let churning = true;
    let churnActions = 0;
    const worker = async (w: number): Promise<void> => {
      const mine = churned.filter((_, i) => i % 4 === w);
      for (let n = 0; churning; n++) {
        const g = mine[n % mine.length]!;
        const c = changing[(n * 4 + w) % changing.length]!;
        sim.changeAddress(c.vmId);
        history.get(c.vmId)!.add(JSON.stringify(expectedNetIfaces(c)));
        if (away.has(g.vmId)) {
          await sim.add(g);
          away.delete(g.vmId);
        } else if (n % 3 === 0) {
          sim.restartAgent(g.vmId, 300);
        } else {
          away.add(g.vmId);
          await sim.remove(g.vmId);
        }
        churnActions++;
        await sleep(10);
      }
    };
    const churn = Promise.all([0, 1, 2, 3].map(worker));

    const started = Date.now();
    // The churn stops even when a client fails, before the simulator is closed after the test.
    const results = await Promise.all(Array.from({ length: CLIENTS }, (_, i) => client(i))).finally(
      () => (churning = false),
    );
    await churn;
    for (const g of churned) if (away.has(g.vmId)) await sim.add(g);
    away.clear();

    expect(results.flatMap((r) => r.problems)).toEqual([]);
    expect(results.reduce((s, r) => s + r.answered, 0)).toBe(CLIENTS * REQUESTS_PER_CLIENT);
    expect(churnActions).toBeGreaterThan(10);
    console.log(
      `load: ${CLIENTS * REQUESTS_PER_CLIENT} requests in ${Date.now() - started} ms, ${churnActions} churn actions, ` +
        `${results.reduce((s, r) => s + r.noSuchVm, 0)} expected 'no such VM', ${events.length} events`,
    );

    // Events under churn: VDSM's shape, one VM each, Down only for VMs that went away.
    expect(events.length).toBeGreaterThan(0);
    for (const ev of events) {
      const vmId = ev.method.slice('|virt|VM_status|'.length);
      expect(UUID.test(vmId)).toBe(true);
      const params = ev.params as Record<string, { status: string }> & { notify_time: number };
      expect(typeof params.notify_time).toBe('number');
      expect(['Up', 'Down']).toContain(params[vmId]!.status);
      if (params[vmId]!.status === 'Down') expect(churned.map((g) => g.vmId)).toContain(vmId);
    }

    // Everything comes back: all VMs known again with their agents' data, memory at its steady level.
    await allReported(warm);
    await warm.close();
    await sleep(5000);
    const afterKiB = rssKiB(d.proc.pid!);
    console.log(
      `daemon RSS: steady ${Math.round(steadyKiB / 1024)} MiB, after the churn ${Math.round(afterKiB / 1024)} MiB`,
    );
    expect(afterKiB).toBeLessThan(steadyKiB * 1.25 + 16 * 1024);
  }, 180_000);
});
