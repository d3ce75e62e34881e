// The package installed as `npm install -g` lays it out under a prefix (PREFIX/lib/node_modules/
// vdsm-agentd and the PREFIX/bin link), for tests that run the daemon as another user: that user
// must read it from where the package would be, never from the checkout, which may sit in a
// directory only its owner can enter (a 0700 `mktemp -d`, a private home). Only what runs is
// copied (dist/, package.json, the production node_modules of package-lock.json), with the modes
// an install gives whatever the checkout's umask was: directories 0755, files 0644, executables
// 0755, owned by the user running the tests (root where these tests run).
import {
  accessSync,
  chmodSync,
  constants,
  cpSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
} from 'node:fs';
import path from 'node:path';
import { ROOT } from './daemon.js';

const PACKAGE_NAME = 'vdsm-agentd';

interface LockFile {
  packages: Record<string, { dev?: boolean; optional?: boolean; devOptional?: boolean }>;
}

/** The production dependencies' folders, relative to the checkout (node_modules/...). */
function productionModules(): string[] {
  const lock = JSON.parse(readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8')) as LockFile;
  return Object.entries(lock.packages)
    .filter(([where, p]) => where.startsWith('node_modules/') && p.dev !== true && p.devOptional !== true)
    .map(([where]) => where)
    .filter((where) => statSync(path.join(ROOT, where), { throwIfNoEntry: false })?.isDirectory() === true);
}

/** Gives the tree an install's modes: every user may read it, only the owner may write. */
function normaliseModes(p: string): void {
  const st = lstatSync(p);
  if (st.isSymbolicLink()) return;
  if (st.isDirectory()) {
    chmodSync(p, 0o755);
    for (const entry of readdirSync(p)) normaliseModes(path.join(p, entry));
  } else chmodSync(p, st.mode & 0o100 ? 0o755 : 0o644);
}

/** Mode 0755 for PREFIX and each folder made below it (mkdirSync's mode is cut by the umask). */
function mkdirOpen(dir: string, below: string): void {
  mkdirSync(dir, { recursive: true });
  for (let d = dir; d.startsWith(below) && d !== path.dirname(d); d = path.dirname(d)) chmodSync(d, 0o755);
}

export interface InstalledPackage {
  /** PREFIX/lib/node_modules/vdsm-agentd */
  packageDir: string;
  /** PREFIX/bin/vdsm-agentd, a relative link to the package's dist/main.js */
  daemon: string;
  /** PREFIX/lib/node_modules/vdsm-agentd/dist/client/cli.js */
  client: string;
}

/**
 * Installs the built package (npm run build first) under `prefix` (e.g. ROOTDIR/usr), as
 * `npm install -g` would. Unless `hostPath` is false (a prefix mounted elsewhere, e.g. as a
 * container's /usr), throws if a folder above `prefix` is not searchable by every user: the
 * package would be out of the service user's reach there.
 */
export function installPackage(prefix: string, { hostPath = true } = {}): InstalledPackage {
  const packageDir = path.join(prefix, 'lib/node_modules', PACKAGE_NAME);
  mkdirOpen(packageDir, prefix);
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> };
  cpSync(path.join(ROOT, 'dist'), path.join(packageDir, 'dist'), { recursive: true });
  cpSync(path.join(ROOT, 'package.json'), path.join(packageDir, 'package.json'));
  // Nested node_modules are entries of their own in the lock file, copied on their own.
  for (const where of productionModules()) {
    cpSync(path.join(ROOT, where), path.join(packageDir, where), {
      recursive: true,
      verbatimSymlinks: true,
      filter: (src) => src === path.join(ROOT, where) || path.basename(src) !== 'node_modules',
    });
  }
  normaliseModes(packageDir);
  for (const [name, target] of Object.entries(pkg.bin)) {
    chmodSync(path.join(packageDir, target), 0o755);
    mkdirOpen(path.join(prefix, 'bin'), prefix);
    symlinkSync(path.relative(path.join(prefix, 'bin'), path.join(packageDir, target)), path.join(prefix, 'bin', name));
  }
  for (let d = path.dirname(prefix); hostPath && d !== path.dirname(d); d = path.dirname(d)) {
    if ((statSync(d).mode & 0o001) === 0)
      throw new Error(`${d} is not searchable by other users: the package under ${prefix} would be out of their reach`);
  }
  accessSync(path.join(packageDir, 'dist/main.js'), constants.R_OK);
  return {
    packageDir,
    daemon: path.join(prefix, 'bin', PACKAGE_NAME),
    client: path.join(packageDir, pkg.bin['vdsm-agent-client'] ?? 'dist/client/cli.js'),
  };
}
