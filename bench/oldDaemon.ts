// The daemon as it was at a git commit, built once into a cache directory, so a benchmark can
// run today's daemon and the old one side by side on identical simulated guests. Only `src/` and
// `tsconfig.json` are taken from the commit; node_modules is today's (the commit must not have
// changed runtime dependencies, which holds for the commits the benches compare with).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Path of main.js built from `ref` (e.g. `9cf4add`); built on first use, reused after. */
export function oldDaemonMain(ref: string): string {
  const sha = execFileSync('git', ['-C', REPO, 'rev-parse', '--verify', `${ref}^{commit}`], {
    encoding: 'utf8',
  }).trim();
  const dir = path.join(os.tmpdir(), `vdsm-agentd-old-${sha.slice(0, 12)}`);
  const main = path.join(dir, 'dist', 'main.js');
  // A cache made from another checkout whose node_modules is gone is built again.
  if (existsSync(main) && existsSync(path.join(dir, 'node_modules'))) return main;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  try {
    execFileSync('sh', ['-c', `git -C "${REPO}" archive ${sha} src tsconfig.json package.json | tar -x -C "${dir}"`]);
    symlinkSync(path.join(REPO, 'node_modules'), path.join(dir, 'node_modules'));
    execFileSync(
      process.execPath,
      [path.join(REPO, 'node_modules/typescript/bin/tsc'), '-p', path.join(dir, 'tsconfig.json')],
      { stdio: 'inherit' },
    );
    // From the commit that made dist/main.js one file on: built as `npm run build` builds it.
    const bundle = 'scripts/bundle-daemon.mjs';
    if (spawnSync('git', ['-C', REPO, 'cat-file', '-e', `${sha}:${bundle}`]).status === 0) {
      execFileSync('sh', ['-c', `git -C "${REPO}" archive ${sha} ${bundle} | tar -x -C "${dir}"`]);
      execFileSync(process.execPath, [path.join(dir, bundle)], { stdio: 'inherit' });
    }
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return main;
}
