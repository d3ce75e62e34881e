// The client's views for people: what the daemon answered (VmStats, routes, events) turned into
// text that fits an 80-column terminal. Pure: values in, text out; cli.ts does the I/O.
import type { GuestNetworkDeviceInfo, Route, VmStats } from '../wire.js';
import { renderTable } from './table.js';

/** A host vNIC as VDSM's VmStats `network` field reports it (keyed by device name). */
interface HostVnic {
  name?: string;
  macAddr?: string;
  model?: string;
  bridge?: string;
  rx?: number | string;
  tx?: number | string;
}

/**
 * VmStats as this client reads it, from this daemon or an older one: `netIfaces` may be null (not
 * reported yet) and `network` (the host's vNICs, from libvirt) absent or `{}` when not known.
 */
export type VmStatsView = Omit<VmStats, 'netIfaces' | 'network'> & {
  netIfaces: GuestNetworkDeviceInfo[] | null;
  network?: Record<string, HostVnic>;
};

const WIDTH = 80;

/** IDs in the `vms` table are cut to this many characters (as git and docker do); `nics` takes any unique prefix. */
const SHORT_ID = 8;

/** `vms`: one line per VM (IPv4s one per line, so a table of many addresses still fits). */
export function vmsTable(vms: readonly VmStatsView[]): string {
  if (vms.length === 0) return 'no VMs known to the daemon\n';
  const sorted = [...vms].sort((a, b) => a.guestName.localeCompare(b.guestName) || a.vmId.localeCompare(b.vmId));
  const rows = sorted.map((v) => {
    const ips = v.guestIPs ? v.guestIPs.split(' ').filter(Boolean) : [];
    return {
      cells: [v.vmId.slice(0, SHORT_ID), v.guestName || '-', v.status, v.guestAgentStatus, ips[0] ?? '-'],
      // Further addresses under the first, in the IPV4 column.
      extra: ips.slice(1),
    };
  });
  const columns = [
    { header: 'ID' },
    { header: 'NAME', flex: true, min: 8 },
    { header: 'STATUS' },
    { header: 'AGENT' },
    { header: 'IPV4' },
  ];
  return renderTable(
    columns,
    rows.flatMap((r) => [{ cells: r.cells }, ...r.extra.map((ip) => ({ cells: ['', '', '', '', ip] }))]),
    WIDTH,
  );
}

const ZERO_MAC = /^(00:)+00$/;

/** One row of `nics`: a guest interface, a host vNIC, or both joined by MAC. */
interface NicRow {
  mac: string;
  guest: GuestNetworkDeviceInfo | null;
  host: (HostVnic & { device: string }) | null;
  /** Why the two sides do not match, for people; null when they do (or the host side is unknown). */
  problem: string | null;
}

/**
 * Joins the guest's interfaces (netIfaces) with the host's vNICs (network) by MAC. A guest MAC
 * that matches no vNIC and a vNIC the guest does not report are marked; loopback and interfaces
 * without a MAC are not (no vNIC is expected for them). Without a `network` field the host side
 * is unknown and nothing is marked.
 */
function joinNics(stats: VmStatsView): { rows: NicRow[]; hostKnown: boolean } {
  // `{}` is what the daemon sends when it has no libvirt data for the VM: unknown, not "no vNICs".
  const hostKnown = Object.keys(stats.network ?? {}).length > 0;
  const vnics = Object.entries(stats.network ?? {}).map(([device, v]) => ({ ...v, device: v.name ?? device }));
  const byMac = new Map(vnics.flatMap((v) => (v.macAddr ? [[v.macAddr.toLowerCase(), v] as const] : [])));
  const used = new Set<string>();
  const rows: NicRow[] = [];
  for (const g of stats.netIfaces ?? []) {
    const mac = g.hw.toLowerCase();
    const host = mac ? (byMac.get(mac) ?? null) : null;
    if (host) used.add(mac);
    const expectsVnic = mac !== '' && !ZERO_MAC.test(mac) && g.name !== 'lo';
    rows.push({
      mac,
      guest: g,
      host,
      problem: hostKnown && expectsVnic && !host ? 'guest MAC matches no vNIC of this VM' : null,
    });
  }
  for (const v of vnics) {
    const mac = (v.macAddr ?? '').toLowerCase();
    if (mac && used.has(mac)) continue;
    rows.push({ mac, guest: null, host: v, problem: 'vNIC not reported by the guest' });
  }
  return { rows, hostKnown };
}

