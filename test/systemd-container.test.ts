// The unit under a real systemd: a throwaway container (systemd-nspawn, volatile: the host's /usr
// read-only, everything else tmpfs, its own network) boots with only vdsm-agentd.service as its
// goal. The daemon runs as the installed command (the package installed into the container's
// /usr as `npm install -g` puts it, never the checkout), as the service user with the kvm group,
// under every hardening setting of the unit; systemd sees it ready only once it listens,
// restarts it when it is killed, and stops it cleanly.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from './helpers/daemon.js';
import { missing } from './helpers/prereq.js';
import { installPackage } from './helpers/installedPackage.js';
import {
  claimNspawnHost,
  containerInit,
  pollUntil,
  runInside,
  unitProperties,
  type NspawnHost,
} from './helpers/nspawn.js';

const UNIT = path.join(ROOT, 'systemd/vdsm-agentd.service');

const need = missing({ root: true, commands: ['systemd-nspawn', 'nsenter', 'flock'] });
/** The installed client, inside the container. */
const CLIENT_INSIDE = '/usr/lib/node_modules/vdsm-agentd/dist/client/cli.js';

describe.skipIf(need)('the unit under a real systemd (container)', () => {
  let dir: string;
  let nspawn: ChildProcess;
  let host: NspawnHost | undefined;
  let init = 0;
  let consoleText = '';
  const inside = (...cmd: string[]): string => runInside(init, cmd, 30_000);
  const show = (...props: string[]): Record<string, string> => unitProperties(inside, props);
  const waitFor = (what: string, pred: () => boolean, timeoutMs = 60_000): Promise<void> =>
    pollUntil(what, pred, timeoutMs, () => consoleText);

  beforeAll(async () => {
    // One such container at a time on the host: outside a systemd host nspawn puts every
    // container in the same payload/supervisor cgroups (the suite also runs this file again
    // from a private clone, test/suite-private-clone.test.ts, maybe at the same time).
    host = await claimNspawnHost();
    dir = mkdtempSync(path.join(tmpdir(), 'vdsm-agentd-container-'));
    // The service user, with the group of the channel sockets, as the README's install makes it.
    const kvm = /^kvm:x:(\d+):/m.exec(readFileSync('/etc/group', 'utf8'));
    const group = readFileSync('/etc/group', 'utf8').replace(
      /^kvm:x:(\d+):(.*)$/m,
      (_l, gid, members) => `kvm:x:${gid}:${members ? `${members},` : ''}vdsm-agentd`,
    );
    writeFileSync(
      path.join(dir, 'group'),
      kvm ? `${group}vdsm-agentd:x:990:\n` : `${group}kvm:x:995:vdsm-agentd\nvdsm-agentd:x:990:\n`,
    );
    writeFileSync(
      path.join(dir, 'passwd'),
      `${readFileSync('/etc/passwd', 'utf8')}vdsm-agentd:x:990:990:vdsm-agentd:/:/usr/sbin/nologin\n`,
    );
    writeFileSync(path.join(dir, 'machine-id'), `${randomBytes(16).toString('hex')}\n`);
    for (const f of ['group', 'passwd', 'machine-id']) chmodSync(path.join(dir, f), 0o644);
    // /usr/lib/node_modules/vdsm-agentd and its /usr/bin/vdsm-agentd link, as npm install -g
    // makes them, in the container's /usr (an overlay: the host's parent folders do not matter).
    installPackage(path.join(dir, 'usr-upper'), { hostPath: false });
    nspawn = spawn(
      'systemd-nspawn',
      [
        '--directory=/',
        '--volatile=yes',
        '--private-network',
        '--register=no',
        '--keep-unit',
        '--quiet',
        '--console=pipe',
        `--overlay=/usr:${path.join(dir, 'usr-upper')}:/usr`,
        `--bind-ro=${path.join(dir, 'passwd')}:/etc/passwd`,
        `--bind-ro=${path.join(dir, 'group')}:/etc/group`,
        `--bind-ro=${path.join(dir, 'machine-id')}:/etc/machine-id`,
        `--bind-ro=${UNIT}:/etc/systemd/system/vdsm-agentd.service`,
        '--boot',
        '--',
        '--unit=vdsm-agentd.service',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    nspawn.stdout!.on('data', (c: Buffer) => (consoleText += c.toString()));
    nspawn.stderr!.on('data', (c: Buffer) => (consoleText += c.toString()));
    await waitFor(
      'the container boot',
      () => (init = containerInit(nspawn.pid!) ?? 0) !== 0 || nspawn.exitCode !== null,
    );
    expect(nspawn.exitCode, consoleText).toBeNull();
    // A daemon that cannot start fails here at once, with its status and its journal.
    let failure = '';
    await waitFor('the unit to start', () => {
      let st: Record<string, string>;
      if (nspawn.exitCode !== null) return true;
      try {
        st = show('ActiveState', 'NRestarts', 'Result', 'ExecMainCode', 'ExecMainStatus');
      } catch {
        return false;
      }
      if (st.ActiveState === 'failed' || (st.NRestarts !== undefined && st.NRestarts !== '0'))
        failure = JSON.stringify(st);
      return failure !== '' || st.ActiveState === 'active';
    });
    expect(nspawn.exitCode, consoleText).toBeNull();
    if (failure !== '') {
      const journal = inside('journalctl', '--unit=vdsm-agentd.service', '--output=cat', '--no-pager');
      throw new Error(`vdsm-agentd.service did not start: ${failure}\n${journal}`);
    }
  }, 300_000);

  afterAll(async () => {
    if (nspawn && nspawn.exitCode === null) {
      const gone = new Promise((r) => nspawn.once('exit', r));
      try {
        inside('systemctl', 'poweroff', '--no-block');
      } catch {
        /* already going */
      }
      await Promise.race([gone, new Promise((r) => setTimeout(r, 15_000))]);
      nspawn.kill('SIGKILL');
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
    await host?.release();
  }, 60_000);

  it('is ready (Type=notify) with the status the daemon reported once it listened', () => {
    const s = show('ActiveState', 'SubState', 'StatusText', 'Type', 'NotifyAccess');
    expect(s).toEqual({
      ActiveState: 'active',
      SubState: 'running',
      StatusText: 'listening on ws://127.0.0.1:54325',
      Type: 'notify',
      NotifyAccess: 'all',
    });
    expect(inside('node', CLIENT_INSIDE, 'Host', 'ping2')).toBe('true\n');
  });

  it('runs as the service user with the kvm group, no capabilities, no new privileges, a seccomp filter', () => {
    const pid = show('MainPID').MainPID;
    const status = inside('cat', `/proc/${pid}/status`);
    const field = (name: string): string => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(status)![1]!.trim();
    const kvmGid = /^kvm:x:(\d+):/m.exec(readFileSync(path.join(dir, 'group'), 'utf8'))![1]!;
    expect(field('Uid').split(/\s+/)).toEqual(['990', '990', '990', '990']);
    expect(field('Groups').split(/\s+/)).toContain(kvmGid);
    expect(field('CapEff')).toBe('0000000000000000');
    expect(field('CapBnd')).toBe('0000000000000000');
    expect(field('NoNewPrivs')).toBe('1');
    expect(field('Seccomp')).toBe('2');
  });

  it('is restarted when it dies (Restart=on-failure)', async () => {
    const before = show('MainPID', 'NRestarts');
    inside('kill', '-KILL', before.MainPID!);
    await waitFor('the restart', () => {
      const s = show('MainPID', 'ActiveState', 'NRestarts');
      return s.ActiveState === 'active' && s.MainPID !== before.MainPID && s.MainPID !== '0';
    });
    expect(Number(show('NRestarts').NRestarts)).toBe(Number(before.NRestarts) + 1);
    expect(inside('node', CLIENT_INSIDE, 'Host', 'ping2')).toBe('true\n');
  });

  it('stops cleanly: SIGTERM, exit status 0', () => {
    inside('systemctl', 'stop', 'vdsm-agentd.service');
    expect(show('ActiveState', 'Result', 'ExecMainStatus')).toEqual({
      ActiveState: 'inactive',
      Result: 'success',
      ExecMainStatus: '0',
    });
    const journal = inside('journalctl', '--unit=vdsm-agentd.service', '--output=cat', '--no-pager');
    expect(journal).toMatch(/"signal":"SIGTERM","msg":"shutting down"/);
    expect(journal).toMatch(/"msg":"stopped"/);
  });
});
