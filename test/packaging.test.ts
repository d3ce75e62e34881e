// The packages as an operator gets them (`npm run package`). The .deb is installed into a
// throwaway container booted by a real systemd (systemd-nspawn --volatile=yes: a tmpfs root,
// its own network, no link to the host's journal). /usr, /etc and /var (dpkg's database) are the
// host's as read-only lower layers under overlays whose upper layers are this test's own
// temporary directory, so dpkg sees the host's nodejs and no write reaches the host's files. Install -> the unit runs -> the client
// answers -> journalctl -p warning is empty -> upgrade in place -> purge. The .rpm's file list,
// scriptlets and flags are read with rpm, and it is installed into a scratch root.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from './helpers/daemon.js';
import { atFileEnd } from './helpers/fileCleanup.js';
import { missing } from './helpers/prereq.js';
import {
  claimNspawnHost,
  containerInit,
  pollUntil,
  runInside,
  unitProperties,
  type NspawnHost,
} from './helpers/nspawn.js';

const VERSION = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const LAUNCHER = path.join(ROOT, 'packaging/files/launcher.sh');
const dir = mkdtempSync(path.join(tmpdir(), 'vdsm-agentd-packaging-'));
atFileEnd(() => rmSync(dir, { recursive: true, force: true }));
const OUT = path.join(dir, 'out');
const DEB = path.join(OUT, `vdsm-agentd_${VERSION}-1_amd64.deb`);
const RPM = path.join(OUT, `vdsm-agentd-${VERSION}-1.x86_64.rpm`);

const needBuild = missing({ commands: ['dpkg-deb', 'rpmbuild', 'rpm', 'gzip'] });
let built: Promise<void> | null = null;
/** One build for the whole file, on first use. */
function build(): Promise<void> {
  built ??= new Promise<void>((resolve, reject) => {
    const p = spawn('bash', [path.join(ROOT, 'packaging/build.sh'), OUT], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    p.stderr.on('data', (c: Buffer) => (err += c.toString()));
    p.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`packaging/build.sh exited ${code}: ${err}`))));
  });
  return built;
}
const run = (cmd: string, args: string[]): string =>
  execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

