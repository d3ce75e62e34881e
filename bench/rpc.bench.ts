// Host.ping2 round trips over one WebSocket connection: the transport's own cost, and a
// reference for the other benchmarks. Side by side: sequential calls vs. 32 in flight.
import { RpcClient } from '../src/client/rpcClient.js';
import { startDaemon } from './daemonProcess.js';

export async function run(): Promise<void> {
  const d = await startDaemon(['--listen', '127.0.0.1:0', '--channels-dir', '/nonexistent-vdsm-agentd']);
  try {
    const c = await RpcClient.connect(d.url);
    for (let i = 0; i < 500; i++) await c.call('Host.ping2'); // warm-up
    const n = 5000;
    const lat: number[] = [];
    let t0 = performance.now();
    for (let i = 0; i < n; i++) {
      const s = performance.now();
      await c.call('Host.ping2');
      lat.push(performance.now() - s);
    }
    const seqRate = n / ((performance.now() - t0) / 1000);
    t0 = performance.now();
    for (let i = 0; i < n / 32; i++) await Promise.all(Array.from({ length: 32 }, () => c.call('Host.ping2')));
    const parRate = n / ((performance.now() - t0) / 1000);
    lat.sort((a, b) => a - b);
    console.table([
      {
        what: 'Host.ping2 sequential',
        'calls/s': Math.round(seqRate),
        'p50 ms': lat[n >> 1]!.toFixed(3),
        'p99 ms': lat[Math.floor(n * 0.99)]!.toFixed(3),
      },
      { what: 'Host.ping2 32 in flight', 'calls/s': Math.round(parRate), 'p50 ms': '', 'p99 ms': '' },
    ]);
    console.log(`ratio pipelined/sequential: ${(parRate / seqRate).toFixed(2)}x`);
    await c.close();
  } finally {
    await d.stop();
  }
}
