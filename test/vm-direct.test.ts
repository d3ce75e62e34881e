// End to end, direct: the real daemon watching a channels directory where real QEMU guests run
// the real qemu-ga. What VM.getStats says must be exactly what each guest configured.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RpcCallError, RpcClient } from '../src/client/rpcClient.js';
import type { VmStats } from '../src/wire.js';
import { tempDir } from './helpers/channelsDir.js';
import { startDaemon, type RunningDaemon } from './helpers/daemon.js';
import { missing } from './helpers/prereq.js';
import {
  bootGuest,
  expectedNetIfaces,
  sortedAddresses,
  testGuestImage,
  VM_TEST_TIMEOUT_MS,
  type BootedGuest,
} from './helpers/qemuGuest.js';
import { eventually } from './helpers/scriptedGuest.js';

const skip = missing({ root: true, commands: ['qemu-system-x86_64', 'qemu-ga', 'apt-get', 'cpio', 'setpriv'] });

async function stats(c: RpcClient, vmId: string): Promise<VmStats> {
  return (await c.call<VmStats[]>('VM.getStats', { vmID: vmId }))[0]!;
}

/** What the daemon must report for a guest once its link-local addresses are up. */
function expectedStats(g: BootedGuest): Partial<VmStats> {
  const netIfaces = expectedNetIfaces(g);
  return {
    vmId: g.uuid,
    status: 'Up',
    netIfaces,
    guestIPs: netIfaces
      .flatMap((i) => i.inet)
      .filter((a) => !a.startsWith('127.'))
      .join(' '),
    guestName: g.hostname,
    guestAgentStatus: 'responsive',
  };
}

/** Waits until the daemon reports the guest exactly as configured (addresses compared as sets). */
async function settled(c: RpcClient, g: BootedGuest, timeoutMs = 60_000): Promise<VmStats> {
  const want = expectedStats(g);
  return eventually(
    () => stats(c, g.uuid),
    (s) => JSON.stringify({ ...pick(s), netIfaces: sortedAddresses(s.netIfaces) }) === JSON.stringify(want),
    timeoutMs,
    `VM ${g.uuid} (${g.hostname}) reported as configured`,
  );
}

function pick(s: VmStats): Partial<VmStats> {
  return {
    vmId: s.vmId,
    status: s.status,
    netIfaces: s.netIfaces,
    guestIPs: s.guestIPs,
    guestName: s.guestName,
    guestAgentStatus: s.guestAgentStatus,
  };
}

describe.skipIf(skip)('daemon, --qga-via direct, real QEMU guests', { timeout: VM_TEST_TIMEOUT_MS }, () => {
  let dir: string;
  let d: RunningDaemon;
  let c: RpcClient;

  beforeAll(async () => {
    await testGuestImage();
    dir = tempDir('vdsm-vm-ch-');
    d = await startDaemon([
      '--listen',
      '127.0.0.1:0',
      '--channels-dir',
      dir,
      '--qga-via',
      'direct',
      '--qga-poll-interval',
      '1',
    ]);
    c = await RpcClient.connect(d.url);
  });
  afterAll(async () => {
    await c?.close();
    await d?.stop();
  });

  let first: BootedGuest;

  it('reports a booted guest: every interface with its QEMU MAC, every address incl. link-local, its host name', async () => {
    first = await bootGuest({ channelsDir: dir, hostname: 'direct-1' });
    const s = await settled(c, first);
    // The exact report, order as the guest lists its interfaces (lo, eth0, eth1).
    expect(s.netIfaces.map((i) => [i.name, i.hw])).toEqual([
      ['lo', '00:00:00:00:00:00'],
      ['eth0', first.nics[0]!.mac],
      ['eth1', first.nics[1]!.mac],
    ]);
    expect(s).toMatchObject({ guestOs: expect.any(String), guestFQDN: '' });
    console.log(`[vm] direct: ${JSON.stringify(s)}`);
    const all = await c.call<VmStats[]>('Host.getAllVmStats');
    expect(all.map((x) => x.vmId)).toEqual([first.uuid]);
  });

  it('a killed VM is gone: its sockets vanish and VM.getStats answers "Virtual machine does not exist"', async () => {
    await first.kill();
    const gone = await eventually(
      () =>
        stats(c, first.uuid).then(
          () => null,
          (e: unknown) => (e instanceof RpcCallError ? e.error : null),
        ),
      (e) => e !== null,
      15_000,
      'VM gone',
    );
    expect(gone).toMatchObject({ code: 1, message: expect.stringMatching(/^Virtual machine does not exist/) });
    expect(await c.call<VmStats[]>('Host.getAllVmStats')).toEqual([]);
  });

  it('three guests booted in parallel while the daemon runs all appear, each with its own data', async () => {
    const t0 = Date.now();
    const three = await Promise.all([0, 1, 2].map((i) => bootGuest({ channelsDir: dir, hostname: `direct-par-${i}` })));
    const reported = await Promise.all(three.map((g) => settled(c, g)));
    console.log(`[vm] direct: three parallel guests booted and reported exactly after ${Date.now() - t0} ms`);
    expect(new Set(reported.map((s) => s.guestName))).toEqual(new Set(three.map((g) => g.hostname)));
    const all = await c.call<VmStats[]>('Host.getAllVmStats');
    expect(all.map((x) => x.vmId).sort()).toEqual(three.map((g) => g.uuid).sort());
    await Promise.all(three.map((g) => g.kill()));
    await eventually(
      () => c.call<VmStats[]>('Host.getAllVmStats'),
      (a) => a.length === 0,
      15_000,
      'all gone',
    );
  });
});
