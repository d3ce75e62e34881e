// A private channels directory per test file (removed afterwards, even on failure), and VM ids.
import { mkdtempSync, rmSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { afterAll } from 'vitest';

const made: string[] = [];
// Registered at import: vitest ignores hooks added later (from inside beforeAll), and cleanup
// must run even when a file's set-up fails.
afterAll(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
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
