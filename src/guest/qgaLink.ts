// How a qemu-ga poller reaches the agent, whatever carries the bytes (the channel socket, or
// libvirt's agent-command call): the link interface and its one failure type.
import { GuestIssue, type GuestIssueCode } from './issues.js';

/**
 * `notYet`: the link has not been up yet (a socket still connecting): nothing was asked, so no news.
 * `protocol`: the agent answered with something that is not a reply (not JSON, not an object):
 * proof of life, but the stream may be out of step, so the poller resyncs at once.
 */
export type QgaFailureKind = 'timeout' | 'disconnected' | 'agent' | 'busy' | 'notYet' | 'protocol';

export class QgaCommandError extends Error {
  constructor(
    readonly kind: QgaFailureKind,
    message: string,
    /** For 'agent': qemu-ga's error class (sanitised), e.g. CommandNotFound. */
    readonly errorClass: string | null = null,
  ) {
    super(message);
    this.name = 'QgaCommandError';
  }

  /** The issue to count for this failure; null for `protocol`, whose GUEST_ERR_* code the link counted where it read the bytes. */
  get code(): GuestIssueCode | null {
    return this.kind === 'timeout' ? GuestIssue.qgaTimeout : this.kind === 'agent' ? GuestIssue.qgaError : null;
  }
}

/**
 * What `execute` may resolve with instead of a value: the agent repeated its last reply to this
 * command (counters aside), so what the caller made of that reply still holds. A link says it
 * only of a command whose earlier reply it resolved with a value, to the same caller.
 */
export const QGA_SAME_REPLY: unique symbol = Symbol('qemu-ga repeated its last reply');

/**
 * Where a link's outcome goes: exactly one of the two per execute() or resync(), and never from
 * inside that call. Callbacks, not promises: with a thousand polled agents a promise, its
 * reactions and a timer per command were a tenth of the daemon's idle CPU.
 */
export interface QgaReplyTo {
  /** The command's `return` value (unsanitised: the poller maps it), QGA_SAME_REPLY, or undefined for a resync. */
  answered(value: unknown): void;
  failed(err: QgaCommandError): void;
}

/** How a poller reaches qemu-ga. */
export interface QgaLink {
  /** Sends one command; its answer or failure goes to `replyTo`. */
  execute(command: string, args: Record<string, unknown> | undefined, timeoutMs: number, replyTo: QgaReplyTo): void;
  /** Brings the stream back in step (guest-sync-delimited); answered at once where the transport does it. */
  resync(timeoutMs: number, replyTo: QgaReplyTo): void;
}

/** A failure from inside execute()/resync() reaches `replyTo` after the call returns. */
export function failLater(replyTo: QgaReplyTo, err: QgaCommandError): void {
  queueMicrotask(() => replyTo.failed(err));
}
