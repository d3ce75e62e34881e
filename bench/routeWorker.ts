// Runs inside the benchmark's namespace (started by route.bench.ts): measures Host.getRoute through
// the daemon on the netlink path and on the ip path, and the bare netlink package doing the same
// lookups without the daemon. Prints one JSON line of figures for the orchestrator's table.
import { createRtNetlink } from 'netlink';
import { RpcClient } from '../src/client/rpcClient.js';
import { parseRouteTarget, type RouteTarget } from '../src/route/ipLiteral.js';

export interface Figures {
  what: string;
  mode: 'sequential' | 'parallel';
  n: number;
  perSecond: number;
  p50ms: number | null;
  p99ms: number | null;
}

const [netlinkUrl, ipUrl, destList] = process.argv.slice(2) as [string, string, string];
const destinations = destList.split(',');
const PARALLEL = 32;

async function measure(what: string, n: number, once: (dest: string) => Promise<unknown>): Promise<Figures[]> {
  for (let i = 0; i < Math.min(200, n); i++) await once(destinations[i % destinations.length]!); // warm-up
  const lat: number[] = [];
  let t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const s = performance.now();
    await once(destinations[i % destinations.length]!);
    lat.push(performance.now() - s);
  }
  const seq = n / ((performance.now() - t0) / 1000);
  lat.sort((a, b) => a - b);
  // Parallel: PARALLEL lookups kept in flight at all times.
  const total = n * 2;
  let next = 0;
  t0 = performance.now();
  await Promise.all(
    Array.from({ length: PARALLEL }, async () => {
      while (next < total) await once(destinations[next++ % destinations.length]!);
    }),
  );
  const par = total / ((performance.now() - t0) / 1000);
  return [
    { what, mode: 'sequential', n, perSecond: seq, p50ms: lat[n >> 1]!, p99ms: lat[Math.floor(n * 0.99)]! },
    { what, mode: 'parallel', n: total, perSecond: par, p50ms: null, p99ms: null },
  ];
}

const figures: Figures[] = [];
for (const [what, url, n] of [
  ['daemon, netlink path', netlinkUrl, 5000],
  ['daemon, ip fallback', ipUrl, 400],
] as const) {
  const c = await RpcClient.connect(url);
  figures.push(...(await measure(what, n, (ip) => c.call('Host.getRoute', { ip }))));
  await c.close();
}

// The bare package: RTM_GETROUTE then RTM_GETLINK for the name, as a plain loop would do it.
const sock = createRtNetlink();
const targets = new Map<string, RouteTarget>(
  destinations.map((d) => [d, (parseRouteTarget(d) as { ok: true; target: RouteTarget }).target]),
);
const bare = async (d: string): Promise<string | undefined> => {
  const t = targets.get(d)!;
  const [r] = await sock.getRoute(
    { family: t.family === 4 ? 2 : 10, dstLen: t.family === 4 ? 32 : 128, flags: { lookupTable: true } },
    { dst: Buffer.from(t.bytes) },
  );
  const [link] = await sock.getLink({ index: r!.attrs.oif! });
  return link!.attrs.ifname;
};
figures.push(...(await measure('bare netlink package, no daemon', 5000, bare)));
sock.socket.close();
console.log(JSON.stringify(figures));
