// systemd/vdsm-agentd.service: it verifies, its offline security exposure is at most 2.0, and the
// daemon started as its ExecStart starts it (same command, flags and environment, unprivileged,
// with a NOTIFY_SOCKET) tells systemd it is ready, serves, and stops cleanly on SIGTERM.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { CLIENT, ROOT, startDaemon } from './helpers/daemon.js';
import { installPackage } from './helpers/installedPackage.js';
import { missing } from './helpers/prereq.js';
import { createNetns, deleteNetns } from './helpers/netns.js';
import { openNotifySocket, PYTHON } from './helpers/notifySocket.js';

const UNIT = path.join(ROOT, 'systemd/vdsm-agentd.service');

/** The [Service] section's settings, each key with all its values in order. */
function serviceSettings(): Map<string, string[]> {
  const settings = new Map<string, string[]>();
  let section = '';
  for (const raw of readFileSync(UNIT, 'utf8').split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('[')) section = line;
    else if (section === '[Service]') {
      const eq = line.indexOf('=');
      const key = line.slice(0, eq);
      settings.set(key, [...(settings.get(key) ?? []), line.slice(eq + 1)]);
    }
  }
  return settings;
}

const tmpRoots: string[] = [];
afterAll(() => {
  for (const d of tmpRoots) rmSync(d, { recursive: true, force: true });
});

/**
 * An alternate root as `npm install -g` leaves it under prefix /usr (every user may read it, as
 * on a host), plus systemd's own units.
 */
function installedRoot(withPackage: boolean): string {
  const root = mkdtempSync(path.join(tmpdir(), 'vdsm-agentd-root-'));
  tmpRoots.push(root);
  chmodSync(root, 0o755);
  mkdirSync(path.join(root, 'etc/systemd/system'), { recursive: true });
  copyFileSync(UNIT, path.join(root, 'etc/systemd/system/vdsm-agentd.service'));
  cpSync('/usr/lib/systemd/system', path.join(root, 'usr/lib/systemd/system'), {
    recursive: true,
    verbatimSymlinks: true,
  });
  if (withPackage) installPackage(path.join(root, 'usr'));
  return root;
}

