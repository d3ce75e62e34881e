// Cleanup that runs when the importing test file ends. Helpers call this at import time: vitest
// ignores hooks added later (from inside beforeAll or a test), and cleanup must run even when a
// file's set-up fails. Outside vitest (benchmarks reuse some helpers) nothing is registered.
import { afterAll } from 'vitest';

export function atFileEnd(cleanup: () => unknown): void {
  if (process.env.VITEST)
    afterAll(async () => {
      await cleanup();
    });
}
