// The test guest itself: a real kernel under QEMU (TCG) running the real Debian qemu-ga, reached
// over the oVirt-named channel socket with raw commands. What it answers here is what the
// daemon's tests rely on.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { missing } from './helpers/prereq.js';
import {
  bootGuest,
  expectedNetIfaces,
  sortedAddresses,
  testGuestImage,
  VM_TEST_TIMEOUT_MS,
  type BootedGuest,
} from './helpers/qemuGuest.js';
import { QgaSocket } from './helpers/qgaSocket.js';

const skip = missing({ root: true, commands: ['qemu-system-x86_64', 'qemu-ga', 'apt-get', 'cpio', 'setpriv'] });

interface RawIface {
  name: string;
  'hardware-address'?: string;
  'ip-addresses'?: { 'ip-address-type': string; 'ip-address': string; prefix: number }[];
}

/** The raw reply in netIfaces form, written independently of the daemon's mapping. */
function asNetIfaces(raw: RawIface[]): { name: string; hw: string; inet: string[]; inet6: string[] }[] {
  return raw.map((i) => ({
    name: i.name,
    hw: i['hardware-address'] ?? '',
    inet: (i['ip-addresses'] ?? []).filter((a) => a['ip-address-type'] === 'ipv4').map((a) => a['ip-address']),
    inet6: (i['ip-addresses'] ?? []).filter((a) => a['ip-address-type'] === 'ipv6').map((a) => a['ip-address']),
  }));
}

/** Polls until the guest reports what it configured (link-local IPv6 comes a moment after boot). */
async function interfacesOnceSettled(q: QgaSocket, g: BootedGuest, timeoutMs = 30_000): Promise<RawIface[]> {
  const want = expectedNetIfaces(g);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const reply = await q.command('guest-network-get-interfaces');
    const got = reply.return as RawIface[];
    if (JSON.stringify(sortedAddresses(asNetIfaces(got))) === JSON.stringify(want) || Date.now() > deadline) return got;
    await new Promise((r) => setTimeout(r, 500));
  }
}

describe.skipIf(skip)(
  'test guest under QEMU, raw qemu-ga over its channel socket',
  { timeout: VM_TEST_TIMEOUT_MS },
  () => {
    beforeAll(async () => {
      const t0 = Date.now();
      await testGuestImage();
      console.log(`[vm] guest image ready in ${Date.now() - t0} ms`);
    });

    let guest: BootedGuest;
    let q: QgaSocket | undefined;
    afterAll(() => q?.close());

    it('boots and its qemu-ga answers guest-sync-delimited, interfaces with the MACs QEMU gave, and the host name', async () => {
      guest = await bootGuest({ hostname: 'vm-raw-1' });
      const t0 = Date.now();
      q = await QgaSocket.connectWhenAnswering(guest.qgaSocket);
      console.log(`[vm] one guest: ready after ${guest.bootMs} ms, qemu-ga answering ${Date.now() - t0} ms later`);

      const raw = await interfacesOnceSettled(q, guest);
      expect(sortedAddresses(asNetIfaces(raw))).toEqual(expectedNetIfaces(guest));
      for (const i of raw.filter((i) => i.name !== 'lo')) {
        expect(i['ip-addresses']!.every((a) => typeof a.prefix === 'number')).toBe(true);
      }
      expect(await q.command('guest-get-host-name')).toEqual({ return: { 'host-name': 'vm-raw-1' } });
      expect(await q.command('guest-bogus')).toMatchObject({ error: { class: 'CommandNotFound' } });
      const os = (await q.command('guest-get-osinfo')).return as Record<string, unknown>;
      expect(os).toMatchObject({ id: 'vdsm-test-guest', 'kernel-release': expect.stringMatching(/cloud-amd64$/) });
    });

    it('resynchronises after unread output: a second sync skips what came before', async () => {
      // Send a command and do not wait for it; the sync must discard its reply and answer its own id.
      q!.command('guest-get-host-name').catch(() => undefined);
      await q!.sync();
      expect(await q!.command('guest-ping')).toEqual({ return: {} });
    });

    it('boots three guests in parallel, each answering with its own addresses and name', async () => {
      const t0 = Date.now();
      const three = await Promise.all([0, 1, 2].map((i) => bootGuest({ hostname: `vm-par-${i}` })));
      console.log(
        `[vm] three guests in parallel: all ready after ${Date.now() - t0} ms (each: ${three.map((g) => g.bootMs).join(', ')} ms)`,
      );
      const uuids = new Set(three.map((g) => g.uuid));
      expect(uuids.size).toBe(3);
      await Promise.all(
        three.map(async (g) => {
          const qs = await QgaSocket.connectWhenAnswering(g.qgaSocket);
          try {
            const raw = await interfacesOnceSettled(qs, g);
            expect(sortedAddresses(asNetIfaces(raw))).toEqual(expectedNetIfaces(g));
            expect(await qs.command('guest-get-host-name')).toEqual({ return: { 'host-name': g.hostname } });
          } finally {
            qs.close();
          }
        }),
      );
      await Promise.all(three.map((g) => g.kill()));
    });
  },
);
