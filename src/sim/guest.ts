// The simulated guest: one model of a VM's network state from which both agents' payloads are
// derived (oVirt agent: `network-interfaces`; qemu-ga: `guest-network-get-interfaces`), so a
// guest that speaks both protocols reports consistent data, as a real one does.

export type SimAgent = 'ovirt' | 'qemu';
type OvirtChannel = 'ovirt-guest-agent.0' | 'com.redhat.rhevm.vdsm';

export interface SimAddress {
  type: 'ipv4' | 'ipv6';
  /** As the guest reports it: Windows link-local IPv6 may carry a `%zone`. */
  address: string;
  prefix: number;
}

export interface SimInterface {
  /** The name qemu-ga reports (Linux kernel name, label alias `eth0:1`, Windows friendly name). */
  name: string;
  /** The name the oVirt agent reports when it differs (Windows: the adapter description). */
  ovirtName?: string;
  /** Absent: no `hardware-address` (a Windows loopback). */
  hw?: string;
  /** Down interfaces are listed by qemu-ga (without addresses) and skipped by the oVirt agent. */
  up?: boolean;
  addresses: SimAddress[];
}

export interface SimGuest {
  vmId: string;
  agents: SimAgent[];
  /** Which oVirt channel name the VM has (the legacy name on old clusters). */
  ovirtChannel?: OvirtChannel;
  hostName: string;
  fqdn: string;
  /** oVirt `os-version`'s `version`. */
  osVersion: string;
  /** qemu-ga `guest-get-osinfo` reply. */
  osInfo: Record<string, string>;
  interfaces: SimInterface[];
  /** Milliseconds between address changes; absent: the addresses never change. */
  changeEveryMs?: number;
}

export interface GenerateOptions {
  /** Share of guests speaking qemu-ga (the rest speak the oVirt agent); default 0.5. */
  qemuShare?: number;
  interfaces?: number;
  addressesPerInterface?: number;
  /** Share of guests whose addresses change over time; default 0. */
  changingShare?: number;
  changeEveryMs?: number;
  /** 8 hex digits that start every generated vmId, so two simulators never collide. */
  idPrefix?: string;
}

const LINUX_OSINFO = {
  id: 'debian',
  name: 'Debian GNU/Linux',
  'pretty-name': 'Debian GNU/Linux 12 (bookworm)',
  version: '12 (bookworm)',
  'version-id': '12',
  'kernel-release': '6.1.0-27-amd64',
  'kernel-version': '#1 SMP PREEMPT_DYNAMIC Debian 6.1.115-1 (2024-11-01)',
  machine: 'x86_64',
};

function hex(n: number, width: number): string {
  return n.toString(16).padStart(width, '0');
}

function simVmId(index: number, idPrefix: string): string {
  return `${idPrefix}-0000-4000-8000-${hex(index, 12)}`;
}

/** Guest `index` of a generated fleet: `interfaces` NICs, each with half IPv4 and half IPv6 addresses. */
export function generateGuest(index: number, total: number, opts: GenerateOptions = {}): SimGuest {
  const nics = opts.interfaces ?? 4;
  const perNic = opts.addressesPerInterface ?? 4;
  const qemuCount = Math.round(total * (opts.qemuShare ?? 0.5));
  // Spread both the protocols and the changing guests evenly over the indices.
  const isQemu = Math.floor(((index + 1) * qemuCount) / total) > Math.floor((index * qemuCount) / total);
  const changingCount = Math.round(total * (opts.changingShare ?? 0));
  const changing = Math.floor(((index + 1) * changingCount) / total) > Math.floor((index * changingCount) / total);
  const hi = (index >> 8) & 0xff;
  const lo = index & 0xff;
  const interfaces: SimInterface[] = [];
  for (let k = 0; k < nics; k++) {
    const mac = `52:54:00:${hex(k, 2)}:${hex(hi, 2)}:${hex(lo, 2)}`;
    const addresses: SimAddress[] = [];
    for (let a = 0; a < perNic; a++) {
      if (a % 2 === 0) addresses.push({ type: 'ipv4', address: `10.${(k * 16 + a) & 0xff}.${hi}.${lo}`, prefix: 16 });
      else if (a === 1)
        addresses.push({
          type: 'ipv6',
          address: `fe80::5054:ff:fe${hex(k, 2)}:${hex(hi, 2)}${hex(lo, 2)}`,
          prefix: 64,
        });
      else addresses.push({ type: 'ipv6', address: `fd00:${k}:${a}::${hex(index, 1)}`, prefix: 64 });
    }
    interfaces.push({ name: `eth${k}`, hw: mac, addresses });
  }
  const name = `vm-${String(index).padStart(4, '0')}`;
  return {
    vmId: simVmId(index, opts.idPrefix ?? '5e5e0000'),
    agents: [isQemu ? 'qemu' : 'ovirt'],
    hostName: name,
    fqdn: `${name}.sim.example`,
    osVersion: '6.1.0-27-amd64',
    osInfo: { ...LINUX_OSINFO },
    interfaces,
    ...(changing ? { changeEveryMs: opts.changeEveryMs ?? 60_000 } : {}),
  };
}

