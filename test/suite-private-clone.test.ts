// The tests that run the daemon as another user pass wherever the repository is cloned, also in
// a directory only its owner may enter (what `mktemp -d` makes, what many homes are): this copies
// the working tree, with its node_modules, into a fresh 0700 directory with group and other
// permissions removed throughout (a clone made under umask 077), builds it there, and runs those
// test files from the copy under CI=true, so none may skip. The copy never runs this file
// (only the files named below, and PRIVATE_CLONE_TEST_RUNNING makes it skip; not VDSM_AGENTD_*:
// the daemon refuses environment variables of its own prefix that it does not know).
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, cpSync, lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers/daemon.js';
import { atFileEnd } from './helpers/fileCleanup.js';
import { missing } from './helpers/prereq.js';

/** Every test file that runs something as another user (setpriv --reuid, User= under systemd). */
const PRIVILEGE_DROPPING = ['test/systemd-unit.test.ts', 'test/systemd-container.test.ts'];
const NOT_COPIED = new Set(['.git', 'dist', 'coverage']);

const made: string[] = [];
atFileEnd(() => {
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** chmod go-rwx, recursively (symbolic links have no mode of their own). */
function ownerOnly(p: string): void {
  const st = lstatSync(p);
  if (st.isSymbolicLink()) return;
  chmodSync(p, st.mode & 0o700);
  if (st.isDirectory()) for (const entry of readdirSync(p)) ownerOnly(path.join(p, entry));
}

/** Runs a command to its end; resolves with its status and output. */
function run(
  cmd: string,
  args: string[],
  cwd: string,
  env: NodeJS.ProcessEnv,
): Promise<{ status: number | null; output: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    p.stdout.on('data', (c: Buffer) => (output += c.toString()));
    p.stderr.on('data', (c: Buffer) => (output += c.toString()));
    p.on('close', (status) => resolve({ status, output }));
  });
}

const skip = process.env.PRIVATE_CLONE_TEST_RUNNING
  ? 'already inside the private clone'
  : missing({ root: true, commands: ['setpriv', 'systemd-nspawn', 'flock'] });

describe.skipIf(skip)('a clone in a directory only its owner may enter', () => {
  it('passes the tests that run the daemon as another user', async () => {
    const parent = mkdtempSync(path.join(tmpdir(), 'vdsm-agentd-private-'));
    made.push(parent);
    const clone = path.join(parent, 'vdsm-agentd');
    cpSync(ROOT, clone, {
      recursive: true,
      verbatimSymlinks: true,
      filter: (src) => !NOT_COPIED.has(path.relative(ROOT, src)),
    });
    ownerOnly(parent);
    expect(statSync(parent).mode & 0o777).toBe(0o700);
    // The premise: the service user cannot read the clone.
    const probe = spawnSync(
      'setpriv',
      ['--reuid=nobody', '--regid=nogroup', '--clear-groups', 'cat', path.join(clone, 'package.json')],
      { encoding: 'utf8' },
    );
    expect(probe.status, probe.stdout).not.toBe(0);
    expect(probe.stderr).toMatch(/Permission denied/);

    const env = { ...process.env, CI: 'true', PRIVATE_CLONE_TEST_RUNNING: '1' };
    const build = await run(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json'], clone, env);
    expect(build.status, build.output).toBe(0);

    const report = path.join(parent, 'vitest.json');
    const vitest = [
      'node_modules/vitest/vitest.mjs',
      'run',
      ...PRIVILEGE_DROPPING,
      '--reporter=default',
      '--reporter=json',
      `--outputFile.json=${report}`,
    ];
    const tests = await run(process.execPath, vitest, clone, env);
    expect(tests.status, tests.output).toBe(0);
    const r = JSON.parse(readFileSync(report, 'utf8')) as {
      numTotalTests: number;
      numPassedTests: number;
      testResults: { name: string }[];
    };
    console.log(`from ${clone} (parent mode 0700): ${r.numPassedTests} of ${r.numTotalTests} tests passed`);
    expect(r.testResults.map((f) => path.relative(clone, f.name)).sort()).toEqual([...PRIVILEGE_DROPPING].sort());
    expect(r.numPassedTests, tests.output).toBe(r.numTotalTests);
    expect(r.numTotalTests).toBeGreaterThan(0);
  }, 600_000);
});
