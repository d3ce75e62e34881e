// Reaches a daemon that listens on 127.0.0.1 inside a network namespace from the test process in
// the root namespace, without adding any link or route to the root namespace: a small relay runs
// inside the namespace and listens on a UNIX socket in the filesystem (which no namespace fences),
// and the client connects with a ws+unix:// URL. Relays are killed with their namespace.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { atFileEnd } from './fileCleanup.js';

const RELAY = `
const net = require('node:net');
const [sockPath, port] = process.argv.slice(1);
net.createServer((c) => {
  const u = net.connect(Number(port), '127.0.0.1');
  c.pipe(u); u.pipe(c);
  const end = () => { c.destroy(); u.destroy(); };
  c.on('error', end); u.on('error', end); c.on('close', end); u.on('close', end);
}).listen(sockPath, () => console.log('relay ready'));
`;

const dirs: string[] = [];
// Registered at import, during collection: a hook added later from inside beforeAll does not run.
atFileEnd(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Returns a ws+unix:// URL that reaches ws://127.0.0.1:PORT inside `ns`. */
export async function relayIntoNetns(ns: string, daemonUrl: string): Promise<string> {
  const port = new URL(daemonUrl).port;
  const dir = mkdtempSync(path.join(tmpdir(), 'vdsm-relay-'));
  dirs.push(dir);
  const sock = path.join(dir, 'relay.sock');
  const proc = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', RELAY, sock, port], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    proc.stdout.once('data', () => resolve());
    proc.once('exit', (code) => reject(new Error(`relay exited with ${code}`)));
  });
  return `ws+unix://${sock}:/`;
}
