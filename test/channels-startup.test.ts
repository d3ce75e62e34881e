// Start-up on a crowded host, as an operator sees it: the VMs whose sockets are present when the
// daemon starts are all in its first answer, and the log sums them up in one info line; the
// per-channel lines of that listing are debug. A VM that appears later, or a channel that
// reconnects, is still told at info.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RpcClient } from '../src/client/rpcClient.js';
import { GuestSimulator } from '../src/sim/simulator.js';
import { generateGuests } from '../src/sim/guest.js';
import type { VmStats } from '../src/wire.js';
import { channelPath, newVmId, tempDir } from './helpers/channelsDir.js';
import { startDaemon, type RunningDaemon } from './helpers/daemon.js';
import { atFileEnd } from './helpers/fileCleanup.js';
import { ScriptedGuest, eventually } from './helpers/scriptedGuest.js';

type Line = Record<string, unknown>;
const VMS = 200;

describe('start-up with many guest sockets present', () => {
  const guests = generateGuests(VMS + 1);
  const late = guests.pop()!;
  let dir: string;
  let sim: GuestSimulator;
  let d: RunningDaemon;
  let firstAnswer: VmStats[];

  beforeAll(async () => {
    dir = tempDir();
    sim = new GuestSimulator({ dir });
    atFileEnd(() => sim.close());
    await sim.addAll(guests);
    d = await startDaemon(['--listen', '127.0.0.1:0', '--channels-dir', dir, '--log-level', 'debug']);
    const c = await RpcClient.connect(d.url);
    firstAnswer = await c.call<VmStats[]>('Host.getAllVmStats');
    await c.close();
  });
  afterAll(async () => {
    await d?.stop();
  });

  const lines = (msg: string, vmIds?: Set<string>): Line[] =>
    d.logs().filter((l) => l.msg === msg && (!vmIds || vmIds.has(String(l.vmId))));

  it('lists every VM present at start in the first answer', () => {
    expect(firstAnswer.map((s) => s.vmId).sort()).toEqual(guests.map((g) => g.vmId).sort());
  });

  it('sums up the sockets found at start in one info line, and says each channel at debug', async () => {
    const found = lines(`found ${VMS} guest channel sockets of ${VMS} VMs`);
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({ level: 'info', dir, vms: VMS, channels: VMS });
    // Every agent answers; its channel's first connect and its first 'responsive' are debug.
    const ids = new Set(guests.map((g) => g.vmId));
    await eventually(
      () => Promise.resolve(lines('guest agent status changed', ids)),
      (ls) => ls.length === VMS,
      60_000,
      'every agent responsive',
    );
    for (const msg of ['guest channel appeared', 'channel connected', 'guest agent status changed']) {
      const ls = lines(msg, ids);
      expect(ls, msg).toHaveLength(VMS);
      expect(new Set(ls.map((l) => l.level)), msg).toEqual(new Set(['debug']));
    }
    expect(new Set(lines('guest agent status changed', ids).map((l) => l.guestAgentStatus))).toEqual(
      new Set(['responsive']),
    );
  }, 90_000);

  it('tells a VM that appears later at info', async () => {
    await sim.add(late);
    const only = new Set([late.vmId]);
    await d.waitForLog((l) => l.msg === 'guest agent status changed' && l.vmId === late.vmId, 30_000);
    for (const msg of ['guest channel appeared', 'channel connected', 'guest agent status changed'])
      expect(
        lines(msg, only).map((l) => l.level),
        msg,
      ).toEqual(['info']);
    const c = await RpcClient.connect(d.url);
    expect((await c.call<VmStats[]>('Host.getAllVmStats')).length).toBe(VMS + 1);
    await c.close();
  }, 60_000);
});

describe('a channel found at start-up that reconnects', () => {
  it('says the reconnection at info, though its first connect was debug', async () => {
    const dir = tempDir();
    const vmId = newVmId();
    const socket = channelPath(dir, vmId, 'ovirt-guest-agent.0');
    const agent = await ScriptedGuest.listen(socket);
    atFileEnd(() => agent.close());
    const d = await startDaemon(['--listen', '127.0.0.1:0', '--channels-dir', dir]);
    try {
      await agent.connected();
      await d.waitForLog((l) => l.msg === 'found 1 guest channel socket of 1 VM');
      const again = agent.nextConnection(30_000);
      agent.hangUp();
      await again;
      const connected = await d.waitForLog((l) => l.msg === 'channel connected' && l.path === socket);
      expect(connected).toMatchObject({ level: 'info', vmId });
      // At the default level: the reconnection, not the first connect nor the socket appearing.
      const shown = d
        .logs()
        .filter((l) => l.vmId === vmId)
        .map((l) => l.msg);
      expect(shown.filter((m) => m === 'channel connected' || m === 'guest channel appeared')).toEqual([
        'channel connected',
      ]);
      expect(shown).toContain('channel disconnected');
    } finally {
      await d.stop();
    }
  }, 60_000);
});
