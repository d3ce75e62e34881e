// `npm run demo` as a newcomer runs it: the daemon on simulated guests from fixtures/demo shows
// real-looking netIfaces (Windows adapter names, IPv6 without zones, several NICs) within
// seconds, and SIGTERM stops everything and removes the temporary channels directory.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RpcClient } from '../src/client/rpcClient.js';
import type { VmStats } from '../src/wire.js';
import { ROOT } from './helpers/daemon.js';
import { eventually, withTimeout } from './helpers/scriptedGuest.js';

describe('npm run demo', () => {
  const proc = spawn(process.execPath, [path.join(ROOT, 'dist/demo.js'), '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  afterAll(() => {
    if (proc.exitCode === null) proc.kill('SIGKILL');
  });

  it('serves the fixture guests with their agents data, prints how to try it, and cleans up on SIGTERM', async () => {
    await eventually(() => out, (o) => /listening on ws:\/\/127\.0\.0\.1:\d+\n/.test(o), 15_000, 'the demo banner');
    const url = /listening on (ws:\/\/127\.0\.0\.1:\d+)\n/.exec(out)![1]!;
    const dir = /simulated guests in (\S+)/.exec(out)![1]!;
    expect(out).toContain(`npx wscat -c ${url}`);
    expect(existsSync(dir)).toBe(true);

    const c = await RpcClient.connect(url);
    const all = await eventually(
      () => c.call<VmStats[]>('Host.getAllVmStats'),
      (vms) => vms.length === 5 && vms.every((v) => v.netIfaces.length > 0 && v.guestName !== ''),
      15_000,
      'every demo guest reported',
    );
    await c.close();
    const names = all.flatMap((v) => v.netIfaces.map((i) => i.name));
    expect(names).toEqual(expect.arrayContaining(['Red Hat VirtIO Ethernet Adapter #2', 'Ethernet 2', 'ens3', 'eth0']));
    const inet6 = all.flatMap((v) => v.netIfaces.flatMap((i) => i.inet6));
    expect(inet6).toContain('fe80::b1c4:2a9e:77d0:6f12'); // the guest said ...%12
    expect(inet6.every((a) => !a.includes('%'))).toBe(true);
    expect(all.every((v) => v.netIfaces.length >= 2)).toBe(true);

    proc.kill('SIGTERM');
    expect(await withTimeout(exited, 15_000, 'the demo to exit')).toBe(0);
    expect(existsSync(dir)).toBe(false);
  });
});
