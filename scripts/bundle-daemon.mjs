// After tsc (npm run build, packaging/build.sh): dist/main.js becomes one file holding the daemon
// and the dependencies on its start path (pino, ws, prom-client, json-rpc-2.0). On Node 20, ESM
// loading of the ~100 files those are spread over (resolving, reading, CommonJS export detection)
// cost ~240 ms of a ~600 ms start with 1,000 sockets (docs/performance.md, "Start-up").
// What loads only on demand stays outside, from node_modules as before: netlink (a native
// addon), execa (the `ip route get` fallback) and pino-pretty (--log-format text).
// The other dist/ files (the client, the demo) are tsc's, unbundled.
//   node scripts/bundle-daemon.mjs [DIST_DIR]
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.resolve(process.argv[2] ?? path.join(ROOT, 'dist'));

await build({
  // From the sources (esbuild strips the types as tsx does for the tests): tsc's incremental
  // build does not write dist/main.js again when main.ts is unchanged, so it cannot be the input.
  entryPoints: [path.join(ROOT, 'src/main.ts')],
  outfile: path.join(dist, 'main.js'),
  tsconfig: path.join(ROOT, 'tsconfig.json'),
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: ['netlink', 'execa', 'pino-pretty'],
  // The CommonJS dependencies call require() for Node's built-in modules; an ES module has none.
  banner: {
    js: "import { createRequire as createRequireForBundle } from 'node:module';\nconst require = createRequireForBundle(import.meta.url);",
  },
  sourcemap: 'linked',
  sourcesContent: false,
  logLevel: 'warning',
});