/** Bytes for people: 0 B, 1.5 KiB, 12 MiB. */
function humanBytes(value: number | string | undefined): string {
  const n = typeof value === 'string' ? Number(value) : value;
  if (n === undefined || !Number.isFinite(n) || n < 0) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[u]}`;
}

/** Packs words into lines of at most `max` characters (a word longer than that gets its own line). */
function pack(words: readonly string[], max: number): string[] {
  const lines: string[] = [];
  let cur = '';
  for (const w of words) {
    if (cur && cur.length + 2 + w.length > max) {
      lines.push(cur);
      cur = w;
    } else cur = cur ? `${cur}, ${w}` : w;
  }
  if (cur) lines.push(cur);
  return lines;
}

/** `nics VMID`: guest interfaces beside the host's vNICs, addresses under each. */
export function nicsTable(stats: VmStatsView): string {
  const { rows, hostKnown } = joinNics(stats);
  const head = `VM ${stats.vmId}${stats.guestName ? ` (${stats.guestName})` : ''}, guest agent ${stats.guestAgentStatus}\n`;
  if (rows.length === 0) {
    const why = stats.netIfaces?.length ? 'no interfaces' : 'the guest agent has not reported interfaces';
    return `${head}${why}${hostKnown ? '' : '; host vNICs not known'}\n`;
  }
  const columns = [
    { header: 'MAC' },
    { header: 'GUEST', flex: true, min: 5 },
    { header: 'HOST', flex: true, min: 5 },
    { header: 'BRIDGE', flex: true, min: 6 },
    { header: 'MODEL', flex: true, min: 5 },
    { header: 'RX' },
    { header: 'TX' },
  ];
  const table = rows.map((r) => {
    const addrs = r.guest ? [...r.guest.inet, ...r.guest.inet6] : [];
    const detail = pack(addrs, WIDTH - 2);
    if (r.problem) detail.push(`! ${r.problem}`);
    return {
      cells: [
        r.mac || '-',
        r.guest?.name ?? '-',
        r.host?.device ?? '-',
        r.host?.bridge || '-',
        r.host?.model || '-',
        r.host ? humanBytes(r.host.rx) : '-',
        r.host ? humanBytes(r.host.tx) : '-',
      ],
      detail,
    };
  });
  const foot = hostKnown ? '' : 'host vNICs: not known (no "network" data for this VM; is it run by libvirt?)\n';
  return head + renderTable(columns, table, WIDTH) + foot;
}

/** `route ADDR`, in the manner of `ip route get`. */
export function routeText(address: string, r: Route): string {
  const parts = [address];
  if (r.gateway) parts.push(`via ${r.gateway}`);
  parts.push(`dev ${r.device}`);
  if (r.source) parts.push(`src ${r.source}`);
  parts.push(`table ${r.table}`, `type ${r.type}`, `(looked up over ${r.via})`);
  return parts.join(' ') + '\n';
}

/**
 * `events`: one line per event: local time, the event's name, its params as compact JSON. VDSM's
 * per-VM events (`|virt|VM_status|<vmId>`) nest the fields under the id the name already shows,
 * so that level (and `notify_time`) is left out.
 */
export function eventLine(method: string, params: unknown, at: Date): string {
  const time = at.toISOString().slice(11, 23);
  let shown = params;
  if (params && typeof params === 'object' && !Array.isArray(params)) {
    const p = params as Record<string, unknown>;
    const id = method.slice(method.lastIndexOf('|') + 1);
    const inner = id ? p[id] : undefined;
    shown =
      inner && typeof inner === 'object' && !Array.isArray(inner)
        ? omit(inner as Record<string, unknown>, 'vmId')
        : omit(p, 'notify_time');
  }
  return `${time} ${method} ${JSON.stringify(shown)}\n`;
}

function omit(params: Record<string, unknown>, key: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(params)) if (k !== key) out[k] = v;
  return out;
}
