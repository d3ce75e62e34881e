// Counts kept before prom-client has loaded (src/metrics/metrics.ts loads it after start-up):
// plain maps by label set, moved into the prom-client metric when it exists, so a count made at
// start-up is on the first scrape. Label values come from fixed sets, so the maps stay small
// however long the wait.
import type { Counter, Gauge, Histogram } from 'prom-client';

export type Labels = Partial<Record<string, string>>;

export interface CounterRecorder {
  inc(labels: Labels, n?: number): void;
}
export interface GaugeRecorder {
  inc(labels: Labels): void;
  dec(labels: Labels): void;
  set(labels: Labels, value: number): void;
}
export interface HistogramRecorder {
  observe(labels: Labels, seconds: number): void;
}

/** Map key of a label set (the recorders always pass their labels in the same order). */
const keyOf = (labels: Labels): string => JSON.stringify(labels);

export class EarlyCounter implements CounterRecorder {
  private readonly totals = new Map<string, { labels: Labels; n: number }>();

  inc(labels: Labels, n = 1): void {
    const key = keyOf(labels);
    const t = this.totals.get(key);
    if (t) t.n += n;
    else this.totals.set(key, { labels, n });
  }

  moveTo<T extends string>(counter: Counter<T>): Counter<T> {
    for (const { labels, n } of this.totals.values()) {
      if (Object.keys(labels).length) counter.inc(labels, n);
      else counter.inc(n);
    }
    return counter;
  }
}

export class EarlyGauge implements GaugeRecorder {
  private readonly values = new Map<string, { labels: Labels; value: number }>();

  inc(labels: Labels): void {
    this.add(labels, 1);
  }

  dec(labels: Labels): void {
    this.add(labels, -1);
  }

  set(labels: Labels, value: number): void {
    this.values.set(keyOf(labels), { labels, value });
  }

  moveTo<T extends string>(gauge: Gauge<T>): Gauge<T> {
    for (const { labels, value } of this.values.values()) gauge.set(labels, value);
    return gauge;
  }

  private add(labels: Labels, d: number): void {
    const key = keyOf(labels);
    const v = this.values.get(key);
    if (v) v.value += d;
    else this.values.set(key, { labels, value: d });
  }
}

/**
 * Observations as counts and sums per bucket (prom-client's rule: the first bound >= the value).
 * Moving them observes each bucket's mean once per observation: the same bucket counts, count
 * and sum as observing the values themselves.
 */
export class EarlyHistogram implements HistogramRecorder {
  private readonly series = new Map<string, { labels: Labels; count: number[]; sum: number[] }>();

  constructor(private readonly bounds: readonly number[]) {}

  observe(labels: Labels, seconds: number): void {
    const key = keyOf(labels);
    let s = this.series.get(key);
    if (!s) {
      const n = this.bounds.length + 1; // the last is +Inf
      s = { labels, count: new Array<number>(n).fill(0), sum: new Array<number>(n).fill(0) };
      this.series.set(key, s);
    }
    let i = this.bounds.findIndex((b) => seconds <= b);
    if (i < 0) i = this.bounds.length;
    s.count[i]! += 1;
    s.sum[i]! += seconds;
  }

  moveTo<T extends string>(histogram: Histogram<T>): Histogram<T> {
    for (const { labels, count, sum } of this.series.values()) {
      for (const [i, n] of count.entries()) {
        if (!n) continue;
        // A mean cannot leave its bucket, but rounding could push it past the bucket's bound.
        const mean = Math.min(sum[i]! / n, this.bounds[i] ?? Infinity);
        for (let k = 0; k < n; k++) histogram.observe(labels, mean);
      }
    }
    return histogram;
  }
}
