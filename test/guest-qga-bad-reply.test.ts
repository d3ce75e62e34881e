// A bad reply is not silence: a qemu-ga reply that cannot be parsed (a raw NUL byte, garbage) is
// counted and warned about under its GUEST_ERR_* code, resynced at once, and leaves a live agent
// `responsive` with its data; only a run of them makes it `unresponsive`, still with its last
// good data. Against a scripted agent on a real socket, and against the real qemu-ga through a
// relay that corrupts one of its replies.
// The qemu-ga timeout is long (20 s) and the waits here shorter: a daemon that waited for the
// timeout instead of resyncing at once would fail them.
import net from 'node:net';
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RpcClient } from '../src/client/rpcClient.js';
import type { VmStats } from '../src/wire.js';
import { channelPath, newVmId, tempDir } from './helpers/channelsDir.js';
import { atFileEnd } from './helpers/fileCleanup.js';
import { fixtureBytes } from './helpers/guestFixtures.js';
import { useGuestDaemon } from './helpers/guestDaemon.js';
import { createNetns, ipn } from './helpers/netns.js';
import { missing } from './helpers/prereq.js';
import { QEMU_GA, startQemuGa } from './helpers/qemuGa.js';
import { ScriptedGuest, actAsQemuGa, eventually } from './helpers/scriptedGuest.js';

const QGA = 'org.qemu.guest_agent.0';
const IFACES = 'guest-network-get-interfaces';
const ARGS = ['--qga-poll-interval', '0.5', '--qga-timeout', '20'];

type EventParams = Record<string, Partial<VmStats>>;

/** Every guestAgentStatus a VM_status subscriber was told for `vmId`. */
function announcedStatuses(c: RpcClient, vmId: string): string[] {
  return c.notifications
    .filter((n) => n.method === `|virt|VM_status|${vmId}`)
    .flatMap((n) => {
      const s = (n.params as EventParams)[vmId]?.guestAgentStatus;
      return s === undefined ? [] : [s];
    });
}

function warnings(logs: Record<string, unknown>[], vmId: string): Record<string, unknown>[] {
  return logs.filter((l) => l.vmId === vmId && l.level === 'warn' && l.code === 'GUEST_ERR_BAD_JSON');
}

describe('an unreadable reply from a scripted qemu-ga on a real socket', () => {
  const t = useGuestDaemon(ARGS);

  it('a raw NUL line: warned about with its code, resynced at once, still responsive with its data; a run of them: unresponsive, data kept', async () => {
    const vm = newVmId();
    const sub = await RpcClient.connect(t.d.url);
    await sub.call('Host.subscribeEvents', { prefixes: [`|virt|VM_status|${vm}`] });
    const g = await ScriptedGuest.listen(channelPath(t.dir, vm, QGA));
    let mode: 'good' | 'once' | 'always' = 'good';
    let garbageAt = -1;
    actAsQemuGa(g, (command) => {
      if (command === IFACES && mode !== 'good') {
        if (mode === 'once') mode = 'good';
        garbageAt = g.received.length;
        return Buffer.of(0x00, 0x0a); // a raw NUL byte, then the newline that ends a reply
      }
      return command === IFACES
        ? fixtureBytes('qga/linux-interfaces.json')
        : command === 'guest-get-host-name'
          ? fixtureBytes('qga/host-name.json')
          : fixtureBytes('qga/osinfo.json');
    });
    const good = await eventually(
      () => t.stats(vm),
      (x) => x.guestAgentStatus === 'responsive' && x.netIfaces !== null && x.guestName === 'vm',
      10_000,
      'first poll',
    );

    mode = 'once';
    // The next lines after the bad reply: a resync, then the poll again (not a 20 s wait for a timeout).
    const sync = await g.waitForLine(() => garbageAt !== -1 && g.received.length > garbageAt, 10_000);
    expect(sync.charCodeAt(0)).toBe(0xff);
    expect(sync).toContain('guest-sync-delimited');
    await g.waitForLine((l) => l.includes(IFACES), 10_000, garbageAt + 1);
    const after = await t.stats(vm);
    expect(after).toMatchObject({
      guestAgentStatus: 'responsive',
      netIfaces: good.netIfaces,
      guestIPs: good.guestIPs,
      guestName: 'vm',
      guestOs: good.guestOs,
    });
    const warned = await eventually(
      () => warnings(t.d.logs(), vm),
      (w) => w.length >= 1,
      10_000,
      'a warning',
    );
    expect(warned[0]).toMatchObject({ channel: QGA, command: IFACES, count: 1 });
    expect(announcedStatuses(sub, vm)).not.toContain('unresponsive');

    // It keeps happening: the agent is not answering usefully, so unresponsive; its data stays.
    mode = 'always';
    const down = await eventually(
      () => t.stats(vm),
      (x) => x.guestAgentStatus === 'unresponsive',
      10_000,
      'unresponsive after repeated garbage',
    );
    expect(down).toMatchObject({
      netIfaces: good.netIfaces,
      guestIPs: good.guestIPs,
      guestName: 'vm',
      guestOs: good.guestOs,
    });
    expect(announcedStatuses(sub, vm)).toContain('unresponsive');
    mode = 'good';
    await eventually(
      () => t.stats(vm),
      (x) => x.guestAgentStatus === 'responsive',
      10_000,
      'responsive again',
    );
    expect(t.d.proc.exitCode).toBeNull();
    await sub.close();
    await g.close();
  });

  it("a stray reply behind the real one, in the same read, is not taken for the next command's reply", async () => {
    // qemu-ga replies carry no id: they are matched in order, so a line the agent sends after
    // its reply must be dropped as unexpected, not handed to the command the poller sends next
    // (host name, right after the network data on a first round).
    const vm = newVmId();
    const g = await ScriptedGuest.listen(channelPath(t.dir, vm, QGA));
    actAsQemuGa(g, (command) =>
      command === IFACES
        ? Buffer.concat([
            fixtureBytes('qga/linux-interfaces.json'),
            Buffer.from('{"return": {"host-name": "stray"}}\n'),
          ])
        : command === 'guest-get-host-name'
          ? fixtureBytes('qga/host-name.json')
          : fixtureBytes('qga/osinfo.json'),
    );
    const first = await eventually(
      () => t.stats(vm),
      (x) => x.guestName === 'vm' || x.guestName === 'stray',
      10_000,
      'host name from the first round',
    );
    expect(first.guestName).toBe('vm');
    await g.close();
  });
});

