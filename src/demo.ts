#!/usr/bin/env node
// `npm run demo`: the daemon on a temporary channels directory populated with simulated guests
// from fixtures/demo/ (oVirt-agent and qemu-ga guests, Linux and Windows), so a newcomer with no
// VMs sees real-looking netIfaces in wscat within seconds. Every argument goes to the daemon
// (e.g. `npm run demo -- --listen 127.0.0.1:0`), except that the demo's guests are reached
// directly (--qga-via direct: the machine's own libvirtd and VMs stay out of it). Ctrl-C /
// SIGTERM stops the daemon and removes the temporary directory.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { GuestSimulator } from './sim/simulator.js';
import { loadGuestDir } from './sim/guestFile.js';
import type { SimGuest } from './sim/guest.js';
import { loadConfig } from './config.js';
import { LEVEL_VALUES, resolveFormat, textFormatter, type LogLevel } from './log.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const FIXTURES = path.resolve(here, '../fixtures/demo');
const DAEMON = path.join(here, 'main.js');

function banner(url: string, dir: string, guests: SimGuest[]): string {
  const req = (id: number, method: string, params?: unknown): string =>
    JSON.stringify({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) });
  const changing = guests
    .filter((g) => g.changeEveryMs)
    .map((g) => `${g.hostName} (${g.vmId}) changes an address every ${g.changeEveryMs! / 1000} s`);
  const lines = [
    '',
    `vdsm-agentd demo: ${guests.length} simulated guests in ${dir}`,
    ...guests.map(
      (g) =>
        `  ${g.vmId}  ${g.hostName.padEnd(10)} ${g.agents.map((a) => (a === 'qemu' ? 'qemu-ga' : 'oVirt agent')).join(' + ')}`,
    ),
    '',
    `listening on ${url}`,
    '',
    'Try it with wscat on a terminal (one request per line):',
    `  npx wscat -c ${url}`,
    `  > ${req(1, 'Host.getAllVmStats')}`,
    `  > ${req(2, 'VM.getStats', { vmID: guests[0]?.vmId })}`,
    `  > ${req(3, 'Host.subscribeEvents')}`,
    ...(changing.length ? [`    (events follow: ${changing.join('; ')})`] : []),
    // wscat quits as soon as its input ends, before any reply, so it is no one-shot tool.
    'or one shot with the client, on a terminal or not:',
    `  node dist/client/cli.js --url ${url} Host getAllVmStats`,
    `  node dist/client/cli.js --url ${url} VM getStats vmID=${guests[0]?.vmId ?? ''}`,
    '',
    'Ctrl-C stops the daemon and removes the temporary directory.',
    '',
  ];
  return lines.join('\n') + '\n';
}

async function main(): Promise<void> {
  const guests = loadGuestDir(FIXTURES);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vdsm-agentd-demo-'));
  const sim = new GuestSimulator({ dir });
  let cleaned = false;
  const cleanup = async (): Promise<void> => {
    if (cleaned) return;
    cleaned = true;
    await sim.close();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await sim.addAll(guests);
  } catch (err) {
    await cleanup();
    throw err;
  }

  // The user's flags first; ours win: the channels directory and direct qemu-ga are the demo's.
  const ours = ['--channels-dir', dir, '--qga-via', 'direct'];
  const userArgs = process.argv.slice(2);
  // The banner waits for the daemon's "listening" line, so the daemon logs at info or more and
  // the demo shows only the lines at the level the user asked for, in the format asked for.
  let shown: { level: LogLevel; text: ((line: string) => string) | null } = { level: 'info', text: null };
  try {
    const c = loadConfig([...userArgs, ...ours]);
    shown = {
      level: c.logLevel,
      text: resolveFormat(c.logFormat) === 'text' ? textFormatter(process.stdout.isTTY) : null,
    };
  } catch {
    /* the daemon reports a bad flag itself, in one line */
  }
  const daemonLevel = LEVEL_VALUES[shown.level] < LEVEL_VALUES.info ? shown.level : 'info';
  const daemon = spawn(
    process.execPath,
    [DAEMON, ...userArgs, ...ours, '--log-level', daemonLevel, '--log-format', 'json'],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  let announced = false;
  let pending = '';
  daemon.stdout.setEncoding('utf8');
  daemon.stdout.on('data', (chunk: string) => {
    pending += chunk;
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) {
      let entry: { level?: LogLevel; msg?: string; url?: string } = {};
      try {
        entry = JSON.parse(line) as typeof entry;
      } catch {
        /* not ours to judge: shown as it is */
      }
      if (LEVEL_VALUES[entry.level ?? 'info'] >= LEVEL_VALUES[shown.level])
        process.stdout.write((shown.text ? shown.text(line) : line) + (shown.text ? '' : '\n'));
      if (!announced && entry.url && entry.msg?.startsWith('listening on')) {
        announced = true;
        process.stdout.write(banner(entry.url, dir, guests));
      }
    }
  });

  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    // On a terminal's Ctrl-C the daemon got SIGINT too; a second signal is harmless to it.
    if (daemon.exitCode === null) daemon.kill(signal === 'SIGINT' ? 'SIGINT' : 'SIGTERM');
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  daemon.on('exit', (code, signal) => {
    void cleanup().then(() => process.exit(stopping ? 0 : (code ?? (signal ? 1 : 0))));
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`vdsm-agentd demo: ${(err as Error).message}\n`);
  process.exit(1);
});
