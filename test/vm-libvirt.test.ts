// qemu-ga through libvirt, with a real libvirtd started by the test and transient domains booting
// the tiny guest with oVirt's channel layout (/var/lib/libvirt/qemu/channels/<uuid>.<channel>).
import net from 'node:net';
import path from 'node:path';
import { rmSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RpcCallError, RpcClient } from '../src/client/rpcClient.js';
import { LibvirtCallError, LibvirtClient } from '../src/libvirt/client.js';
import { classifyLibvirtFailure } from '../src/libvirt/agentLink.js';
import type { GuestNetworkDeviceInfo, VmStats } from '../src/wire.js';
import { tempDir } from './helpers/channelsDir.js';
import { startDaemon, type RunningDaemon } from './helpers/daemon.js';
import {
  acceptedClients,
  LIBVIRTD_WAIT_MS,
  LIBVIRT_URI,
  OVIRT_CHANNELS_DIR,
  startLibvirtd,
  virsh,
  type Libvirtd,
  type LibvirtDomain,
} from './helpers/libvirtd.js';
import { missing } from './helpers/prereq.js';
import { bootGuest, expectedNetIfaces, QGA_CHANNEL, sortedAddresses, testGuestImage } from './helpers/qemuGuest.js';
import { QgaSocket } from './helpers/qgaSocket.js';
import { eventually } from './helpers/scriptedGuest.js';

const skip = missing({
  root: true,
  commands: [
    'qemu-system-x86_64',
    'qemu-ga',
    'apt-get',
    'cpio',
    'libvirtd',
    'virtlogd',
    'virsh',
    'unshare',
    'setpriv',
    'ss',
  ],
});

async function stats(c: RpcClient, vmId: string): Promise<VmStats> {
  return (await c.call<VmStats[]>('VM.getStats', { vmID: vmId }))[0]!;
}

/** `virsh domifaddr --source agent` in netIfaces form: libvirt's own reading of the agent. */
async function domifaddr(uuid: string): Promise<GuestNetworkDeviceInfo[]> {
  const out = await virsh('domifaddr', uuid, '--source', 'agent');
  const ifaces: GuestNetworkDeviceInfo[] = [];
  for (const line of out.split('\n').slice(2)) {
    const [name, mac, proto, addr] = line.trim().split(/\s+/);
    if (!name || !addr) continue;
    if (name !== '-') ifaces.push({ name, hw: mac!, inet: [], inet6: [] });
    const cur = ifaces[ifaces.length - 1]!;
    (proto === 'ipv4' ? cur.inet : cur.inet6).push(addr.split('/')[0]!);
  }
  return ifaces;
}

/** Runs a program in the guest through libvirt (qemu-ga's guest-exec). */
async function guestExec(uuid: string, argv: string[]): Promise<void> {
  await virsh(
    'qemu-agent-command',
    uuid,
    JSON.stringify({ execute: 'guest-exec', arguments: { path: argv[0], arg: argv.slice(1) } }),
  );
}

function logged(d: RunningDaemon, vmId: string, code: string): boolean {
  return d.logs().some((l) => l.vmId === vmId && l.code === code);
}

