// A private channels directory per test file (removed afterwards, even on failure), and VM ids.
import { mkdtempSync, rmSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { afterAll } from 'vitest';

const made: string[] = [];
let hooked = false;

export function tempDir(prefix = 'vat-ch-'): string {
  if (!hooked) {
    hooked = true;
    afterAll(() => {
      for (const d of made) rmSync(d, { recursive: true, force: true });
    });
  }
  const d = mkdtempSync(path.join(os.tmpdir(), prefix));
  made.push(d);
  return d;
}

export const newVmId = (): string => randomUUID();

export function channelPath(dir: string, vmId: string, channel: string): string {
  return path.join(dir, `${vmId}.${channel}`);
}
