// QgaLink over the VM's org.qemu.guest_agent.0 socket (`--qga-via direct`): one command in
// flight at a time, each with its own timeout; replies are matched in order, and after a
// timeout or an unreadable reply the poller resyncs so a late reply can never be taken for the
// next command's. Timeouts wait on the pollers' timer wheel (at most one slot late) rather than
// a timer each: one less timer-list insert and removal per command.
import { randomInt } from 'node:crypto';
import type { ChannelName } from '../wire.js';
import type { ChannelHandler, ChannelWriter } from './channel.js';
import type { InputGuard } from './inputGuard.js';
import { GuestIssue } from '../guest/issues.js';
import { QgaReader, encodeCommand, encodeSync, type QgaReply } from '../guest/qemuAgent.js';
import { QGA_SAME_REPLY, QgaCommandError, failLater, type QgaLink, type QgaReplyTo } from '../guest/qgaLink.js';
import type { PollSlots, SlotEntry } from './pollSlots.js';

interface Pending {
  replyTo: QgaReplyTo;
  timeoutMs: number;
  sync: boolean;
  /** The command, for the log. */
  what: string;
  /** The command whose last reply a repeat may be matched against (no arguments), or null. */
  answering: string | null;
}

export class QgaSocketLink implements QgaLink, ChannelHandler {
  private readonly reader = new QgaReader();
  private writer: ChannelWriter | null = null;
  private everConnected = false;
  private pending: Pending | null = null;
  /** The pending command's timeout in the wheel (slot -1: none). */
  private readonly deadline: SlotEntry = { run: () => this.timedOut(), slot: -1 };
  /** A settled command's outcome on its way to the poller (at most one: the poller waits for it before sending). */
  private outcome: { replyTo: QgaReplyTo; value: unknown; err: QgaCommandError | null } | null = null;
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
      if (this.outcome) queueMicrotask(this.deliver); // the poller still hears how its command ended
      throw err;
    }
    this.reading = false;
    this.deliver();
  }

  private read(chunk: Buffer): void {
    for (const ev of this.reader.push(chunk, this.pending && !this.pending.sync ? this.pending.answering : null)) {
      if (ev.type === 'synced') {
        if (this.pending?.sync) this.settle(undefined, null);
        continue;
      }
      if (ev.type === 'discarded') {
        this.guard.note(this.channel, new Map([[ev.code, 1]]));
        // An over-long reply is an answer we cannot use; the framer resumes at its newline.
        if (ev.code === GuestIssue.lineTooLong && this.pending && !this.pending.sync) {
          this.settle(null, new QgaCommandError('agent', 'reply longer than the line cap', 'ReplyTooLong'));
        }
        continue;
      }
      // Replies we asked for are bounded by our own schedule; only unsolicited ones spend the budget.
      const waited = this.pending && !this.pending.sync ? this.pending.what : null;
      if (waited === null && !this.guard.admitMessage(this.channel)) continue;
      if (ev.issues.size)
        this.guard.note(
          this.channel,
          ev.issues,
          waited !== null && ev.reply.kind === 'invalid' ? { command: waited } : undefined,
        );
      this.onReply(ev.reply);
    }
  }

  private onReply(reply: QgaReply): void {
    if (!this.pending || this.pending.sync) {
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
        new QgaCommandError('protocol', `${this.pending.what} got a reply that is not valid qemu-ga JSON`),
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
    if (this.pending) err = new QgaCommandError('busy', 'a command is already in flight');
    else if (!this.writer && !this.everConnected) err = new QgaCommandError('notYet', 'channel not connected yet');
    else if (!this.writer || !this.writer.write(bytes))
      err = new QgaCommandError('disconnected', 'channel not connected');
    if (err) {
      failLater(replyTo, err);
      return false;
    }
    this.pending = { replyTo, timeoutMs, sync, what, answering };
    this.slots.scheduleNotBefore(this.deadline, timeoutMs);
    return true;
  }

  private timedOut(): void {
    const p = this.pending;
    if (p) this.settle(null, new QgaCommandError('timeout', `${p.what} got no answer within ${p.timeoutMs} ms`));
  }

  // The outcome reaches the poller once the chunk that settled it is read to its end (so a line
  // behind the reply is never taken for the reply to the command the poller sends next), and
  // otherwise (a timeout, a lost link) in a microtask, as a promise's would.
  private settle(value: unknown, err: QgaCommandError | null): void {
    const p = this.pending;
    if (!p) return;
    this.pending = null;
    this.slots.cancel(this.deadline);
    this.outcome = { replyTo: p.replyTo, value, err };
    if (!this.reading) queueMicrotask(this.deliver);
  }

  private readonly deliver = (): void => {
    const o = this.outcome;
    if (!o) return;
    this.outcome = null;
    if (o.err) o.replyTo.failed(o.err);
    else o.replyTo.answered(o.value);
  };

  stop(): void {
    this.settle(null, new QgaCommandError('disconnected', 'stopped'));
  }
}
