// One real daemon for a describe block: started before its tests, and required to exit 0 on
// SIGTERM after them.
import { afterAll, beforeAll, expect } from 'vitest';
import { startDaemon, type RunningDaemon } from './daemon.js';

export function suiteDaemon(args: string[]): () => RunningDaemon {
  let d: RunningDaemon | undefined;
  beforeAll(async () => {
    d = await startDaemon(args);
  });
  afterAll(async () => {
    expect(await d?.stop()).toBe(0);
  });
  return () => {
    if (!d) throw new Error('the daemon has not started');
    return d;
  };
}
