// Per-VM accounting of untrusted input: the rate budget its channels share, counters of every
// issue code, and warnings that are rate-limited so one hostile guest cannot flood the log.
import type { Logger } from 'pino';
import type { ChannelName } from '../wire.js';
import { ChannelLogCode, GuestIssue, type GuestIssueCode, type IssueCounts } from '../guest/issues.js';
import { VmRateBudget } from '../guest/rateBudget.js';
import { WarnLimiter } from '../guest/warnLimiter.js';
import { metrics } from '../metrics/metrics.js';

/** Codes that are normal traffic, counted but never warned about. */
const QUIET: ReadonlySet<string> = new Set([GuestIssue.unknownMessage, GuestIssue.qgaUnexpectedReply]);

export class InputGuard {
  readonly budget: VmRateBudget;
  /** Issue counts, made on the first issue (most VMs never have one; an empty Map is ~0.1 KiB). */
  private counts: Map<GuestIssueCode, number> | null = null;
  private readonly warnings: WarnLimiter;
  /** Reports what was suppressed when the window ends, even if the guest behaves from then on. */
  private summaryTimer: NodeJS.Timeout | null = null;

  constructor(
    readonly vmId: string,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.budget = new VmRateBudget(now());
    this.warnings = new WarnLimiter(now());
  }

  /** One complete message arrived: may it be read, or is the budget spent? */
  admitMessage(channel: ChannelName): boolean {
    if (this.budget.messages.tryTake(1, this.now())) return true;
    this.note(channel, new Map([[GuestIssue.rateLimited, 1]]));
    return false;
  }

  /** Counts every issue; warns (rate-limited) about those that are not routine. */
  note(channel: ChannelName, issues: IssueCounts, detail?: Record<string, unknown>): void {
    metrics.guestIssues(issues);
    for (const [code, n] of issues) {
      const counts = (this.counts ??= new Map<GuestIssueCode, number>());
      counts.set(code, (counts.get(code) ?? 0) + n);
      if (QUIET.has(code)) {
        this.log.debug({ vmId: this.vmId, channel, code, count: n, ...detail }, 'guest input ignored');
        continue;
      }
      const d = this.warnings.decide(code, this.now());
      if (d.suppressed) this.summary(d.suppressed);
      if (d.log)
        this.log.warn({ vmId: this.vmId, channel, code, count: n, ...detail }, 'bad guest input dropped or replaced');
      else if (!this.summaryTimer) {
        this.summaryTimer = setTimeout(() => {
          this.summaryTimer = null;
          this.flush();
        }, this.warnings.windowMs);
        this.summaryTimer.unref();
      }
    }
  }

  private summary(suppressed: Record<string, number>): void {
    this.log.warn(
      { vmId: this.vmId, code: ChannelLogCode.warningsSuppressed, suppressed },
      'guest warnings suppressed (rate limit)',
    );
  }

  private flush(): void {
    const s = this.warnings.flush();
    if (s) this.summary(s);
  }

  /** The VM is going away: what was suppressed, and every count, said once. */
  close(): void {
    if (this.summaryTimer) clearTimeout(this.summaryTimer);
    this.summaryTimer = null;
    this.flush();
    if (this.counts?.size)
      this.log.info(
        { vmId: this.vmId, counts: Object.fromEntries(this.counts) },
        'guest input issues while the VM was known',
      );
  }
}
