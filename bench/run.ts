// `npm run bench`: runs every bench/*.bench.ts in turn (each prints its own table of figures
// measured side by side in the same run). `npm run bench -- route` runs only the names given;
// `npm run bench -- soak` (30 min, SOAK_MINUTES) runs only when named.
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const only = process.argv.slice(2);
const files = readdirSync(here)
  .filter((f) => f.endsWith('.bench.ts'))
  .filter((f) => only.length === 0 || only.some((o) => f.startsWith(o)))
  // The soak runs for half an hour: only when asked for by name.
  .filter((f) => !f.startsWith('soak') || only.some((o) => f.startsWith(o)))
  .sort();
if (files.length === 0) {
  console.log('no benchmarks selected');
}
for (const f of files) {
  console.log(`\n=== ${f} ===`);
  const mod = (await import(pathToFileURL(path.join(here, f)).href)) as { run: () => Promise<void> };
  await mod.run();
}