export function generateGuests(count: number, opts: GenerateOptions = {}): SimGuest[] {
  return Array.from({ length: count }, (_, i) => generateGuest(i, count, opts));
}

/**
 * Changes one address, as a DHCP renewal would: the first IPv4 address of the first up,
 * non-loopback interface steps its last octet (cycling through four values). Returns it.
 */
export function changeAddress(guest: SimGuest): string | null {
  for (const nic of guest.interfaces) {
    if (nic.up === false || isLoopback(nic)) continue;
    const v4 = nic.addresses.find((a) => a.type === 'ipv4');
    if (!v4) continue;
    const parts = v4.address.split('.');
    const last = Number(parts[3]);
    parts[3] = String(last >= 200 ? last - 150 : last + 50);
    v4.address = parts.join('.');
    return v4.address;
  }
  return null;
}

// ---- what each agent reports --------------------------------------------------------------

function isLoopback(nic: SimInterface): boolean {
  return nic.name === 'lo' || nic.addresses.some((a) => a.address === '::1' || a.address.startsWith('127.'));
}

/** oVirt agent `interfaces`: up, non-loopback devices, aliases merged, bare addresses. */
export function ovirtInterfaces(guest: SimGuest): { name: string; hw: string; inet: string[]; inet6: string[] }[] {
  const byName = new Map<string, { name: string; hw: string; inet: string[]; inet6: string[] }>();
  for (const nic of guest.interfaces) {
    if (nic.up === false || isLoopback(nic)) continue;
    const name = nic.ovirtName ?? nic.name.split(':')[0]!;
    let entry = byName.get(name);
    if (!entry) {
      entry = { name, hw: nic.hw ?? '', inet: [], inet6: [] };
      byName.set(name, entry);
    }
    for (const a of nic.addresses) (a.type === 'ipv4' ? entry.inet : entry.inet6).push(a.address);
  }
  return [...byName.values()];
}

/**
 * qemu-ga `guest-network-get-interfaces` elements, with the real agent's member order and
 * rules: statistics only for a device that has addresses and is not a label alias; no
 * `ip-addresses` when there are none; `hardware-address` last and only when known.
 */
export function qgaInterfaces(guest: SimGuest, counters: number): Record<string, unknown>[] {
  return guest.interfaces.map((nic, i) => {
    const hasAddresses = nic.addresses.length > 0 && nic.up !== false;
    const out: Record<string, unknown> = { name: nic.name };
    if (hasAddresses) {
      out['ip-addresses'] = nic.addresses.map((a) => ({
        'ip-address-type': a.type,
        'ip-address': a.address,
        prefix: a.prefix,
      }));
      if (!nic.name.includes(':')) {
        const packets = counters * (i + 1);
        out.statistics = {
          'tx-packets': packets,
          'tx-errs': 0,
          'rx-bytes': packets * 1200,
          'rx-dropped': 0,
          'rx-packets': packets * 2,
          'rx-errs': 0,
          'tx-bytes': packets * 400,
          'tx-dropped': 0,
        };
      }
    }
    if (nic.hw !== undefined) out['hardware-address'] = nic.hw;
    return out;
  });
}
