// Polls one VM's qemu-ga over any QgaLink (the channel socket here; libvirt's agent-command call
// elsewhere): resync first, then the polled commands, each with a timeout. Network data, which
// changes, is asked every interval; host name and OS info, which barely do, after every resync
// and then every `detailsEveryMs` (VDSM's qga_sysinfo_period, 120 s): two of every three round
// trips saved, the bulk of the daemon's idle CPU with a thousand VMs. A timeout or a lost link
// marks the agent unresponsive (its last data is kept) and forces a resync; an agent error such
// as CommandNotFound still proves the agent alive; a reply that is not a reply (garbage, a NUL)
// resyncs at once and only a run of them makes the agent unresponsive.
import type { GuestReport } from '../guest/sanitize.js';
import { GuestIssue, NO_ISSUES, noteIssue, type GuestIssueCode, type IssueCounts } from '../guest/issues.js';
import { QGA_SAME_REPLY, QgaCommandError, type QgaLink, type QgaReplyTo } from '../guest/qgaLink.js';
import { QGA, QGA_POLLED, mapQgaHostName, mapQgaInterfaces, mapQgaOsInfo } from '../guest/qemuAgent.js';
import { metrics } from '../metrics/metrics.js';
import { PollSlots, slotWidthFor, type SlotEntry } from './pollSlots.js';

/** Where a poller's results go. */
export interface QgaSink {
  report(report: GuestReport): void;
  status(status: 'responsive' | 'unresponsive'): void;
  issues(issues: IssueCounts, detail?: Record<string, unknown>): void;
}

export interface QgaPollerOptions {
  intervalMs: number;
  timeoutMs: number;
  /** Host name and OS info are asked after each resync and then this often (default 120 s). */
  detailsEveryMs?: number;
  /** The timer wheel shared by every poller (one wake-up per slot, not one per poller); a private one if absent. */
  slots?: PollSlots;
}

/** VDSM asks qemu-ga for system info (host name, OS) every 120 s (qga_sysinfo_period). */
const QGA_DETAILS_EVERY_MS = 120_000;

/** Unreadable replies in a row (no good one between) after which the agent counts as unresponsive. */
export const QGA_PROTOCOL_ERRORS_TOLERATED = 3;

const NETWORK = [QGA.interfaces] as const;
const ALL = QGA_POLLED;

interface Mapped {
  report: GuestReport;
  issues: IssueCounts;
}

export class QgaPoller {
  private readonly slots: PollSlots;
  /** This poller's place in the wheel (slot -1: no round scheduled). */
  private readonly entry: SlotEntry;
  private running = false;
  private again = false;
  private stopped = true;
  private needSync = true;
  /** Commands this agent said it does not have; not asked again until it reconnects. */
  private unsupported: Set<string> | null = null;
  private spread = true;
  /** Rounds until host name and OS info are asked again (0: this round). */
  private detailsIn = 0;
  private readonly detailsEvery: number;
  /** Unreadable replies since the last good one. */
  private protocolErrors = 0;
  /** The round in progress: its commands, which one is out, what it got so far. */
  private list: readonly string[] = NETWORK;
  private index = 0;
  private report: GuestReport | null = null;
  private issues: IssueCounts | null = null;
  /** Per command, the mapping of its last reply: a link that says the reply repeated (QGA_SAME_REPLY) is not mapped again. */
  private readonly mapped = new Map<string, Mapped>();
  /** When the command out was sent (performance.now()), for its latency metric. */
  private sentAt = 0;
  /** Where the link answers a command and a resync (made once: a round allocates none). */
  private readonly commandReply: QgaReplyTo = { answered: (v) => this.answered(v), failed: (e) => this.notAnswered(e) };
  private readonly syncReply: QgaReplyTo = { answered: () => this.synced(), failed: (e) => this.syncFailed(e) };

  constructor(
    private readonly link: QgaLink,
    private readonly sink: QgaSink,
    private readonly opts: QgaPollerOptions,
  ) {
    this.detailsEvery = Math.max(1, Math.round((opts.detailsEveryMs ?? QGA_DETAILS_EVERY_MS) / opts.intervalMs));
    this.slots = opts.slots ?? new PollSlots(slotWidthFor(opts.intervalMs));
    this.entry = { run: () => this.kick(), slot: -1 };
  }

  start(): void {
    this.stopped = false;
    this.kick();
  }

  stop(): void {
    this.stopped = true;
    this.slots.cancel(this.entry);
  }

  /** A new connection (or any reason to look now): resync and poll everything without waiting. */
  linkReset(): void {
    this.needSync = true;
    this.spread = true;
    this.detailsIn = 0;
    this.protocolErrors = 0;
    this.unsupported = null;
    this.kick();
  }

  kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.slots.cancel(this.entry);
    this.round();
  }

  // A round is a small state machine over the link's callbacks rather than an async function:
  // with a thousand pollers, async frames and their await promises were a fifth of the
  // daemon's idle allocation.
  private round(): void {
    this.running = true;
    if (!this.needSync) {
      this.commands();
      return;
    }
    this.link.resync(this.opts.timeoutMs, this.syncReply);
  }

  private synced(): void {
    this.needSync = false;
    this.detailsIn = 0; // whatever went wrong may have hidden a change: ask everything
    this.commands();
  }

  private syncFailed(err: QgaCommandError): void {
    try {
      this.failed(err);
    } finally {
      this.ended();
    }
  }

  /** The round's commands: network data, and host name and OS info when due. */
  private commands(): void {
    this.list = this.detailsIn === 0 ? ALL : NETWORK;
    this.index = -1;
    this.report = null;
    this.issues = null;
    this.next();
  }

  private next(): void {
    let command: string | undefined;
    do command = this.list[++this.index];
    while (command !== undefined && this.unsupported?.has(command));
    if (command === undefined) {
      try {
        this.detailsIn = this.list === ALL ? this.detailsEvery - 1 : this.detailsIn - 1;
        this.flush();
        this.sink.status('responsive');
      } finally {
        this.ended();
      }
      return;
    }
    this.sentAt = performance.now();
    this.link.execute(command, undefined, this.opts.timeoutMs, this.commandReply);
  }

  private answered(value: unknown): void {
    metrics.qgaCommand(this.list[this.index] ?? '', 'ok', (performance.now() - this.sentAt) / 1000);
    this.protocolErrors = 0;
    const m = this.mappedOf(this.list[this.index] ?? '', value);
    this.report = this.report === null ? m.report : Object.assign({}, this.report, m.report); // never merged into a cached mapping
    if (m.issues.size)
      for (const [code, n] of m.issues) noteIssue((this.issues ??= new Map<GuestIssueCode, number>()), code, n);
    this.next();
  }

  private notAnswered(err: QgaCommandError): void {
    const command = this.list[this.index] ?? '';
    metrics.qgaCommand(command, 'error', (performance.now() - this.sentAt) / 1000);
    if (err.kind === 'agent') {
      // The agent answered: it is alive, it just cannot do this one.
      if (err.errorClass === 'CommandNotFound' || err.errorClass === 'CommandDisabled')
        (this.unsupported ??= new Set()).add(command);
      this.protocolErrors = 0;
      this.sink.issues(new Map([[GuestIssue.qgaError, 1]]), { command, errorClass: err.errorClass, desc: err.message });
      this.next();
      return;
    }
    try {
      this.flush();
      this.failed(err);
    } finally {
      this.ended();
    }
  }

  /**
   * Ends the round and schedules the next; called from a `finally` after the round's last step
   * (a closure for that step was an object per round).
   */
  private ended(): void {
    this.report = null;
    this.issues = null;
    this.running = false;
    if (this.stopped) return;
    if (this.again) {
      this.again = false;
      this.kick();
    } else {
      // The first wait after a (re)connection is a random part of the interval: VMs found
      // together (a daemon start with a thousand sockets) are then polled spread over the
      // interval, not in one burst.
      const delay = this.spread ? Math.round(this.opts.intervalMs * Math.random()) : this.opts.intervalMs;
      this.spread = false;
      this.slots.schedule(this.entry, delay);
    }
  }

  /** The mapping of `value`; for QGA_SAME_REPLY, the last one (every value the link resolved with was mapped here). */
  private mappedOf(command: string, value: unknown): Mapped {
    let m = this.mapped.get(command);
    if (!m || value !== QGA_SAME_REPLY) {
      const report: GuestReport = {};
      const issues: IssueCounts = new Map();
      this.map(command, value, report, issues);
      m = { report, issues: issues.size ? issues : NO_ISSUES };
      this.mapped.set(command, m);
    }
    return m;
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

  /**
   * Whatever the round got before it ended is reported once (one change, not three). A round
   * of one command hands on its cached mapping as it is (the registry reads, never keeps, it).
   */
  private flush(): void {
    const { report, issues } = this;
    if (issues) this.sink.issues(issues);
    if (report && (report.netIfaces !== undefined || report.guestName !== undefined || report.guestOs !== undefined))
      this.sink.report(report);
  }

  private failed(err: unknown): void {
    this.needSync = true;
    const e = err instanceof QgaCommandError ? err : new QgaCommandError('disconnected', String(err));
    // The link calls linkReset() when it comes up; until then the agent's status stays as it is.
    if (e.kind === 'notYet') return;
    if (e.kind === 'protocol') {
      // The agent is talking, but not in step: resync now. Data already known stays; only a run
      // of unreadable replies (a broken agent, not a stray byte) makes it unresponsive.
      this.protocolErrors++;
      if (this.protocolErrors < QGA_PROTOCOL_ERRORS_TOLERATED) {
        this.again = true;
        return;
      }
    }
    if (e.code) this.sink.issues(new Map([[e.code, 1]]), { reason: e.message });
    this.sink.status('unresponsive');
  }
}
