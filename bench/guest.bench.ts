// Guest input costs, side by side in one run:
// 1. parsing: our parseOvirtLine / mapQgaInterfaces (decode + JSON + sanitise) vs bare JSON.parse
//    on the same captured lines (what sanitising costs);
// 2. a flooding guest: Host.ping2 latency and daemon CPU/RSS with the guest idle vs flooding.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RpcClient } from '../src/client/rpcClient.js';
import { parseOvirtLine } from '../src/guest/ovirtAgent.js';
import { mapQgaInterfaces } from '../src/guest/qemuAgent.js';
import { startDaemon } from './daemonProcess.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function rate(fn: () => void, ms = 400): number {
  for (let i = 0; i < 2000; i++) fn();
  let n = 0;
  const end = performance.now() + ms;
  while (performance.now() < end) {
    for (let i = 0; i < 200; i++) fn();
    n += 200;
  }
  return n / (ms / 1000);
}

function parsing(): void {
  const line = readFileSync(path.join(ROOT, 'fixtures/ovirt/linux-session.jsonl'), 'utf8')
    .split('\n')
    .find((l) => l.includes('network-interfaces'))!;
  const bytes = Buffer.from(line);
  const qga = readFileSync(path.join(ROOT, 'fixtures/qga/linux-interfaces.json'));
  const big = Buffer.from(
    JSON.stringify({
      __name__: 'network-interfaces',
      interfaces: Array.from({ length: 128 }, (_, i) => ({
        name: `eth${i}`,
        hw: '52:54:00:00:00:01',
        inet: [`10.0.${i}.1`],
        inet6: [`fd00::${i.toString(16)}`],
      })),
    }),
  );
  const rows = [
    {
      what: 'oVirt network-interfaces (2 ifaces)',
      ours: rate(() => parseOvirtLine(bytes)),
      bare: rate(() => JSON.parse(bytes.toString())),
    },
    {
      what: 'oVirt network-interfaces (128 ifaces)',
      ours: rate(() => parseOvirtLine(big)),
      bare: rate(() => JSON.parse(big.toString())),
    },
    {
      what: 'qemu-ga interfaces reply (captured)',
      ours: rate(() => mapQgaInterfaces((JSON.parse(qga.toString()) as { return: unknown }).return, new Map())),
      bare: rate(() => JSON.parse(qga.toString())),
    },
  ];
  console.table(
    rows.map((r) => ({
      what: r.what,
      'ours msg/s': Math.round(r.ours),
      'JSON.parse msg/s': Math.round(r.bare),
      'ours/bare': (r.ours / r.bare).toFixed(2),
    })),
  );
}

function cpuTicks(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime
}
const rssMiB = (pid: number): number =>
  Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

async function pingWindow(c: RpcClient, pid: number, ms: number): Promise<Record<string, string | number>> {
  const lat: number[] = [];
  const t0 = cpuTicks(pid);
  const end = performance.now() + ms;
  while (performance.now() < end) {
    const s = performance.now();
    await c.call('Host.ping2');
    lat.push(performance.now() - s);
    await new Promise((r) => setTimeout(r, 5));
  }
  lat.sort((a, b) => a - b);
  const cpu = ((cpuTicks(pid) - t0) / 100 / (ms / 1000)) * 100;
  return {
    'ping2 p50 ms': lat[lat.length >> 1]!.toFixed(2),
    'ping2 p99 ms': lat[Math.floor(lat.length * 0.99)]!.toFixed(2),
    'daemon CPU %': cpu.toFixed(0),
    'daemon RSS MiB': rssMiB(pid).toFixed(0),
  };
}

async function flood(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vat-bench-'));
  const d = await startDaemon(['--listen', '127.0.0.1:0', '--channels-dir', dir]);
  const script = `const net=require('node:net');const b=Buffer.from('{"__name__":"heartbeat","free-ram":"1","apiVersion":3}\\n'.repeat(2000));
net.createServer(s=>{s.on('error',()=>{});const p=()=>{while(s.write(b)){}};s.on('drain',p);p();}).listen(process.argv[1],()=>console.log('ready'));`;
  try {
    const c = await RpcClient.connect(d.url);
    const idle = await pingWindow(c, d.pid, 3000);
    const g = spawn(process.execPath, ['-e', script, path.join(dir, `${randomUUID()}.ovirt-guest-agent.0`)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise((r) => g.stdout.once('data', r));
    await new Promise((r) => setTimeout(r, 1000));
    const flooding = await pingWindow(c, d.pid, 5000);
    g.kill('SIGKILL');
    console.table([
      { guest: 'idle (no guests)', ...idle },
      { guest: 'one guest flooding heartbeats', ...flooding },
    ]);
    await c.close();
  } finally {
    await d.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function run(): Promise<void> {
  parsing();
  await flood();
}