describe('the launcher in /usr/bin finds a Node.js >= 20 or says in one line why not', () => {
  const fakeNode = (version: string): string => {
    const p = path.join(dir, `node-${version}`);
    writeFileSync(p, `#!/bin/sh\necho '${version} '\n`);
    chmodSync(p, 0o755);
    return p;
  };
  const launch = (env: Record<string, string>): { status: number | null; stderr: string; stdout: string } => {
    const r = spawnSync('sh', [LAUNCHER, '--version'], {
      env: { PATH: '/usr/bin:/bin', ...env },
      encoding: 'utf8',
      argv0: 'vdsm-agentd',
    });
    return { status: r.status, stderr: r.stderr, stdout: r.stdout };
  };

  it("refuses Node 18 (Debian 12's own nodejs)", () => {
    const node = fakeNode('18.19.0');
    expect(launch({ NODEJS: node })).toEqual({
      status: 2,
      stdout: '',
      stderr: `vdsm-agentd: error: Node.js >= 20 is needed, ${node} is 18.19.0 (install nodejs >= 20, or set NODEJS to its path)\n`,
    });
  });

  it('says so when there is no node at all', () => {
    const r = spawnSync('/bin/sh', [LAUNCHER], { env: { PATH: path.join(dir, 'empty-path') }, encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(
      'vdsm-agentd: error: Node.js >= 20 is needed and none was found (install nodejs >= 20, or set NODEJS to its path)\n',
    );
  });
});

describe.skipIf(needBuild)('the .rpm', () => {
  const q = (...args: string[]): string => run('rpm', ['-qp', ...args, RPM]);
  beforeAll(() => build(), 600_000);

  it('carries the daemon, client, unit, user, sysctl drop-in, man pages, licence and a noreplace config file', () => {
    const files = q('-l').trim().split('\n');
    expect(files).toEqual(
      expect.arrayContaining([
        '/etc/vdsm-agentd/config.json',
        '/usr/bin/vdsm-agentd',
        '/usr/bin/vdsm-agent-client',
        '/usr/lib/vdsm-agentd/dist/main.js',
        '/usr/lib/vdsm-agentd/dist/client/cli.js',
        '/usr/lib/vdsm-agentd/node_modules/pino/package.json',
        '/usr/lib/vdsm-agentd/node_modules/ws/package.json',
        '/usr/lib/systemd/system/vdsm-agentd.service',
        '/usr/lib/sysusers.d/vdsm-agentd.conf',
        '/usr/lib/sysctl.d/zz-vdsm-agentd.conf',
        '/usr/share/man/man8/vdsm-agentd.8.gz',
        '/usr/share/man/man1/vdsm-agent-client.1.gz',
        '/usr/share/licenses/vdsm-agentd/LICENSE',
      ]),
    );
    // Production dependencies only: no test runner, compiler or linter.
    expect(files.filter((f) => /node_modules\/(vitest|typescript|eslint|tsx)\//.test(f))).toEqual([]);
    expect(q('--configfiles').trim()).toBe('/etc/vdsm-agentd/config.json');
    expect(q('--qf', '[%{FILEFLAGS:fflags} %{FILENAMES}\n]')).toMatch(/^cn \/etc\/vdsm-agentd\/config\.json$/m);
    expect(q('--requires')).toMatch(/^nodejs >= 20$/m);
  });

  it('creates the user in %pre (with the qemu group), reserves the port in %post, restarts on upgrade, stops on erase', () => {
    const scripts = q('--scripts');
    expect(scripts).toMatch(
      /preinstall scriptlet[\s\S]*systemd-sysusers --replace=\/usr\/lib\/sysusers\.d\/vdsm-agentd\.conf[\s\S]*m vdsm-agentd qemu/,
    );
    expect(scripts).toMatch(/postinstall scriptlet[\s\S]*\/usr\/lib\/systemd\/systemd-sysctl zz-vdsm-agentd\.conf/);
    expect(scripts).toMatch(/preuninstall scriptlet[\s\S]*disable --now vdsm-agentd\.service/);
    expect(scripts).toMatch(/postuninstall scriptlet[\s\S]*try-restart vdsm-agentd\.service/);
  });

  it('installs into a scratch root and verifies clean', () => {
    const root = path.join(dir, 'rpmroot');
    mkdirSync(root);
    run('rpm', ['--root', root, '--initdb']);
    // --noscripts: the scratch root has no shell to run them with.
    run('rpm', ['--root', root, '--nodeps', '--noscripts', '-i', RPM]);
    expect(run('rpm', ['--root', root, '-q', 'vdsm-agentd']).trim()).toBe(`vdsm-agentd-${VERSION}-1.x86_64`);
    expect(run('rpm', ['--root', root, '-V', '--nodeps', 'vdsm-agentd'])).toBe('');
    expect(JSON.parse(readFileSync(path.join(root, 'etc/vdsm-agentd/config.json'), 'utf8'))).toEqual({
      listen: '127.0.0.1:54325',
      'log-level': 'info',
    });
    expect(readFileSync(path.join(root, 'usr/lib/sysctl.d/zz-vdsm-agentd.conf'), 'utf8')).toMatch(
      /^net\.ipv4\.ip_local_reserved_ports = 54321,54322,54325$/m,
    );
  });
});

describe.skipIf(needBuild ?? missing({ root: true, commands: ['systemd-nspawn', 'nsenter', 'dpkg'] }))(
  'the .deb in a container booted by systemd',
  () => {
    let nspawn: ChildProcess | undefined;
    let init = 0;
    let consoleText = '';
    let host: NspawnHost | undefined;
    const inside = (...cmd: string[]): string => runInside(init, cmd, 120_000);
    const show = (...props: string[]): Record<string, string> => unitProperties(inside, props);
    const waitFor = (what: string, pred: () => boolean, timeoutMs = 90_000): Promise<void> =>
      pollUntil(what, pred, timeoutMs, () => consoleText);
    const journal = (...args: string[]): string =>
      inside('journalctl', '--unit=vdsm-agentd.service', '--no-pager', '--quiet', ...args);

    beforeAll(async () => {
      await build();
      // One such container at a time on the host (test/systemd-container.test.ts boots one too).
      host = await claimNspawnHost();
      writeFileSync(path.join(dir, 'machine-id'), `${randomBytes(16).toString('hex')}\n`);
      const upper = (d: string): string => {
        const p = path.join(dir, 'upper', d.replace(/\//g, '_'));
        mkdirSync(p, { recursive: true });
        return p;
      };
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
          '--link-journal=no',
          ...['/usr', '/etc', '/var'].map((d) => `--overlay=${d}:${upper(d)}:${d}`),
          // Its own empty channels directory: the host's (seen through the /var overlay) may hold
          // the sockets of other tests' libvirt domains, which the service user may not open.
          '--tmpfs=/var/lib/libvirt/qemu/channels:mode=0755',
          `--bind-ro=${path.join(dir, 'machine-id')}:/etc/machine-id`,
          `--bind-ro=${OUT}:/run/packages`,
          '--boot',
          '--',
          '--unit=sysinit.target',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      nspawn.stdout!.on('data', (c: Buffer) => (consoleText += c.toString()));
      nspawn.stderr!.on('data', (c: Buffer) => (consoleText += c.toString()));
      await waitFor(
        'the container boot',
        () => (init = containerInit(nspawn!.pid!) ?? 0) !== 0 || nspawn!.exitCode !== null,
      );
      expect(nspawn.exitCode, consoleText).toBeNull();
      await waitFor('systemd to finish booting', () => {
        try {
          return /^(running|degraded)$/.test(inside('systemctl', 'is-system-running').trim());
        } catch (err) {
          return /degraded|running/.test(String((err as { stdout?: string }).stdout));
        }
      });
      // A libvirt host has the channels directory; this container stands for one.
      inside('mkdir', '-p', '/var/lib/libvirt/qemu/channels');
    }, 900_000);

    afterAll(async () => {
      if (nspawn && nspawn.exitCode === null) {
        const gone = new Promise((r) => nspawn!.once('exit', r));
        try {
          inside('systemctl', 'poweroff', '--no-block');
        } catch {
          /* already going */
        }
        await Promise.race([gone, new Promise((r) => setTimeout(r, 20_000))]);
        nspawn.kill('SIGKILL');
      }
      await host?.release();
    }, 60_000);

    it('installs, runs as the service user with the kvm group, answers the client, and logs no warning', () => {
      const out = inside('dpkg', '-i', `/run/packages/${path.basename(DEB)}`);
      expect(out).toMatch(/Setting up vdsm-agentd/);
      inside('systemctl', 'start', 'vdsm-agentd');
      expect(show('ActiveState', 'SubState', 'UnitFileState', 'StatusText')).toEqual({
        ActiveState: 'active',
        SubState: 'running',
        UnitFileState: 'enabled',
        StatusText: 'listening on ws://127.0.0.1:54325',
      });
      expect(inside('vdsm-agent-client', 'Host', 'ping2')).toBe('true\n');
      expect(inside('id', 'vdsm-agentd')).toMatch(/groups=.*\(kvm\)/);
      expect(inside('sysctl', '-n', 'net.ipv4.ip_local_reserved_ports').trim()).toBe('54321-54322,54325');
      expect(journal('--priority=warning')).toBe('');
      expect(journal('--output=cat')).toMatch(/"level":"info".*"msg":"listening on ws:\/\/127\.0\.0\.1:54325"/);
      expect(inside('man', '-P', 'cat', 'vdsm-agentd')).toMatch(/--log-format/);
    });

    it('files an error at its priority: a broken config on reload shows under journalctl -p err', () => {
      inside(
        'sh',
        '-c',
        'cp /etc/vdsm-agentd/config.json /root/good.json && echo "{ broken" > /etc/vdsm-agentd/config.json',
      );
      inside('systemctl', 'kill', '--kill-whom=main', '--signal=HUP', 'vdsm-agentd');
      const deadline = Date.now() + 30_000;
      let errors = '';
      while (!/reload failed/.test(errors) && Date.now() < deadline) errors = journal('--priority=err', '--output=cat');
      expect(errors).toMatch(
        /^\{"level":"error".*"msg":"reload failed, running settings kept: config file \/etc\/vdsm-agentd\/config\.json is not valid JSON: /m,
      );
      expect(inside('vdsm-agent-client', 'Host', 'ping2')).toBe('true\n');
      inside('cp', '/root/good.json', '/etc/vdsm-agentd/config.json');
    });

    it('upgrades in place: the admin-edited config is kept and the daemon restarted', () => {
      // The same package as version -2, as a new release would come.
      const raw = path.join(dir, 'raw');
      run('dpkg-deb', ['-R', DEB, raw]);
      const control = path.join(raw, 'DEBIAN/control');
      writeFileSync(control, readFileSync(control, 'utf8').replace(/^Version: .*$/m, `Version: ${VERSION}-2`));
      const next = path.join(OUT, `vdsm-agentd_${VERSION}-2_amd64.deb`);
      run('dpkg-deb', ['--root-owner-group', '--build', raw, next]);
      const edited = '{ "listen": "127.0.0.1:54325", "log-level": "debug" }\n';
      inside('sh', '-c', `printf '%s' '${edited}' > /etc/vdsm-agentd/config.json`);
      const before = show('MainPID').MainPID;
      inside('dpkg', '-i', `/run/packages/${path.basename(next)}`);
      expect(inside('dpkg-query', '-W', '-f=${Version}', 'vdsm-agentd')).toBe(`${VERSION}-2`);
      expect(inside('cat', '/etc/vdsm-agentd/config.json')).toBe(edited);
      const after = show('MainPID', 'ActiveState');
      expect(after.ActiveState).toBe('active');
      expect(after.MainPID).not.toBe(before);
      expect(inside('vdsm-agent-client', 'Host', 'ping2')).toBe('true\n');
    });

    it('purges everything but what policy keeps (the system user)', () => {
      inside('dpkg', '--purge', 'vdsm-agentd');
      expect(show('LoadState', 'ActiveState')).toEqual({ LoadState: 'not-found', ActiveState: 'inactive' });
      const left = inside(
        'sh',
        '-c',
        'ls -d /usr/lib/vdsm-agentd /etc/vdsm-agentd /usr/bin/vdsm-agentd /usr/bin/vdsm-agent-client /usr/lib/systemd/system/vdsm-agentd.service /etc/systemd/system/multi-user.target.wants/vdsm-agentd.service /usr/lib/sysctl.d/zz-vdsm-agentd.conf /usr/lib/sysusers.d/vdsm-agentd.conf /usr/share/man/man8/vdsm-agentd.8.gz 2>/dev/null; true',
      );
      expect(left).toBe('');
      expect(inside('sh', '-c', "dpkg-query -W -f='${db:Status-Status}' vdsm-agentd 2>/dev/null; true")).toMatch(
        /^(not-installed)?$/,
      );
      expect(inside('getent', 'passwd', 'vdsm-agentd')).toMatch(/^vdsm-agentd:/);
    });
  },
);
