// Idle cost of watching a channels directory that also holds 10,000 files that are not channel
// sockets (left-overs, another tool's files): daemon CPU seconds per minute of wall time while
// nothing changes, next to the same daemon watching an empty directory. With
// BENCH_BASELINE_DAEMON=/path/to/dist/main.js the older build runs at the same time on its own
// pair of directories (the "before" column), so a busy machine weighs on both alike.
// BENCH_IDLE_SECONDS (default 60), BENCH_DIR_FILES (default 10000).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startDaemon, type BenchDaemon } from './daemonProcess.js';

const IDLE_SECONDS = Number(process.env.BENCH_IDLE_SECONDS ?? 60);
const FILES = Number(process.env.BENCH_DIR_FILES ?? 10_000);
const BASELINE = process.env.BENCH_BASELINE_DAEMON;
const CURRENT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../dist/main.js');
const CLK_TCK = 100;

function cpuSeconds(pid: number): number {
  const f = (readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1] ?? '').split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK; // utime + stime
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function run(): Promise<void> {
  const dirs: string[] = [];
  const daemons: { label: string; files: number; d: BenchDaemon }[] = [];
  try {
    const builds: [string, string][] = BASELINE
      ? [
          ['before', path.resolve(BASELINE)],
          ['after', CURRENT],
        ]
      : [['after', CURRENT]];
    for (const [label, main] of builds) {
      for (const files of [0, FILES]) {
        const dir = mkdtempSync(path.join(os.tmpdir(), 'vdsm-agentd-bench-dir-'));
        dirs.push(dir);
        for (let i = 0; i < files; i++) writeFileSync(path.join(dir, `not-a-channel-${i}.txt`), '');
        const d = await startDaemon(
          ['--listen', '127.0.0.1:0', '--channels-dir', dir, '--qga-via', 'direct'],
          {},
          [],
          main,
        );
        daemons.push({ label, files, d });
      }
    }
    await sleep(5000); // start-up listing done
    const start = daemons.map(({ d }) => cpuSeconds(d.pid));
    const t0 = Date.now();
    await sleep(IDLE_SECONDS * 1000);
    const minutes = (Date.now() - t0) / 60_000;
    const perMin = daemons.map(({ d }, i) => (cpuSeconds(d.pid) - start[i]!) / minutes);
    const rows: Record<string, Record<string, string>> = {};
    for (const [i, { label, files }] of daemons.entries()) {
      const row = (rows[files === 0 ? 'empty directory' : `${files} other files`] ??= {});
      row[`${label}: CPU s/min`] = perMin[i]!.toFixed(3);
    }
    console.log(`idle daemons watching a channels directory, ${IDLE_SECONDS} s, all at once`);
    console.table(rows);
  } finally {
    await Promise.all(daemons.map(({ d }) => d.stop()));
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  }
}
