// A private channels directory per test file (removed afterwards, even on failure), and VM ids.
import { mkdtempSync, rmSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { atFileEnd } from './fileCleanup.js';

const made: string[] = [];
// Registered when a test file imports this module, so directories made inside a test (where a
// new afterAll would not attach to the file) are removed too. (Benchmarks import it outside vitest.)
atFileEnd(() => {
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true });
});

export function tempDir(prefix = 'vat-ch-'): string {
  const d = mkdtempSync(path.join(os.tmpdir(), prefix));
  made.push(d);
  return d;
}

export const newVmId = (): string => randomUUID();

export function channelPath(dir: string, vmId: string, channel: string): string {
  return path.join(dir, `${vmId}.${channel}`);
}
