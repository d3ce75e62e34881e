// Polls one VM's qemu-ga every interval over any QgaLink (the channel socket here; libvirt's
// agent-command call elsewhere): resync first, then each polled command with a timeout. A
// timeout or a lost link marks the agent unresponsive (its last data is kept) and forces a
// resync; an agent error such as CommandNotFound still proves the agent alive.
import type { GuestReport } from '../guest/sanitize.js';
import { GuestIssue, noteIssue, type IssueCounts } from '../guest/issues.js';
import { QgaCommandError, type QgaLink } from '../guest/qgaLink.js';
import { QGA, QGA_POLLED, mapQgaHostName, mapQgaInterfaces, mapQgaOsInfo } from '../guest/qemuAgent.js';

/** Where a poller's results go. */
export interface QgaSink {
  report(report: GuestReport): void;
  status(status: 'responsive' | 'unresponsive'): void;
  issues(issues: IssueCounts, detail?: Record<string, unknown>): void;
}

export interface QgaPollerOptions {
  intervalMs: number;
  timeoutMs: number;
}

export class QgaPoller {
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private again = false;
  private stopped = true;
  private needSync = true;
  /** Commands this agent said it does not have; not asked again until it reconnects. */
  private unsupported = new Set<string>();
  private spread = true;
  /** Per command, the last value mapped: a link that hands back the same value object (an unchanged reply) is not mapped again. */
  private mapped = new Map<string, { value: unknown; report: GuestReport; issues: IssueCounts }>();

  constructor(
    private readonly link: QgaLink,
    private readonly sink: QgaSink,
    private readonly opts: QgaPollerOptions,
  ) {}

  start(): void {
    this.stopped = false;
    this.kick();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** A new connection (or any reason to look now): resync and poll without waiting. */
  linkReset(): void {
    this.needSync = true;
    this.spread = true;
    this.unsupported.clear();
    this.kick();
  }

  kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    void this.round();
  }

  private async round(): Promise<void> {
    this.running = true;
    try {
      await this.poll();
    } finally {
      this.running = false;
      if (!this.stopped) {
        if (this.again) {
          this.again = false;
          this.kick();
        } else {
          // The first wait after a (re)connection is a random part of the interval: VMs found
          // together (a daemon start with a thousand sockets) are then polled spread over the
          // interval, not in one burst.
          const delay = this.spread ? Math.round(this.opts.intervalMs * Math.random()) : this.opts.intervalMs;
          this.spread = false;
          this.timer = setTimeout(() => this.kick(), delay);
        }
      }
    }
  }

  private async poll(): Promise<void> {
    const { timeoutMs } = this.opts;
    if (this.needSync) {
      try {
        await this.link.resync(timeoutMs);
        this.needSync = false;
      } catch (err) {
        this.failed(err);
        return;
      }
    }
    const report: GuestReport = {};
    const issues: IssueCounts = new Map();
    try {
      for (const command of QGA_POLLED) {
        if (this.unsupported.has(command)) continue;
        let value: unknown;
        try {
          value = await this.link.execute(command, undefined, timeoutMs);
        } catch (err) {
          if (err instanceof QgaCommandError && err.kind === 'agent') {
            // The agent answered: it is alive, it just cannot do this one.
            if (err.errorClass === 'CommandNotFound' || err.errorClass === 'CommandDisabled') this.unsupported.add(command);
            this.sink.issues(new Map([[GuestIssue.qgaError, 1]]), { command, errorClass: err.errorClass, desc: err.message });
            continue;
          }
          throw err;
        }
        this.apply(command, value, report, issues);
      }
    } catch (err) {
      this.flush(report, issues);
      this.failed(err);
      return;
    }
    this.flush(report, issues);
    this.sink.status('responsive');
  }

  private apply(command: string, value: unknown, report: GuestReport, issues: IssueCounts): void {
    let m = this.mapped.get(command);
    if (!m || m.value !== value) {
      m = { value, report: {}, issues: new Map() };
      this.map(command, value, m.report, m.issues);
      this.mapped.set(command, m);
    }
    Object.assign(report, m.report);
    for (const [code, n] of m.issues) noteIssue(issues, code, n);
  }

  private map(command: string, value: unknown, report: GuestReport, issues: IssueCounts): void {
    if (command === QGA.interfaces) {
      const ifaces = mapQgaInterfaces(value, issues);
      if (ifaces) report.netIfaces = ifaces;
    } else if (command === QGA.hostName) {
      const name = mapQgaHostName(value, issues);
      if (name !== null) report.guestName = name;
    } else if (command === QGA.osInfo) {
      const os = mapQgaOsInfo(value, issues);
      if (os !== null) report.guestOs = os;
    }
  }

  /** Whatever the round got before it ended is reported once (one change, not three). */
  private flush(report: GuestReport, issues: IssueCounts): void {
    if (issues.size) this.sink.issues(issues);
    if (Object.keys(report).length) this.sink.report(report);
  }

  private failed(err: unknown): void {
    this.needSync = true;
    const e = err instanceof QgaCommandError ? err : new QgaCommandError('disconnected', String(err));
    // The link calls linkReset() when it comes up; until then the agent's status stays as it is.
    if (e.kind === 'notYet') return;
    if (e.code) this.sink.issues(new Map([[e.code, 1]]), { reason: e.message });
    this.sink.status('unresponsive');
  }
}
