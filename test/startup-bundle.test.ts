// dist/main.js is one file holding the daemon and the dependencies it starts and serves with
// (scripts/bundle-daemon.mjs, for start-up time): copied alone, with package.json one level up
// and no node_modules anywhere above, it still tells its version, lists the VMs with their
// agents' data, and answers a scrape.
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RpcClient } from '../src/client/rpcClient.js';
import { generateGuests } from '../src/sim/guest.js';
import { GuestSimulator } from '../src/sim/simulator.js';
import type { VmStats } from '../src/wire.js';
import { DAEMON, ROOT, startDaemon, type RunningDaemon } from './helpers/daemon.js';
import { tempDir } from './helpers/channelsDir.js';
import { eventually } from './helpers/scriptedGuest.js';

function get(url: string, pathName: string): Promise<{ status: number; body: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    http
      .get({ host: u.hostname, port: u.port, path: pathName, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

describe('dist/main.js without node_modules', () => {
  // In the system's temporary directory: no node_modules in any folder above it.
  const alone = tempDir('vat-bundle-');
  const main = path.join(alone, 'dist', 'main.js');
  const dir = tempDir('vat-bundle-ch-');
  const sim = new GuestSimulator({ dir, tickMs: 50 });
  const guests = generateGuests(2);
  let d: RunningDaemon;
  beforeAll(async () => {
    mkdirSync(path.dirname(main));
    copyFileSync(DAEMON, main);
    copyFileSync(path.join(ROOT, 'package.json'), path.join(alone, 'package.json'));
    await sim.addAll(guests);
    d = await startDaemon(['--listen', '127.0.0.1:0', '--channels-dir', dir], { main });
  });
  afterAll(async () => {
    await d?.stop();
    await sim.close();
  });

  it('tells its version', () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(execFileSync(process.execPath, [main, '--version'], { encoding: 'utf8' })).toBe(
      `vdsm-agentd ${pkg.version}\n`,
    );
  });

  it("lists both VMs with their agents' interfaces, and answers GET /metrics", async () => {
    const c = await RpcClient.connect(d.url);
    try {
      const all = await eventually(
        () => c.call<VmStats[]>('Host.getAllVmStats'),
        (vms) =>
          vms.length === 2 && vms.every((v) => v.guestAgentStatus === 'responsive' && (v.netIfaces ?? []).length > 0),
        30_000,
        'both agents reported',
      );
      expect(all.map((v) => v.vmId).sort()).toEqual(guests.map((g) => g.vmId).sort());
    } finally {
      await c.close();
    }
    const r = await get(d.url, '/metrics');
    expect(r.status).toBe(200);
    expect(r.body).toMatch(/^vdsm_agentd_vms\{status="Up"\} 2$/m);
    expect(r.body).toMatch(/^vdsm_agentd_rpc_requests_total\{method="Host\.getAllVmStats",outcome="ok"\} [1-9]/m);
    expect(r.body).toMatch(/^process_start_time_seconds \d/m);
  });
});
