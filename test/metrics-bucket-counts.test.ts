// The qemu-ga command histogram is counted in plain arrays (src/metrics/bucketCounts.ts) and only
// read by prom-client: its samples must be exactly those prom-client's own Histogram gives for
// the same observations, bounds included (a value equal to a bound is in that bucket).
import { describe, expect, it } from 'vitest';
import { Histogram, Registry } from 'prom-client';
import { BucketCounts } from '../src/metrics/bucketCounts.js';

const BOUNDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

describe('BucketCounts', () => {
  it("lists the same samples as prom-client's Histogram for the same observations", async () => {
    const ours = new BucketCounts(BOUNDS, ['command', 'outcome'] as const);
    const theirs = new Histogram({
      name: 'h',
      help: 'h',
      labelNames: ['command', 'outcome'],
      buckets: BOUNDS,
      registers: [new Registry()],
    });
    const values = [0, 0.0005, 0.00051, 0.001, 0.3, 2.5, 9.999, 10, 10.5, 1e9, ...BOUNDS.map((b) => b * 0.99)];
    const labelSets = [
      ['guest-network-get-interfaces', 'ok'],
      ['guest-network-get-interfaces', 'error'],
      ['guest-get-osinfo', 'ok'],
    ] as const;
    for (const [k, v] of values.entries()) {
      const [command, outcome] = labelSets[k % labelSets.length]!;
      ours.observe(command, outcome, v);
      theirs.observe({ command, outcome }, v);
    }
    const key = (s: { metricName?: string; labels: object; value: number }): string =>
      `${s.metricName}${JSON.stringify(s.labels)} ${s.value}`;
    const expected = (await theirs.get()).values.map(key);
    expect(ours.values('h').map(key)).toEqual(expected);
    expect(expected.length).toBe(labelSets.length * (BOUNDS.length + 3));
  });
});
