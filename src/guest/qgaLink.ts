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

/** How a poller reaches qemu-ga. Failures reject with QgaCommandError. */
export interface QgaLink {
  /** Sends one command; resolves with its `return` value (unsanitised: the poller maps it), or QGA_SAME_REPLY. */
  execute(command: string, args: Record<string, unknown> | undefined, timeoutMs: number): Promise<unknown>;
  /** Brings the stream back in step (guest-sync-delimited); a no-op where the transport does it. */
  resync(timeoutMs: number): Promise<void>;
}
