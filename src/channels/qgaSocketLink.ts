// QgaLink over the VM's org.qemu.guest_agent.0 socket (`--qga-via direct`): one command in
// flight at a time, each with its own timeout; replies are matched in order, and after a
// timeout or an unreadable reply the poller resyncs so a late reply can never be taken for the
// next command's.
import { randomInt } from 'node:crypto';
import type { ChannelName } from '../wire.js';
import type { ChannelHandler, ChannelWriter } from './channel.js';
import type { InputGuard } from './inputGuard.js';
import { GuestIssue } from '../guest/issues.js';
import { QgaReader, encodeCommand, encodeSync, type QgaReply } from '../guest/qemuAgent.js';
import { QGA_SAME_REPLY, QgaCommandError, type QgaLink } from '../guest/qgaLink.js';

interface Pending {
  resolve: (value: unknown) => void;
  reject: (err: QgaCommandError) => void;
  timer: NodeJS.Timeout;
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
  /** Called when the connection comes or goes (the poller resyncs and polls at once). */
  onLinkChange: () => void = () => {};

  constructor(
    private readonly channel: ChannelName,
    private readonly guard: InputGuard,
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

  execute(command: string, args: Record<string, unknown> | undefined, timeoutMs: number): Promise<unknown> {
    return this.send(encodeCommand(command, args), false, timeoutMs, command, args === undefined ? command : null);
  }

  async resync(timeoutMs: number): Promise<void> {
    const id = randomInt(1, 2 ** 31 - 1);
    this.reader.beginSync(id);
    await this.send(encodeSync(id), true, timeoutMs, 'guest-sync-delimited', null);
  }

  private send(
    bytes: Buffer,
    sync: boolean,
    timeoutMs: number,
    what: string,
    answering: string | null,
  ): Promise<unknown> {
    if (this.pending) return Promise.reject(new QgaCommandError('busy', 'a command is already in flight'));
    if (!this.writer && !this.everConnected)
      return Promise.reject(new QgaCommandError('notYet', 'channel not connected yet'));
    if (!this.writer || !this.writer.write(bytes))
      return Promise.reject(new QgaCommandError('disconnected', 'channel not connected'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => this.settle(null, new QgaCommandError('timeout', `${what} got no answer within ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.pending = { resolve, reject, timer, sync, what, answering };
    });
  }

  private settle(value: unknown, err: QgaCommandError | null): void {
    const p = this.pending;
    if (!p) return;
    this.pending = null;
    clearTimeout(p.timer);
    if (err) p.reject(err);
    else p.resolve(value);
  }

  stop(): void {
    this.settle(null, new QgaCommandError('disconnected', 'stopped'));
  }
}
