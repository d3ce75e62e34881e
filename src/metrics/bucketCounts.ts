// A histogram with two labels kept in plain arrays, read by prom-client only when scraped. For
// the hot path (a qemu-ga command's answer, a hundred a second at 1,000 VMs): prom-client's own
// observe() validates and hashes its label object each time, which was 8 % of an idle
// daemon's CPU. The scrape prints the same lines prom-client's Histogram would.

/** One sample line: what prom-client's Histogram.get() lists. */
export interface Sample {
  metricName: string;
  labels: Record<string, string | number>;
  value: number;
}

interface Series {
  /** Observations per bucket, not cumulative; the last is +Inf. */
  counts: number[];
  sum: number;
  total: number;
}

export class BucketCounts<A extends string, B extends string> {
  /** By the first label's value, then the second's. Values come from fixed sets (commands, outcomes). */
  private readonly series = new Map<string, Map<string, Series>>();

  constructor(
    readonly bounds: readonly number[],
    readonly labelNames: readonly [A, B],
  ) {}

  observe(a: string, b: string, value: number): void {
    let byB = this.series.get(a);
    if (!byB) this.series.set(a, (byB = new Map<string, Series>()));
    let s = byB.get(b);
    if (!s) byB.set(b, (s = { counts: new Array<number>(this.bounds.length + 1).fill(0), sum: 0, total: 0 }));
    // prom-client's rule: the first bound >= the value, else +Inf.
    let i = 0;
    while (i < this.bounds.length && value > this.bounds[i]!) i++;
    s.counts[i]!++;
    s.sum += value;
    s.total++;
  }

  /** The samples as prom-client's Histogram lists them: cumulative buckets with `le` first, then _sum and _count. */
  values(name: string): Sample[] {
    const out: Sample[] = [];
    const [la, lb] = this.labelNames;
    for (const [a, byB] of this.series) {
      for (const [b, s] of byB) {
        let acc = 0;
        for (const [i, le] of this.bounds.entries()) {
          acc += s.counts[i]!;
          out.push({ metricName: `${name}_bucket`, labels: { le, [la]: a, [lb]: b }, value: acc });
        }
        out.push({ metricName: `${name}_bucket`, labels: { le: '+Inf', [la]: a, [lb]: b }, value: s.total });
        out.push({ metricName: `${name}_sum`, labels: { [la]: a, [lb]: b }, value: s.sum });
        out.push({ metricName: `${name}_count`, labels: { [la]: a, [lb]: b }, value: s.total });
      }
    }
    return out;
  }
}
