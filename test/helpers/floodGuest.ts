// A guest agent in its own process that writes heartbeats to the daemon as fast as the socket
// takes them, so the test's own event loop stays free to measure the daemon. Killed after the
// test file.
import { spawn, type ChildProcess } from 'node:child_process';
import { atFileEnd } from './fileCleanup.js';

const procs = new Set<ChildProcess>();
// Registered at import: vitest ignores hooks added later (from inside beforeAll), and cleanup
// must run even when a file's set-up fails.
atFileEnd(() => {
  for (const p of procs) p.kill('SIGKILL');
});

const SCRIPT = `
const net = require('node:net');
const batch = Buffer.from('{"__name__":"heartbeat","free-ram":"1","apiVersion":3}\\n'.repeat(2000));
let sent = 0;
net.createServer((s) => {
  s.on('error', () => {});
  const pump = () => { while (s.write(batch)) sent += batch.length; };
  s.on('drain', pump);
  pump();
}).listen(process.argv[1], () => process.stdout.write('ready\\n'));
setInterval(() => process.stdout.write('sent ' + sent + '\\n'), 500);
`;

export interface FloodGuest {
  proc: ChildProcess;
  /** Bytes the flooder has handed to its socket so far (last report). */
  sent: () => number;
  stop: () => void;
}

export function startFloodGuest(socketPath: string): Promise<FloodGuest> {
  const proc = spawn(process.execPath, ['-e', SCRIPT, socketPath], { stdio: ['ignore', 'pipe', 'inherit'] });
  procs.add(proc);
  let sent = 0;
  return new Promise((resolve, reject) => {
    proc.stdout.on('data', (chunk: Buffer) => {
      for (const line of chunk.toString().split('\n')) {
        if (line === 'ready')
          resolve({ proc, sent: () => sent, stop: () => (proc.kill('SIGKILL'), procs.delete(proc)) });
        const m = /^sent (\d+)$/.exec(line);
        if (m) sent = Number(m[1]);
      }
    });
    proc.once('exit', (code) => reject(new Error(`flood guest exited (${code})`)));
  });
}

/** Resident memory of a process, in bytes (Linux). */
export async function rssBytes(pid: number): Promise<number> {
  const { readFile } = await import('node:fs/promises');
  const m = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}