describe.skipIf(skip)('qemu-ga through a real libvirtd', () => {
  let lv: Libvirtd;
  let a: LibvirtDomain;

  beforeAll(async () => {
    await testGuestImage();
    const t0 = Date.now();
    lv = await startLibvirtd();
    const t1 = Date.now();
    a = await lv.createDomain({ hostname: 'lv-a' });
    console.log(`[vm] libvirtd up in ${t1 - t0} ms; transient domain booted in ${Date.now() - t1} ms`);
    // libvirtd connects to the agent once the guest opens its port.
    await eventually(
      () => virsh('qemu-agent-command', a.uuid, '{"execute":"guest-ping"}'),
      (o) => o.includes('return'),
      30_000,
      'agent through libvirt',
    );
    // Every address the guest configures is up (link-local IPv6 comes a moment after boot).
    await eventually(
      () => domifaddr(a.uuid),
      (x) => JSON.stringify(sortedAddresses(x)) === JSON.stringify(expectedNetIfaces(a)),
      30_000,
      'addresses settled',
    );
  }, LIBVIRTD_WAIT_MS);

  it('the agent-command layer returns the real agent replies, as virsh qemu-agent-command does, without a process per call', async () => {
    const client = new LibvirtClient({ uri: LIBVIRT_URI, log: pino({ level: 'silent' }) });
    await client.start();
    try {
      expect(client.state).toBe('up');
      const strip = (text: string): unknown => {
        const v = JSON.parse(text) as { return: { statistics?: unknown }[] };
        return v.return.map(({ statistics: _s, ...rest }) => rest); // counters move between calls
      };
      const cmd = '{"execute":"guest-network-get-interfaces"}';
      const ours = await client.agentCommand(a.uuid, cmd, 5_000);
      expect(strip(ours)).toEqual(strip(await virsh('qemu-agent-command', a.uuid, cmd)));
      expect(JSON.parse(await client.agentCommand(a.uuid, '{"execute":"guest-get-host-name"}', 5_000))).toEqual({
        return: { 'host-name': 'lv-a' },
      });
      // Many VMs' polls at once share the connections; each gets its own answer.
      const many = await Promise.all(
        Array.from({ length: 20 }, () => client.agentCommand(a.uuid, '{"execute":"guest-get-host-name"}', 5_000)),
      );
      expect(new Set(many)).toEqual(new Set([JSON.stringify({ return: { 'host-name': 'lv-a' } })]));
      // An agent error comes back as the agent's reply, for the shared parser to read.
      const err = await client.agentCommand(a.uuid, '{"execute":"guest-bogus"}', 5_000).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(LibvirtCallError);
      const unknown = await client
        .agentCommand(randomUUID(), '{"execute":"guest-ping"}', 5_000)
        .catch((e: unknown) => e);
      expect(unknown).toBeInstanceOf(LibvirtCallError);
      expect(classifyLibvirtFailure(unknown)).toMatchObject({ kind: 'disconnected', code: 'LIBVIRT_ERR_NO_DOMAIN' });
    } finally {
      client.stop();
    }
  });

  it('while libvirtd holds the qemu-ga socket a second client connects but never gets an answer; the direct daemon says unresponsive, not hangs', async () => {
    // A domain and directory of their own: what a direct client leaves queued on a socket libvirtd
    // holds is delivered to the guest the moment libvirtd lets go (a restart), and the agent's
    // stray answer then puts libvirt's agent in error until the guest reopens its port.
    const heldDir = tempDir('vdsm-libvirt-held-');
    const h = await lv.createDomain({ hostname: 'lv-held', channelsDir: heldDir });
    try {
      await eventually(
        () => acceptedClients(h.qgaSocket),
        (x) => x.length > 0,
        30_000,
        'libvirtd on the qemu-ga socket',
      );
      expect((await acceptedClients(h.qgaSocket)).map((x) => x.pid)).toEqual([lv.pid]);
      const q = await QgaSocket.connect(h.qgaSocket);
      await expect(q.sync(3_000)).rejects.toThrow(/no answer/);
      q.close();
      const d = await startDaemon([
        '--listen',
        '127.0.0.1:0',
        '--channels-dir',
        heldDir,
        '--qga-via',
        'direct',
        '--qga-poll-interval',
        '1',
        '--qga-timeout',
        '1',
      ]);
      const c = await RpcClient.connect(d.url);
      try {
        const s = await eventually(
          () => stats(c, h.uuid),
          (x) => x.guestAgentStatus === 'unresponsive',
          20_000,
          'unresponsive',
        );
        expect(s).toMatchObject({ status: 'Up', netIfaces: [], guestName: '' });
        await d.waitForLog((l) => l.vmId === h.uuid && l.code === 'GUEST_ERR_QGA_TIMEOUT');
        expect(await c.call('Host.ping2')).toBe(true);
      } finally {
        await c.close();
        await d.stop();
      }
      // libvirt still has the agent.
      expect(await virsh('qemu-agent-command', h.uuid, '{"execute":"guest-ping"}')).toContain('"return"');
    } finally {
      await h.destroy();
    }
  });

  describe('the daemon with --qga-via libvirt', () => {
    let d: RunningDaemon;
    let c: RpcClient;
    let fake: net.Server;
    let fakeConnections = 0;
    const fakeId = randomUUID();

    beforeAll(async () => {
      // A qemu-ga socket of a VM libvirt does not know: the daemon must not connect to it either.
      fake = net.createServer(() => fakeConnections++);
      await new Promise<void>((r) => fake.listen(path.join(OVIRT_CHANNELS_DIR, `${fakeId}.${QGA_CHANNEL}`), r));
      d = await startDaemon([
        '--listen',
        '127.0.0.1:0',
        '--channels-dir',
        OVIRT_CHANNELS_DIR,
        '--qga-via',
        'libvirt',
        '--qga-poll-interval',
        '1',
        '--qga-timeout',
        '2',
      ]);
      c = await RpcClient.connect(d.url);
    });
    afterAll(async () => {
      await c?.close();
      await d?.stop();
      fake?.close();
      rmSync(path.join(OVIRT_CHANNELS_DIR, `${fakeId}.${QGA_CHANNEL}`), { force: true });
    });

    it('reports netIfaces exactly as virsh domifaddr --source agent shows them, and the guest name', async () => {
      const want = await domifaddr(a.uuid);
      expect(sortedAddresses(want)).toEqual(expectedNetIfaces(a));
      const s = await eventually(
        () => stats(c, a.uuid),
        (x) => JSON.stringify(x.netIfaces) === JSON.stringify(want),
        30_000,
        'daemon matches domifaddr',
      );
      expect(s).toMatchObject({
        status: 'Up',
        guestName: 'lv-a',
        guestAgentStatus: 'responsive',
        guestIPs: want
          .flatMap((i) => i.inet)
          .filter((x) => !x.startsWith('127.'))
          .join(' '),
      });
      console.log(
        `[vm] libvirt: virsh domifaddr --source agent ->\n${await virsh('domifaddr', a.uuid, '--source', 'agent')}`,
      );
      console.log(`[vm] libvirt: VM.getStats -> ${JSON.stringify(s)}`);
    });

    it('never connects to a qemu-ga socket itself; the oVirt agent channel stays direct', async () => {
      expect((await acceptedClients(a.qgaSocket)).map((x) => x.pid)).toEqual([lv.pid]);
      await eventually(
        () => acceptedClients(a.ovirtSocket),
        (x) => x.some((p) => p.pid === d.proc.pid),
        10_000,
        'daemon on the oVirt channel',
      );
      expect(fakeConnections).toBe(0);
    });

    it('a VM libvirt does not know is unresponsive with a "domain not found" warning', async () => {
      const s = await eventually(
        () => stats(c, fakeId),
        (x) => x.guestAgentStatus === 'unresponsive',
        10_000,
        'fake VM unresponsive',
      );
      expect(s.netIfaces).toEqual([]);
      expect(logged(d, fakeId, 'LIBVIRT_ERR_NO_DOMAIN')).toBe(true);
      expect(fakeConnections).toBe(0);
    });

    it('a guest without a running agent is unresponsive ("agent not connected"); destroying its domain removes the VM', async () => {
      const b = await lv.createDomain({ hostname: 'lv-noagent', noAgent: true });
      await eventually(
        () => stats(c, b.uuid),
        (x) => x.guestAgentStatus === 'unresponsive',
        20_000,
        'no agent: unresponsive',
      );
      expect(logged(d, b.uuid, 'LIBVIRT_ERR_AGENT_NOT_CONNECTED')).toBe(true);
      await b.destroy();
      const gone = await eventually(
        () =>
          stats(c, b.uuid).then(
            () => null,
            (e: unknown) => (e instanceof RpcCallError ? e.error.code : null),
          ),
        (x) => x !== null,
        15_000,
        'VM gone',
      );
      expect(gone).toBe(1);
    });

    it('survives a libvirtd restart: unresponsive while it is down, fresh data after, no daemon restart', async () => {
      await lv.stopLibvirtd();
      const down = await eventually(
        () => stats(c, a.uuid),
        (x) => x.guestAgentStatus === 'unresponsive',
        20_000,
        'unresponsive while libvirtd is down',
      );
      expect(down.netIfaces).not.toBeNull();
      expect(d.logs().some((l) => l.code === 'LIBVIRT_ERR_UNAVAILABLE')).toBe(true);
      await lv.restartLibvirtd();
      await eventually(
        () => virsh('qemu-agent-command', a.uuid, '{"execute":"guest-ping"}'),
        (o) => o.includes('return'),
        30_000,
        'libvirt has the agent again',
      ).catch((err: unknown) => {
        const noise = /dnsmasq|DBus|udevGetDMI|dmidecode|qemuDomainAgentAvailable|cgroup/;
        throw new Error(
          `${(err as Error).message}\nlibvirtd:\n${lv
            .logs()
            .split('\n')
            .filter((l) => !noise.test(l))
            .slice(-40)
            .join('\n')}\nguest:\n${a.serialLog()}`,
        );
      });
      // An address, not the host name: addresses are polled every interval, the host name every 120 s.
      const added = '198.51.100.99';
      await guestExec(a.uuid, ['/bin/sh', '-c', `ip addr add ${added}/32 dev eth1`]);
      const s = await eventually(
        () => stats(c, a.uuid),
        (x) => x.guestIPs.split(' ').includes(added) && x.guestAgentStatus === 'responsive',
        30_000,
        'fresh data after the restart',
      );
      expect(s.netIfaces).toEqual(await domifaddr(a.uuid));
      await guestExec(a.uuid, ['/bin/sh', '-c', `ip addr del ${added}/32 dev eth1`]);
      await eventually(
        () => stats(c, a.uuid),
        (x) => !x.guestIPs.split(' ').includes(added),
        30_000,
        'the added address gone again',
      );
      expect(d.proc.exitCode).toBeNull();
    });

    // After the restart: the frozen agent's queued replies, were libvirtd restarted while they
    // drain, would leave libvirt's agent in error until the guest reopens its port.
    it('an agent that stops answering makes the VM unresponsive (agent timeout), and responsive again when it answers', async () => {
      // Freeze the guest's qemu-ga for 8 s from a child it starts itself. The child may stop
      // qemu-ga before it has answered the guest-exec; libvirt then gives up waiting for the
      // answer ("Guest agent not available for now", after 5 s), the freeze having begun.
      await guestExec(a.uuid, ['/bin/sh', '-c', 'kill -STOP $PPID; sleep 8; kill -CONT $PPID']).catch(
        (err: unknown) => {
          if (!/not available for now/.test((err as Error).message)) throw err;
        },
      );
      await eventually(
        () => stats(c, a.uuid),
        (x) => x.guestAgentStatus === 'unresponsive',
        20_000,
        'agent timeout',
      );
      expect(
        d
          .logs()
          .some(
            (l) =>
              l.vmId === a.uuid && (l.code === 'LIBVIRT_ERR_AGENT_UNRESPONSIVE' || l.code === 'LIBVIRT_ERR_TIMEOUT'),
          ),
      ).toBe(true);
      const back = await eventually(
        () => stats(c, a.uuid),
        (x) => x.guestAgentStatus === 'responsive',
        30_000,
        'agent back',
      );
      expect(back.netIfaces).not.toBeNull(); // kept while unresponsive, as VDSM does
    });

    it('destroying the domain removes the VM', async () => {
      await a.destroy();
      const gone = await eventually(
        () =>
          stats(c, a.uuid).then(
            () => null,
            (e: unknown) => (e instanceof RpcCallError ? e.error : null),
          ),
        (x) => x !== null,
        15_000,
        'VM gone',
      );
      expect(gone).toMatchObject({ code: 1, message: expect.stringMatching(/^Virtual machine does not exist/) });
    });
  });

  it('--qga-via auto: a libvirt domain goes through libvirt, a plain QEMU guest in the same directory directly', async () => {
    const dom = await lv.createDomain({ hostname: 'lv-auto' });
    const plain = await bootGuest({ channelsDir: OVIRT_CHANNELS_DIR, hostname: 'plain-auto' });
    const d = await startDaemon([
      '--listen',
      '127.0.0.1:0',
      '--channels-dir',
      OVIRT_CHANNELS_DIR,
      '--qga-via',
      'auto',
      '--qga-poll-interval',
      '1',
    ]);
    const c = await RpcClient.connect(d.url);
    try {
      for (const [g, name] of [
        [dom, 'lv-auto'],
        [plain, 'plain-auto'],
      ] as const) {
        const s = await eventually(
          () => stats(c, g.uuid),
          (x) =>
            x.guestName === name &&
            JSON.stringify(sortedAddresses(x.netIfaces)) === JSON.stringify(expectedNetIfaces(g)),
          40_000,
          `${name} reported`,
        );
        expect(s.guestAgentStatus).toBe('responsive');
      }
      const routes = d
        .logs()
        .filter((l) => l.msg === 'qemu-ga route')
        .map((l) => [l.vmId, l.route]);
      expect(routes).toEqual(
        expect.arrayContaining([
          [dom.uuid, 'libvirt'],
          [plain.uuid, 'direct'],
        ]),
      );
      expect((await acceptedClients(dom.qgaSocket)).map((x) => x.pid)).toEqual([lv.pid]);
      expect((await acceptedClients(plain.qgaSocket)).map((x) => x.pid)).toEqual([d.proc.pid]);
      // libvirtd restarting: the libvirt VM stays on libvirt (held), the direct one keeps its connection.
      const connects = (): number =>
        d.logs().filter((l) => l.msg === 'channel connected' && l.path === plain.qgaSocket).length;
      const before = connects();
      await lv.restartLibvirtd();
      await d.waitForLog(
        (l) => l.msg === 'libvirt connected' && d.logs().filter((x) => x.msg === 'libvirt connected').length >= 2,
        20_000,
      );
      const after = await eventually(
        () => stats(c, dom.uuid),
        (x) => x.guestAgentStatus === 'responsive',
        30_000,
        'libvirt VM after the restart',
      );
      expect(after.guestName).toBe('lv-auto');
      expect(connects()).toBe(before);
      expect(
        d
          .logs()
          .filter((l) => l.msg === 'qemu-ga route' && l.vmId === dom.uuid)
          .map((l) => l.route),
      ).toEqual(['libvirt']);
      expect((await acceptedClients(dom.qgaSocket)).map((x) => x.pid)).toEqual([lv.pid]);
    } finally {
      await c.close();
      await d.stop();
      await plain.kill();
      await dom.destroy();
    }
  });
});
