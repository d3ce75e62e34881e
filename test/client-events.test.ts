// `vdsm-agent-client events` follows the daemon's events live, one line each, and keeps
// following across a daemon restart on the same port; Ctrl-C ends it with status 0.
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { CLIENT, startDaemon, type RunningDaemon } from './helpers/daemon.js';
import { channelPath, newVmId, tempDir } from './helpers/channelsDir.js';
import { ScriptedGuest } from './helpers/scriptedGuest.js';
import { atFileEnd } from './helpers/fileCleanup.js';

/** The client as a process, its stdout and stderr as lines, with waits on them. */
class Follower {
  readonly out: string[] = [];
  readonly err: string[] = [];
  private waiters: (() => void)[] = [];
  readonly exited: Promise<number | null>;

  constructor(readonly proc: ChildProcess) {
    const lines = (into: string[]) => {
      let buf = '';
      return (c: Buffer): void => {
        buf += c.toString();
        let nl;
        while ((nl = buf.indexOf('\n')) !== -1) {
          into.push(buf.slice(0, nl));
          buf = buf.slice(nl + 1);
        }
        for (const w of this.waiters.splice(0)) w();
      };
    };
    proc.stdout?.on('data', lines(this.out));
    proc.stderr?.on('data', lines(this.err));
    this.exited = new Promise((resolve) => proc.on('exit', (code) => resolve(code)));
  }

  async waitFor(what: string, ok: () => boolean, timeoutMs = 15_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!ok()) {
      if (Date.now() > end)
        throw new Error(`${what} not seen; stdout: ${this.out.join('\n')}; stderr: ${this.err.join('\n')}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 500);
      });
    }
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

describe('vdsm-agent-client events', () => {
  const procs: ChildProcess[] = [];
  atFileEnd(() => {
    for (const p of procs) p.kill('SIGKILL');
  });
  let daemons: RunningDaemon[] = [];
  afterAll(async () => {
    for (const d of daemons) await d.stop();
    daemons = [];
  });

  it('prints one line per event, reconnects after a daemon restart, and stops on Ctrl-C', async () => {
    const dir = tempDir('vat-events-');
    const port = await freePort();
    const args = ['--listen', `127.0.0.1:${port}`, '--channels-dir', dir, '--qga-via', 'direct'];
    const first = await startDaemon(args);
    daemons.push(first);
    const f = new Follower(
      spawn(process.execPath, [CLIENT, '--url', first.url, '--table', 'events', '--prefix', '|virt|VM_status|'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    procs.push(f.proc);
    await f.waitFor('following', () => f.err.some((l) => l.includes('following events (Ctrl-C to stop)')));

    // A VM appears: its channel socket is created, the guest says its name.
    const vm1 = newVmId();
    const g1 = await ScriptedGuest.listen(channelPath(dir, vm1, 'ovirt-guest-agent.0'));
    await g1.connected();
    await g1.send('host-name', { name: 'before-restart' });
    await f.waitFor("the first VM's name", () =>
      f.out.some((l) => l.includes(`|virt|VM_status|${vm1} {`) && l.includes('"guestName":"before-restart"')),
    );

    // The daemon restarts on the same port.
    expect(await first.stop()).toBe(0);
    await f.waitFor('the connection loss', () =>
      f.err.some((l) => /connection closed \(1001 daemon shutting down\); reconnecting/.test(l)),
    );
    const second = await startDaemon(args);
    daemons.push(second);
    await f.waitFor('the reconnection', () => f.err.some((l) => l.includes('reconnected; following events again')));
    const vm2 = newVmId();
    const g2 = await ScriptedGuest.listen(channelPath(dir, vm2, 'ovirt-guest-agent.0'));
    await g2.connected();
    await g2.send('host-name', { name: 'after-restart' });
    await f.waitFor("the second VM's name", () =>
      f.out.some((l) => l.includes(`|virt|VM_status|${vm2}`) && l.includes('"guestName":"after-restart"')),
    );

    // Every line: a time, the event's name, its params as JSON (notify_time left out).
    for (const line of f.out) {
      const m = /^(\d\d:\d\d:\d\d\.\d\d\d) (\|virt\|VM_status\|[0-9a-f-]{36}) (\{.*\})$/.exec(line);
      expect(m, line).not.toBeNull();
      // The VM's fields, not nested under the id the name already shows; no notify_time.
      const params = JSON.parse(m![3]!) as Record<string, unknown>;
      expect(Object.keys(params)).not.toContain('notify_time');
      expect(params.status).toBe('Up');
    }
    f.proc.kill('SIGINT');
    expect(await f.exited).toBe(0);
    await g1.close();
    await g2.close();
  });

  it('--json: one {"method", "params"} object per line, params as the daemon sent them', async () => {
    const dir = tempDir('vat-events-json-');
    const d = await startDaemon(['--listen', '127.0.0.1:0', '--channels-dir', dir, '--qga-via', 'direct']);
    daemons.push(d);
    const f = new Follower(
      spawn(process.execPath, [CLIENT, '--url', d.url, '--json', 'events'], { stdio: ['ignore', 'pipe', 'pipe'] }),
    );
    procs.push(f.proc);
    await f.waitFor('following', () => f.err.some((l) => l.includes('following events')));
    const vm = newVmId();
    const g = await ScriptedGuest.listen(channelPath(dir, vm, 'ovirt-guest-agent.0'));
    await g.connected();
    await g.send('host-name', { name: 'as-json' });
    await f.waitFor('the event', () => f.out.some((l) => l.includes('"as-json"')));
    const events = f.out.map(
      (l) => JSON.parse(l) as { method: string; params: Record<string, { guestName?: string }> },
    );
    const named = events.find((e) => e.params[vm]?.guestName === 'as-json');
    expect(named?.method).toBe(`|virt|VM_status|${vm}`);
    expect(Object.keys(named?.params ?? {})).toContain('notify_time');
    f.proc.kill('SIGINT');
    expect(await f.exited).toBe(0);
    await g.close();
  });

  it('exits 3 at once when the daemon cannot be reached at the start', async () => {
    const port = await freePort();
    const f = new Follower(
      spawn(process.execPath, [CLIENT, '--url', `ws://127.0.0.1:${port}`, 'events'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    procs.push(f.proc);
    expect(await f.exited).toBe(3);
    expect(f.err.join('\n')).toMatch(/cannot connect to ws:\/\/127\.0\.0\.1:\d+: .*ECONNREFUSED/);
  });
});
