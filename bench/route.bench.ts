// Host.getRoute: lookups per second and latency through the daemon on the netlink path and on the
// `ip route get` fallback, side by side on the same destinations in one run, with their ratio; and
// the bare netlink package in a loop without the daemon, to show the daemon's own overhead.
// Needs root: it builds a throw-away network namespace (nothing in the root namespace changes),
// runs both daemons and the measuring client inside it, and deletes it at the end.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Figures } from './routeWorker.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DESTINATIONS = ['10.10.0.5', '10.30.1.1', '198.51.100.7', '2001:db8:10::5', '2001:db8:30::9', '10.10.0.1'];

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'inherit'] });
}

function buildNamespace(ns: string): void {
  ip('netns', 'add', ns);
  ip('-n', ns, 'link', 'set', 'lo', 'up');
  // Both veth ends in the one namespace: carrier without a second namespace.
  ip('-n', ns, 'link', 'add', 'h0', 'type', 'veth', 'peer', 'name', 'p0');
  ip('-n', ns, 'link', 'add', 'h1', 'type', 'veth', 'peer', 'name', 'p1');
  ip('-n', ns, 'addr', 'add', '10.10.0.1/24', 'dev', 'h0');
  ip('-n', ns, 'addr', 'add', '2001:db8:10::1/64', 'dev', 'h0', 'nodad');
  ip('-n', ns, 'addr', 'add', '10.20.0.1/24', 'dev', 'h1');
  ip('-n', ns, 'addr', 'add', '2001:db8:20::1/64', 'dev', 'h1', 'nodad');
  for (const d of ['h0', 'p0', 'h1', 'p1']) ip('-n', ns, 'link', 'set', d, 'up');
  ip('-n', ns, 'route', 'add', 'default', 'via', '10.10.0.254', 'dev', 'h0');
  ip('-n', ns, 'route', 'add', '10.30.0.0/16', 'via', '10.20.0.2', 'dev', 'h1');
  ip('-n', ns, '-6', 'route', 'add', '2001:db8:30::/48', 'via', '2001:db8:20::2', 'dev', 'h1');
}

function startDaemonIn(ns: string, mode: string): Promise<{ proc: ChildProcess; url: string }> {
  const proc = spawn(
    'ip',
    [
      'netns',
      'exec',
      ns,
      process.execPath,
      path.join(ROOT, 'dist/main.js'),
      '--listen',
      '127.0.0.1:0',
      '--channels-dir',
      '/nonexistent-vdsm-agentd',
      '--route-lookup',
      mode,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`daemon (${mode}) did not listen within 15 s`)), 15_000);
    let buf = '';
    proc.stdout.on('data', (c: Buffer) => {
      buf += c.toString();
      const m = /"url":"([^"]+)"/.exec(buf);
      if (m) {
        clearTimeout(timer);
        resolve({ proc, url: m[1]! });
      }
    });
    proc.once('exit', (code) => reject(new Error(`daemon (${mode}) exited with ${code} before listening`)));
  });
}

function runWorker(ns: string, args: string[]): Promise<Figures[]> {
  const proc = spawn(
    'ip',
    ['netns', 'exec', ns, process.execPath, '--import', 'tsx', path.join(ROOT, 'bench/routeWorker.ts'), ...args],
    {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  let out = '';
  proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
  return new Promise((resolve, reject) =>
    proc.once('exit', (code) =>
      code === 0
        ? resolve(JSON.parse(out.trim().split('\n').pop()!) as Figures[])
        : reject(new Error(`worker exited with ${code}`)),
    ),
  );
}

export async function run(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.log('route bench skipped: needs root for a network namespace');
    return;
  }
  const ns = `vrb${randomBytes(4).toString('hex')}`;
  const daemons: ChildProcess[] = [];
  try {
    buildNamespace(ns);
    const nl = await startDaemonIn(ns, 'netlink');
    daemons.push(nl.proc);
    const viaIp = await startDaemonIn(ns, 'ip');
    daemons.push(viaIp.proc);
    const figures = await runWorker(ns, [nl.url, viaIp.url, DESTINATIONS.join(',')]);
    console.log(`destinations (round robin): ${DESTINATIONS.join(' ')}; parallel = 32 lookups in flight`);
    console.table(
      figures.map((f) => ({
        what: f.what,
        mode: f.mode,
        lookups: f.n,
        'lookups/s': Math.round(f.perSecond),
        'p50 ms': f.p50ms === null ? '' : f.p50ms.toFixed(3),
        'p99 ms': f.p99ms === null ? '' : f.p99ms.toFixed(3),
      })),
    );
    const get = (what: string, mode: string): Figures =>
      figures.find((f) => f.what.startsWith(what) && f.mode === mode)!;
    for (const mode of ['sequential', 'parallel']) {
      const n = get('daemon, netlink', mode);
      const i = get('daemon, ip', mode);
      const b = get('bare', mode);
      console.log(
        `${mode}: netlink/ip throughput ${(n.perSecond / i.perSecond).toFixed(1)}x` +
          (n.p50ms !== null && i.p50ms !== null ? `, ip/netlink p50 latency ${(i.p50ms / n.p50ms).toFixed(1)}x` : '') +
          `; bare package/daemon netlink throughput ${(b.perSecond / n.perSecond).toFixed(2)}x`,
      );
    }
  } finally {
    await Promise.all(
      daemons.map((d) =>
        d.exitCode !== null
          ? Promise.resolve()
          : new Promise((r) => {
              d.once('exit', r);
              d.kill('SIGTERM');
            }),
      ),
    );
    try {
      ip('netns', 'del', ns);
    } catch {
      /* gone */
    }
  }
}
