#!/usr/bin/env node
// Fails when src/ has an import cycle between folders (a folder is one stage of the data flow:
// stages may only depend one way) or between files. Reads import specifiers as text: every
// relative import in src/ is static and ends in .js, so no resolver is needed.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', 'src');

function files(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : [],
  );
}

/** The stage a file belongs to: its first folder under src/. A file directly in src/ (wiring,
 * config, wire types, logging) is a node of its own: config.ts may import a stage's types while
 * daemon.ts imports every stage, and neither makes the stages depend on each other. */
const stage = (file) => {
  const rel = path.relative(root, file).split(path.sep);
  return rel.length > 1 ? `${rel[0]}/` : rel[0];
};

const fileEdges = new Map();
const IMPORT =
  /(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+['"](\.{1,2}\/[^'"]+)['"]|import\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g;
for (const file of files(root)) {
  const text = readFileSync(file, 'utf8');
  const targets = new Set();
  for (const m of text.matchAll(IMPORT)) {
    const spec = m[1] ?? m[2];
    targets.add(path.resolve(path.dirname(file), spec).replace(/\.js$/, '.ts'));
  }
  fileEdges.set(file, targets);
}

function findCycles(edges) {
  const cycles = [];
  const state = new Map();
  const stack = [];
  const visit = (n) => {
    state.set(n, 'open');
    stack.push(n);
    for (const m of edges.get(n) ?? []) {
      if (!edges.has(m)) continue;
      if (state.get(m) === 'open') cycles.push([...stack.slice(stack.indexOf(m)), m]);
      else if (!state.has(m)) visit(m);
    }
    stack.pop();
    state.set(n, 'done');
  };
  for (const n of edges.keys()) if (!state.has(n)) visit(n);
  return cycles;
}

const stageEdges = new Map();
for (const [from, targets] of fileEdges) {
  const s = stage(from);
  if (!stageEdges.has(s)) stageEdges.set(s, new Set());
  for (const t of targets) {
    const ts = stage(t);
    if (ts !== s) stageEdges.get(s).add(ts);
  }
}

const rel = (f) => path.relative(root, f);
const folderCycles = findCycles(stageEdges);
const fileCycles = findCycles(fileEdges).map((c) => c.map(rel));
if (process.argv.includes('--graph')) {
  for (const [s, t] of [...stageEdges].sort()) console.log(`${s} -> ${[...t].sort().join(', ') || '(nothing)'}`);
}
for (const c of folderCycles) console.error(`import cycle between folders: ${c.join(' -> ')}`);
for (const c of fileCycles) console.error(`import cycle between files: ${c.join(' -> ')}`);
if (folderCycles.length + fileCycles.length > 0) process.exit(1);
console.log(`import cycles: none (${fileEdges.size} files, ${stageEdges.size} folders)`);
