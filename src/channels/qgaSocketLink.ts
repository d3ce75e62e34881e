// QgaLink over the VM's org.qemu.guest_agent.0 socket (`--qga-via direct`): one command in
// flight at a time, each with its own timeout; replies are matched in order, and after a
// timeout or an unreadable reply the poller resyncs so a late reply can never be taken for the
// next command's. Timeouts wait on the pollers' timer wheel (at most one slot late) rather than
// a timer each: one less timer-list insert and removal per command.
import { randomInt } from 'node:crypto';
import type { ChannelName } from '../wire.js';
import type { ChannelHandler, ChannelWriter } from './channel.js';
import type { InputGuard } from './inputGuard.js';
import { GuestIssue, type GuestIssueCode, type IssueCounts } from '../guest/issues.js';
import { QgaReader, encodeCommand, encodeSync, type QgaEventSink, type QgaReply } from '../guest/qemuAgent.js';
import { QGA_SAME_REPLY, QgaCommandError, failLater, type QgaLink, type QgaReplyTo } from '../guest/qgaLink.js';
import type { PollSlots, SlotEntry } from './pollSlots.js';

// The command in flight and a settled outcome are fields, not an object each: with a thousand
// polled agents every object per command shows in the daemon's idle CPU (as garbage to collect).
export class QgaSocketLink implements QgaLink, ChannelHandler, QgaEventSink {
  private readonly reader = new QgaReader();
  private writer: ChannelWriter | null = null;
  private everConnected = false;
  /** Where the command in flight is answered; null: none in flight (the pending* fields mean nothing). */
  private pendingTo: QgaReplyTo | null = null;
  private pendingTimeoutMs = 0;
  /** True for a resync. */
  private pendingSync = false;
  /** The command, for the log. */
  private pendingWhat = '';
  /** The command whose last reply a repeat may be matched against (no arguments), or null. */
  private pendingAnswering: string | null = null;
  /** The pending command's timeout in the wheel (slot -1: none). */
  private readonly deadline: SlotEntry = { run: () => this.timedOut(), slot: -1 };
  /**
   * A settled command's outcome on its way to the poller (at most one: the poller waits for it
   * before sending); null: none.
   */
  private outcomeTo: QgaReplyTo | null = null;
  private outcomeValue: unknown = undefined;
  private outcomeErr: QgaCommandError | null = null;
  /** While data() reads a chunk: an outcome waits for its end. */
  private reading = false;
  /** Called when the connection comes or goes (the poller resyncs and polls at once). */
  onLinkChange: () => void = () => {};

  constructor(
    private readonly channel: ChannelName,
    private readonly guard: InputGuard,
    private readonly slots: PollSlots,
  ) {}

  connected(writer: ChannelWriter): void {
    this.writer = writer;
    this.everConnected = true;
    this.reader.reset();
    this.onLinkChange();
  }

  disconnected(): void {
    this.writer = null;
    this.reader.reset();
    this.settle(null, new QgaCommandError('disconnected', 'channel closed'));
    this.onLinkChange(); // the poller notes the loss at once instead of at its next tick
  }

  data(chunk: Buffer): void {
    this.reading = true;
    try {
      this.read(chunk);
    } catch (err) {
      this.reading = false;
      if (this.outcomeTo) queueMicrotask(this.deliver); // the poller still hears how its command ended
      throw err;
    }
    this.reading = false;
    this.deliver();
  }

  private read(chunk: Buffer): void {
    this.reader.read(chunk, this.pendingTo && !this.pendingSync ? this.pendingAnswering : null, this);
  }

  /** The reader's sink (QgaEventSink), called only from inside data(). */
  synced(): void {
    if (this.pendingTo && this.pendingSync) this.settle(undefined, null);
  }

  /** The reader's sink (QgaEventSink), called only from inside data(). */
  discarded(code: GuestIssueCode): void {
    this.guard.note(this.channel, new Map([[code, 1]]));
    // An over-long reply is an answer we cannot use; the framer resumes at its newline.
    if (code === GuestIssue.lineTooLong && this.pendingTo && !this.pendingSync) {
      this.settle(null, new QgaCommandError('agent', 'reply longer than the line cap', 'ReplyTooLong'));
    }
  }

