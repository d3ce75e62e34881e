// Rate-limited warnings for one VM: at most `perWindow` lines per window, then one summary of
// what was suppressed (counts by code) when the next window opens. A hostile guest therefore
// costs the log a bounded number of lines per minute, however fast it misbehaves.
export interface WarnDecision {
  /** Log this warning now. */
  log: boolean;
  /** Warnings suppressed in the previous window, by code, to log once before this one. */
  suppressed: Record<string, number> | null;
}

export class WarnLimiter {
  private windowStart: number;
  private logged = 0;
  /** Made on the first warning suppressed (most VMs never have one). */
  private suppressed: Record<string, number> | null = null;

  constructor(
    now: number,
    readonly perWindow = 5,
    readonly windowMs = 60_000,
  ) {
    this.windowStart = now;
  }

  decide(code: string, now: number): WarnDecision {
    let summary: Record<string, number> | null = null;
    if (now - this.windowStart >= this.windowMs) {
      summary = this.flush();
      this.windowStart = now;
      this.logged = 0;
    }
    if (this.logged < this.perWindow) {
      this.logged++;
      return { log: true, suppressed: summary };
    }
    const suppressed = (this.suppressed ??= {});
    suppressed[code] = (suppressed[code] ?? 0) + 1;
    return { log: false, suppressed: summary };
  }

  /** What was suppressed and not yet reported (e.g. when the VM goes away). */
  flush(): Record<string, number> | null {
    const out = this.suppressed;
    this.suppressed = null;
    return out;
  }
}