/**
 * Sits between the daemon and a real qemu-ga: the daemon connects to `listenPath` (in the
 * channels directory), the relay to the agent's socket; bytes pass unchanged except that, when
 * armed, the agent's next reply to `command` gets a NUL byte in its middle.
 */
class CorruptingRelay {
  private armed: string | null = null;
  private corruptNext = false;
  corrupted = 0;
  private constructor(private readonly server: net.Server) {}

  static async start(listenPath: string, agentPath: string): Promise<CorruptingRelay> {
    const relay: CorruptingRelay = new CorruptingRelay(net.createServer((daemon) => relay.serve(daemon, agentPath)));
    await new Promise<void>((resolve, reject) => {
      relay.server.once('error', reject);
      relay.server.listen(listenPath, () => resolve());
    });
    atFileEnd(() => relay.close(listenPath));
    return relay;
  }

  arm(command: string): void {
    this.armed = command;
  }

  private serve(daemon: net.Socket, agentPath: string): void {
    const agent = net.connect(agentPath);
    const end = (): void => {
      daemon.destroy();
      agent.destroy();
    };
    for (const s of [daemon, agent]) s.on('error', end).on('close', end);
    daemon.on('data', (chunk: Buffer) => {
      if (this.armed && chunk.includes(`"${this.armed}"`)) {
        this.armed = null;
        this.corruptNext = true;
      }
      agent.write(chunk);
    });
    let pending = Buffer.alloc(0);
    agent.on('data', (chunk: Buffer) => {
      if (!this.corruptNext) return void daemon.write(chunk);
      pending = Buffer.concat([pending, chunk]);
      const nl = pending.indexOf(0x0a);
      if (nl === -1) return;
      const line = pending.subarray(0, nl + 1);
      const mid = Math.floor(line.length / 2);
      daemon.write(
        Buffer.concat([line.subarray(0, mid), Buffer.of(0x00), line.subarray(mid), pending.subarray(nl + 1)]),
      );
      pending = Buffer.alloc(0);
      this.corruptNext = false;
      this.corrupted++;
    });
  }

  close(listenPath: string): void {
    this.server.close();
    rmSync(listenPath, { force: true });
  }
}

const needs = missing({ root: true, commands: ['ip', QEMU_GA] });

describe.skipIf(needs)('an unreadable reply from the real qemu-ga (one reply corrupted on its way)', () => {
  const t = useGuestDaemon(ARGS);
  let ns: string;
  let agentDir: string;

  beforeAll(() => {
    ns = createNetns('vgb');
    ipn(ns, 'link', 'add', 'b0', 'address', '52:54:00:4b:41:44', 'type', 'veth', 'peer', 'name', 'b1');
    ipn(ns, 'addr', 'add', '192.0.2.44/24', 'dev', 'b0');
    ipn(ns, 'link', 'set', 'b0', 'up');
    ipn(ns, 'link', 'set', 'b1', 'up');
    agentDir = tempDir('vat-qga-agent-');
  });
  afterAll(() => agentDir && rmSync(agentDir, { recursive: true, force: true }));

  it('stays responsive with the same data, the bad reply warned about, and answers again at once', async () => {
    const vm = newVmId();
    const agentPath = channelPath(agentDir, vm, QGA);
    await startQemuGa(ns, agentPath);
    const sub = await RpcClient.connect(t.d.url);
    await sub.call('Host.subscribeEvents', { prefixes: [`|virt|VM_status|${vm}`] });
    const relay = await CorruptingRelay.start(channelPath(t.dir, vm, QGA), agentPath);
    const good = await eventually(
      () => t.stats(vm),
      (x) => x.guestAgentStatus === 'responsive' && x.guestIPs.includes('192.0.2.44'),
      15_000,
      'first poll',
    );
    relay.arm(IFACES);
    await eventually(
      () => warnings(t.d.logs(), vm),
      (w) => w.length >= 1,
      10_000,
      'the corrupted reply warned about',
    );
    expect(relay.corrupted).toBe(1);
    expect(warnings(t.d.logs(), vm)[0]).toMatchObject({ channel: QGA, command: IFACES });
    const kept = await t.stats(vm);
    expect(kept).toMatchObject({
      guestAgentStatus: 'responsive',
      netIfaces: good.netIfaces,
      guestName: good.guestName,
      guestOs: good.guestOs,
    });
    // Polled again after the resync (not after the 20 s timeout): a new address shows up.
    ipn(ns, 'addr', 'add', '192.0.2.45/24', 'dev', 'b0');
    const fresh = await eventually(
      () => t.stats(vm),
      (x) => x.guestIPs.includes('192.0.2.45'),
      10_000,
      'the next poll',
    );
    expect(fresh).toMatchObject({ guestAgentStatus: 'responsive', guestName: good.guestName, guestOs: good.guestOs });
    expect(announcedStatuses(sub, vm)).not.toContain('unresponsive');
    await sub.close();
  });
});
