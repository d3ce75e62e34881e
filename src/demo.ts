#!/usr/bin/env node
// `npm run demo`: the daemon on a temporary channels directory populated with simulated guests
// from fixtures/demo/ (oVirt-agent and qemu-ga guests, Linux and Windows), so a newcomer with no
// VMs sees real-looking netIfaces in wscat within seconds. Every argument goes to the daemon
// (e.g. `npm run demo -- --listen 127.0.0.1:0`). Ctrl-C / SIGTERM stops the daemon and removes
// the temporary directory.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { GuestSimulator } from './sim/simulator.js';
import { loadGuestDir } from './sim/guestFile.js';
import type { SimGuest } from './sim/guest.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const FIXTURES = path.resolve(here, '../fixtures/demo');
const DAEMON = path.join(here, 'main.js');

function banner(url: string, dir: string, guests: SimGuest[]): string {
  const req = (id: number, method: string, params?: unknown): string =>
    JSON.stringify({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) });
  const changing = guests.filter((g) => g.changeEveryMs).map((g) => `${g.hostName} (${g.vmId}) changes an address every ${g.changeEveryMs! / 1000} s`);
  const lines = [
    '',
    `vdsm-agentd demo: ${guests.length} simulated guests in ${dir}`,
    ...guests.map((g) => `  ${g.vmId}  ${g.hostName.padEnd(10)} ${g.agents.map((a) => (a === 'qemu' ? 'qemu-ga' : 'oVirt agent')).join(' + ')}`),
    '',
    `listening on ${url}`,
    '',
    'Try it with wscat (one request per line):',
    `  npx wscat -c ${url}`,
    `  > ${req(1, 'Host.getAllVmStats')}`,
    `  > ${req(2, 'VM.getStats', { vmID: guests[0]?.vmId })}`,
    `  > ${req(3, 'Host.subscribeEvents')}`,
    ...(changing.length ? [`    (events follow: ${changing.join('; ')})`] : []),
    'or one shot:',
    `  npx wscat -c ${url} -x '${req(1, 'Host.getAllVmStats')}'`,
    'or the client:',
    `  node dist/client/cli.js --url ${url} Host getAllVmStats`,
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

  // The user's flags come last so they win, except that the channels directory is ours.
  const daemon = spawn(process.execPath, [DAEMON, ...process.argv.slice(2), '--channels-dir', dir], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let announced = false;
  let pending = '';
  daemon.stdout.setEncoding('utf8');
  daemon.stdout.on('data', (chunk: string) => {
    process.stdout.write(chunk);
    if (announced) return;
    pending += chunk;
    for (const text of pending.split('\n')) {
      const m = /"msg":"listening on ([^"]+)"/.exec(text);
      if (m) {
        announced = true;
        process.stdout.write(banner(m[1]!, dir, guests));
        pending = '';
        return;
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