  /** The reader's sink (QgaEventSink), called only from inside data(). */
  reply(reply: QgaReply, issues: IssueCounts): void {
    // Replies we asked for are bounded by our own schedule; only unsolicited ones spend the budget.
    const waited = this.pendingTo && !this.pendingSync ? this.pendingWhat : null;
    if (waited === null && !this.guard.admitMessage(this.channel)) return;
    if (issues.size)
      this.guard.note(
        this.channel,
        issues,
        waited !== null && reply.kind === 'invalid' ? { command: waited } : undefined,
      );
    this.onReply(reply);
  }

  private onReply(reply: QgaReply): void {
    if (!this.pendingTo || this.pendingSync) {
      this.guard.note(this.channel, new Map([[GuestIssue.qgaUnexpectedReply, 1]]));
      return;
    }
    if (reply.kind === 'return') this.settle(reply.value, null);
    else if (reply.kind === 'same') this.settle(QGA_SAME_REPLY, null);
    else if (reply.kind === 'error') this.settle(null, new QgaCommandError('agent', reply.desc, reply.errorClass));
    // Not a reply (its code was counted above): waiting out the timeout would only make a live
    // agent look dead; the poller resyncs at once instead, which also skips a late real reply.
    else
      this.settle(
        null,
        new QgaCommandError('protocol', `${this.pendingWhat} got a reply that is not valid qemu-ga JSON`),
      );
  }

  execute(command: string, args: Record<string, unknown> | undefined, timeoutMs: number, replyTo: QgaReplyTo): void {
    this.send(encodeCommand(command, args), false, timeoutMs, command, args === undefined ? command : null, replyTo);
  }

  resync(timeoutMs: number, replyTo: QgaReplyTo): void {
    const id = randomInt(1, 2 ** 31 - 1);
    if (this.send(encodeSync(id), true, timeoutMs, 'guest-sync-delimited', null, replyTo)) this.reader.beginSync(id);
  }

  /** True when sent (replyTo hears later either way). */
  private send(
    bytes: Buffer,
    sync: boolean,
    timeoutMs: number,
    what: string,
    answering: string | null,
    replyTo: QgaReplyTo,
  ): boolean {
    let err: QgaCommandError | null = null;
    if (this.pendingTo) err = new QgaCommandError('busy', 'a command is already in flight');
    else if (!this.writer && !this.everConnected) err = new QgaCommandError('notYet', 'channel not connected yet');
    else if (!this.writer || !this.writer.write(bytes))
      err = new QgaCommandError('disconnected', 'channel not connected');
    if (err) {
      failLater(replyTo, err);
      return false;
    }
    this.pendingTo = replyTo;
    this.pendingTimeoutMs = timeoutMs;
    this.pendingSync = sync;
    this.pendingWhat = what;
    this.pendingAnswering = answering;
    this.slots.scheduleNotBefore(this.deadline, timeoutMs);
    return true;
  }

  private timedOut(): void {
    if (this.pendingTo)
      this.settle(
        null,
        new QgaCommandError('timeout', `${this.pendingWhat} got no answer within ${this.pendingTimeoutMs} ms`),
      );
  }

  // The outcome reaches the poller once the chunk that settled it is read to its end (so a line
  // behind the reply is never taken for the reply to the command the poller sends next), and
  // otherwise (a timeout, a lost link) in a microtask, as a promise's would.
  private settle(value: unknown, err: QgaCommandError | null): void {
    const to = this.pendingTo;
    if (!to) return;
    this.pendingTo = null;
    this.pendingAnswering = null;
    this.slots.cancel(this.deadline);
    this.outcomeTo = to;
    this.outcomeValue = value;
    this.outcomeErr = err;
    if (!this.reading) queueMicrotask(this.deliver);
  }

  private readonly deliver = (): void => {
    const to = this.outcomeTo;
    if (!to) return;
    const { outcomeValue: value, outcomeErr: err } = this;
    this.outcomeTo = null;
    this.outcomeValue = undefined;
    this.outcomeErr = null;
    if (err) to.failed(err);
    else to.answered(value);
  };

  stop(): void {
    this.settle(null, new QgaCommandError('disconnected', 'stopped'));
  }
}
