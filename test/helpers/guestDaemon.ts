// One real daemon per describe block, on a private channels directory, with a connected client
// and a VM.getStats shortcut. Started in beforeAll, stopped in afterAll.
import { afterAll, beforeAll } from 'vitest';
import { RpcClient } from '../../src/client/rpcClient.js';
import type { VmStats } from '../../src/wire.js';
import { tempDir } from './channelsDir.js';
import { startDaemon, type RunningDaemon } from './daemon.js';

export interface GuestDaemon {
  dir: string;
  d: RunningDaemon;
  c: RpcClient;
  stats: (vmId: string) => Promise<VmStats>;
}

export function useGuestDaemon(extraArgs: string[] = []): GuestDaemon {
  const ctx = {} as GuestDaemon;
  ctx.stats = async (vmId) => (await ctx.c.call<VmStats[]>('VM.getStats', { vmID: vmId }))[0]!;
  beforeAll(async () => {
    ctx.dir = tempDir();
    ctx.d = await startDaemon(['--listen', '127.0.0.1:0', '--channels-dir', ctx.dir, ...extraArgs]);
    ctx.c = await RpcClient.connect(ctx.d.url);
  });
  afterAll(async () => {
    await ctx.c?.close();
    await ctx.d?.stop();
  });
  return ctx;
}
