// A routing lab in network namespaces: HOST plays the hypervisor (the daemon runs there), PEER
// only holds the other ends of the veth pairs so the links have carrier. Nothing touches the root
// namespace; both namespaces are deleted after the test file (helpers/netns.ts).
import { createNetns, deleteNetns, ipn, sh } from './netns.js';

export interface RouteLab {
  host: string;
  peer: string;
}

/** A destination and what the table built below must answer for it. */
export interface Expectation {
  ip: string;
  device?: string;
  gateway?: string;
  table?: number;
  type?: string;
  /** errno name when the kernel must refuse (error 1201). */
  errno?: string;
  why: string;
}

function veth(lab: RouteLab, hostEnd: string, peerEnd: string): void {
  ipn(lab.host, 'link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', peerEnd, 'netns', lab.peer);
  // No duplicate address detection: addresses are usable at once, and link-local too.
  sh('ip', ['netns', 'exec', lab.host, 'sysctl', '-qw', `net.ipv6.conf.${hostEnd}.accept_dad=0`]);
  sh('ip', ['netns', 'exec', lab.peer, 'sysctl', '-qw', `net.ipv6.conf.${peerEnd}.accept_dad=0`]);
}

export function up(lab: RouteLab, dev: string): void {
  ipn(lab.host, 'link', 'set', dev, 'up');
}

/**
 * h0: 10.10.0.1/24 + 2001:db8:10::1/64 (directly connected; default route via 10.10.0.254)
 * h1: 10.20.0.1/24 + 2001:db8:20::1/64; 10.30/16 via 10.20.0.2; 2001:db8:30::/48 via 2001:db8:20::2
 * rule: to 10.40/16 -> table 100 (10.40/16 via 10.20.0.3 dev h1)
 * unreachable 10.50/16, blackhole 10.60/16, prohibit 10.70/16 (and 2001:db8:50/60/70::/48);
 * no IPv6 default (ENETUNREACH)
 * r0: 10.80.0.1/24, an interface the tests rename and remove
 * h0 and h1 both carry link-local IPv6 addresses (fe80::/64 on two links).
 */
export function buildRouteLab(): RouteLab {
  const lab = { host: createNetns('vrh'), peer: createNetns('vrp') };
  const { host } = lab;
  veth(lab, 'h0', 'p0');
  veth(lab, 'h1', 'p1');
  veth(lab, 'r0', 'q0');
  ipn(host, 'addr', 'add', '10.10.0.1/24', 'dev', 'h0');
  ipn(host, 'addr', 'add', '2001:db8:10::1/64', 'dev', 'h0', 'nodad');
  ipn(host, 'addr', 'add', '10.20.0.1/24', 'dev', 'h1');
  ipn(host, 'addr', 'add', '2001:db8:20::1/64', 'dev', 'h1', 'nodad');
  ipn(host, 'addr', 'add', '10.80.0.1/24', 'dev', 'r0');
  for (const d of ['h0', 'h1', 'r0']) up(lab, d);
  for (const d of ['p0', 'p1', 'q0']) ipn(lab.peer, 'link', 'set', d, 'up');
  ipn(host, 'route', 'add', 'default', 'via', '10.10.0.254', 'dev', 'h0');
  ipn(host, 'route', 'add', '10.30.0.0/16', 'via', '10.20.0.2', 'dev', 'h1');
  ipn(host, '-6', 'route', 'add', '2001:db8:30::/48', 'via', '2001:db8:20::2', 'dev', 'h1');
  ipn(host, 'route', 'add', '10.40.0.0/16', 'via', '10.20.0.3', 'dev', 'h1', 'table', '100');
  ipn(host, 'rule', 'add', 'to', '10.40.0.0/16', 'table', '100', 'pref', '1000');
  ipn(host, 'route', 'add', 'unreachable', '10.50.0.0/16');
  ipn(host, 'route', 'add', 'blackhole', '10.60.0.0/16');
  ipn(host, 'route', 'add', 'prohibit', '10.70.0.0/16');
  ipn(host, '-6', 'route', 'add', 'unreachable', '2001:db8:50::/48');
  ipn(host, '-6', 'route', 'add', 'blackhole', '2001:db8:60::/48');
  ipn(host, '-6', 'route', 'add', 'prohibit', '2001:db8:70::/48');
  return lab;
}

/**
 * Deletes both namespaces (killing what runs inside). Call it from the test's own afterAll: the
 * netns helper registers its cleanup lazily, which does not take when called from a beforeAll.
 */
export function destroyRouteLab(lab: RouteLab | undefined): void {
  if (!lab) return;
  deleteNetns(lab.host);
  deleteNetns(lab.peer);
}

/** What the table above must answer, derived from how it was built. */
export const LAB_EXPECTATIONS: readonly Expectation[] = [
  { ip: '10.10.0.5', device: 'h0', table: 254, type: 'unicast', why: 'directly connected subnet' },
  { ip: '10.30.1.1', device: 'h1', gateway: '10.20.0.2', table: 254, why: 'route via a gateway on a second device' },
  { ip: '198.51.100.7', device: 'h0', gateway: '10.10.0.254', table: 254, why: 'default route' },
  { ip: '2001:db8:10::5', device: 'h0', table: 254, why: 'IPv6 subnet' },
  { ip: '2001:db8:30::9', device: 'h1', gateway: '2001:db8:20::2', table: 254, why: 'IPv6 route via a gateway' },
  { ip: '10.40.1.1', device: 'h1', gateway: '10.20.0.3', table: 100, why: 'policy rule to table 100' },
  { ip: '10.10.0.1', device: 'lo', table: 255, type: 'local', why: "the host's own address" },
  { ip: '2001:db8:10::1', device: 'lo', type: 'local', why: "the host's own IPv6 address" },
  { ip: '::ffff:10.10.0.5', device: 'h0', table: 254, why: 'IPv4-mapped IPv6, looked up as IPv4' },
  { ip: 'fe80::1%h0', device: 'h0', why: 'link-local with zone h0' },
  { ip: 'fe80::1%h1', device: 'h1', why: 'link-local with zone h1' },
  { ip: '10.50.0.1', errno: 'EHOSTUNREACH', why: 'unreachable route' },
  { ip: '10.60.0.1', errno: 'EINVAL', why: 'blackhole route' },
  { ip: '10.70.0.1', errno: 'EACCES', why: 'prohibit route' },
  { ip: '2001:db8:99::1', errno: 'ENETUNREACH', why: 'no IPv6 route at all' },
  { ip: '2001:db8:50::1', errno: 'EHOSTUNREACH', why: 'IPv6 unreachable route' },
  { ip: '2001:db8:60::1', errno: 'EINVAL', why: 'IPv6 blackhole route' },
  { ip: '2001:db8:70::1', errno: 'EACCES', why: 'IPv6 prohibit route' },
];

/** `ip -j route get` as an administrator would run it in the lab's host namespace. */
export function ipRouteGet(
  lab: RouteLab,
  address: string,
): { ok: true; route: Record<string, unknown> } | { ok: false; stderr: string } {
  const pct = address.indexOf('%');
  const args = pct === -1 ? [address] : [address.slice(0, pct), 'oif', address.slice(pct + 1)];
  try {
    const out = sh('ip', ['-n', lab.host, '-j', 'route', 'get', ...args]);
    return { ok: true, route: (JSON.parse(out) as Record<string, unknown>[])[0]! };
  } catch (err) {
    return { ok: false, stderr: String((err as { stderr?: unknown }).stderr ?? err) };
  }
}