describe.skipIf(missing({ commands: ['systemd-analyze'] }))('the unit file', () => {
  it('passes systemd-analyze verify', () => {
    const root = installedRoot(true);
    // --man=no: Documentation= names the man page, which the package installs, not this checkout.
    const r = spawnSync(
      'systemd-analyze',
      ['verify', '--man=no', `--root=${root}`, '/etc/systemd/system/vdsm-agentd.service'],
      { encoding: 'utf8' },
    );
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('fails systemd-analyze verify when the binary is not installed (the check is real)', () => {
    const root = installedRoot(false);
    const r = spawnSync('systemd-analyze', ['verify', `--root=${root}`, '/etc/systemd/system/vdsm-agentd.service'], {
      encoding: 'utf8',
    });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/\/usr\/bin\/vdsm-agentd is not executable/);
  });

  it('has an offline security exposure of 2.0 or lower', () => {
    const r = spawnSync('systemd-analyze', ['security', '--offline=true', '--no-pager', UNIT], { encoding: 'utf8' });
    const m = /Overall exposure level for vdsm-agentd\.service: (\d+(?:\.\d+)?)/.exec(r.stdout + r.stderr);
    expect(m, r.stdout + r.stderr).not.toBeNull();
    const exposure = Number(m![1]);
    console.log(`systemd-analyze security --offline=true: overall exposure ${exposure}`);
    expect(exposure).toBeLessThanOrEqual(2.0);
  });

  it('runs the binary where npm install -g puts it, as a notify service restarted on failure, hardened', () => {
    const s = serviceSettings();
    const prefix = execFileSync('npm', ['prefix', '-g'], { encoding: 'utf8' }).trim();
    expect(s.get('ExecStart')![0]!.split(/\s+/)[0]).toBe(path.join(prefix, 'bin/vdsm-agentd'));
    expect(s.get('Type')).toEqual(['notify']);
    expect(s.get('NotifyAccess')).toEqual(['all']);
    expect(s.get('Restart')).toEqual(['on-failure']);
    expect(s.get('User')).toEqual(['vdsm-agentd']);
    expect(s.get('RestrictAddressFamilies')).toEqual(['AF_UNIX AF_INET AF_INET6 AF_NETLINK']);
    expect(s.get('CapabilityBoundingSet')).toEqual(['']);
    expect(s.get('SystemCallFilter')![0]).toBe('@system-service');
    for (const key of ['NoNewPrivileges', 'ProtectHome', 'PrivateTmp', 'PrivateDevices'])
      expect(s.get(key), key).toEqual(['yes']);
    expect(s.get('ProtectSystem')).toEqual(['strict']);
  });
});

describe.skipIf(missing({ root: true, commands: ['ip', 'setpriv', 'systemd-notify', PYTHON] }))(
  'the daemon as the unit starts it',
  () => {
    it('reports READY=1 once it listens, serves vdsm-agent-client, and exits 0 on SIGTERM', async () => {
      const s = serviceSettings();
      const [binary, ...flags] = s.get('ExecStart')![0]!.split(/\s+/);
      expect(binary).toMatch(/\/vdsm-agentd$/);
      // The installed command: ROOT/usr/bin/vdsm-agentd, a symlink to the installed package's
      // dist/main.js, run through its #! line; never the checkout, which the user may not enter.
      const installed = installPackage(path.join(installedRoot(false), 'usr'));

      const notify = await openNotifySocket();
      // What systemd puts in a service's environment, then the unit's own Environment= lines.
      const env: Record<string, string> = {
        PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin',
        LANG: 'C.UTF-8',
        USER: 'nobody',
        LOGNAME: 'nobody',
        HOME: '/nonexistent',
        SHELL: '/usr/sbin/nologin',
        INVOCATION_ID: randomBytes(16).toString('hex'),
        NOTIFY_SOCKET: notify.path,
      };
      for (const line of s.get('Environment') ?? []) {
        for (const pair of line.match(/"[^"]*"|\S+/g) ?? []) {
          const text = pair.replace(/^"|"$/g, '');
          env[text.slice(0, text.indexOf('='))] = text.slice(text.indexOf('=') + 1);
        }
      }
      // Its own network namespace, so the default listen address 127.0.0.1:54325 of the unit is
      // free whatever else runs on this host; an unprivileged user without new privileges, like
      // User= and NoNewPrivileges= (the vdsm-agentd user does not exist on a test machine).
      const ns = createNetns('vasd');
      const proc = spawn(
        'ip',
        [
          'netns',
          'exec',
          ns,
          'setpriv',
          '--reuid=nobody',
          '--regid=nogroup',
          '--clear-groups',
          '--no-new-privs',
          installed.daemon,
          ...flags,
        ],
        { env, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let out = '';
      let err = '';
      proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
      proc.stderr.on('data', (c: Buffer) => (err += c.toString()));
      const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
      // A daemon that dies (or never starts) fails the test at once, with its status and stderr
      // ('close': after its output has been read to the end).
      const diedFirst = new Promise<never>((_resolve, reject) =>
        proc.on('close', (code, signal) =>
          reject(
            new Error(
              `the daemon exited before READY=1 (status ${code}, signal ${signal}); stderr: ${err}; stdout: ${out}`,
            ),
          ),
        ),
      );
      diedFirst.catch(() => undefined); // it also ends, later, when the test stops it
      try {
        const ready = await Promise.race([notify.waitFor((m) => m.split('\n').includes('READY=1'), 15_000), diedFirst]);
        expect(ready).toMatch(/STATUS=listening on ws:\/\/127\.0\.0\.1:54325/);

        const client = spawnSync('ip', ['netns', 'exec', ns, process.execPath, CLIENT, 'Host', 'ping2'], {
          encoding: 'utf8',
          timeout: 20_000,
        });
        expect(client.stderr).toBe('');
        expect(client.stdout).toBe('true\n');
        expect(client.status).toBe(0);

        proc.kill('SIGTERM');
        expect(await exited).toBe(0);
        const msgs = out
          .trim()
          .split('\n')
          .map((l) => (JSON.parse(l) as { msg: string }).msg);
        expect(msgs).toEqual(
          expect.arrayContaining([
            'listening on ws://127.0.0.1:54325',
            'told systemd the daemon is ready',
            'connection opened',
            'stopped',
          ]),
        );
        expect(err).toBe('');
      } finally {
        proc.kill('SIGKILL');
        notify.close();
        deleteNetns(ns);
      }
    });
  },
);

describe.skipIf(missing({ commands: ['systemd-notify', PYTHON] }))('readiness notification', () => {
  it('sends READY=1 with the bound address to NOTIFY_SOCKET, only after it listens', async () => {
    const notify = await openNotifySocket();
    try {
      const d = await startDaemon(['--listen', '127.0.0.1:0', '--channels-dir', '/nonexistent-vdsm-agentd'], {
        env: { NOTIFY_SOCKET: notify.path },
      });
      const ready = await notify.waitFor((m) => m.split('\n').includes('READY=1'));
      expect(ready.split('\n')).toContain(`STATUS=listening on ${d.url}`);
      await d.waitForLog((l) => l.msg === 'told systemd the daemon is ready');
      // systemd-notify's BARRIER=1 follows; no other state is reported.
      expect(notify.messages().filter((m) => m !== 'BARRIER=1')).toEqual([ready]);
      expect(await d.stop()).toBe(0);
    } finally {
      notify.close();
    }
  });

  it('does not run systemd-notify without NOTIFY_SOCKET', async () => {
    const env = { ...process.env };
    delete env.NOTIFY_SOCKET;
    const d = await startDaemon(['--listen', '127.0.0.1:0', '--channels-dir', '/nonexistent-vdsm-agentd'], {
      env: env as Record<string, string>,
    });
    expect(await d.stop()).toBe(0);
    expect(d.logs().map((l) => l.msg)).not.toContain('told systemd the daemon is ready');
    expect(d.logs().filter((l) => /systemd/.test(String(l.msg)))).toEqual([]);
  });
});
