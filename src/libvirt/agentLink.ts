// qemu-ga through libvirt (`--qga-via libvirt`, and `auto` for domains libvirtd knows): the same
// commands the direct link sends, carried by libvirt's agent-command call, with the reply read by
// the shared qemu-ga protocol code. libvirt's failures become the poller's failure kinds (so they
// show as guestAgentStatus) and one warning per change of cause, never an exception that escapes.
import type { Logger } from 'pino';
import { GuestIssue, type IssueCounts } from '../guest/issues.js';
import { GUEST_LIMITS } from '../guest/sanitize.js';
import { commandJson, parseQgaReply } from '../guest/qemuAgent.js';
import { QgaCommandError, type QgaFailureKind, type QgaLink, type QgaReplyTo } from '../guest/qgaLink.js';
import { LibvirtCallError, LibvirtUnavailableError, type LibvirtClient } from './client.js';
import { VirErr } from './wire.js';

export interface LibvirtFailure {
  kind: QgaFailureKind;
  /** Stable log code. */
  code: string;
  message: string;
}

/** What a libvirt failure means for the agent's status (pure, so each case is unit-tested). */
export function classifyLibvirtFailure(err: unknown): LibvirtFailure {
  if (err instanceof LibvirtUnavailableError) {
    return err.timedOut
      ? { kind: 'timeout', code: 'LIBVIRT_ERR_TIMEOUT', message: err.message }
      : { kind: 'disconnected', code: 'LIBVIRT_ERR_UNAVAILABLE', message: err.message };
  }
  if (err instanceof LibvirtCallError) {
    switch (err.code) {
      case VirErr.noDomain:
        return { kind: 'disconnected', code: 'LIBVIRT_ERR_NO_DOMAIN', message: err.message };
      case VirErr.operationInvalid:
        return { kind: 'disconnected', code: 'LIBVIRT_ERR_DOMAIN_NOT_RUNNING', message: err.message };
      case VirErr.agentUnresponsive:
      case VirErr.agentUnsynced:
        // "not connected" (no agent in the guest yet) versus an agent that did not answer in time.
        return /not connected|not available due to an error/i.test(err.message)
          ? { kind: 'disconnected', code: 'LIBVIRT_ERR_AGENT_NOT_CONNECTED', message: err.message }
          : { kind: 'timeout', code: 'LIBVIRT_ERR_AGENT_UNRESPONSIVE', message: err.message };
      case VirErr.operationTimeout:
        return { kind: 'timeout', code: 'LIBVIRT_ERR_TIMEOUT', message: err.message };
      default:
        return { kind: 'disconnected', code: `LIBVIRT_ERR_${err.code}`, message: err.message };
    }
  }
  return { kind: 'disconnected', code: 'LIBVIRT_ERR_UNEXPECTED', message: String(err) };
}

export class LibvirtQgaLink implements QgaLink {
  private lastFailure: string | null = null;

  constructor(
    private readonly client: LibvirtClient,
    private readonly vmId: string,
    private readonly log: Logger,
    /** Issues found in the agent's replies (the VM's input guard counts and warns). */
    private readonly note: (issues: IssueCounts) => void,
  ) {}

  execute(command: string, args: Record<string, unknown> | undefined, timeoutMs: number, replyTo: QgaReplyTo): void {
    this.ask(command, args, timeoutMs).then(
      (value) => replyTo.answered(value),
      (err: unknown) =>
        replyTo.failed(err instanceof QgaCommandError ? err : new QgaCommandError('disconnected', String(err))),
    );
  }

  /** One agent-command call: the reply's `return` value, or a QgaCommandError. */
  async ask(command: string, args: Record<string, unknown> | undefined, timeoutMs: number): Promise<unknown> {
    let text: string;
    try {
      text = await this.client.agentCommand(this.vmId, commandJson(command, args), timeoutMs);
    } catch (err) {
      const f = classifyLibvirtFailure(err);
      // One warning per change of cause: a libvirtd down for an hour is one line per VM, not 720.
      if (f.code !== this.lastFailure)
        this.log.warn({ vmId: this.vmId, code: f.code, command, reason: f.message }, 'qemu-ga through libvirt failed');
      this.lastFailure = f.code;
      throw new QgaCommandError(f.kind, f.message);
    }
    if (this.lastFailure !== null)
      this.log.info({ vmId: this.vmId, after: this.lastFailure }, 'qemu-ga through libvirt answers again');
    this.lastFailure = null;
    const issues: IssueCounts = new Map();
    const bytes = Buffer.from(text, 'utf8');
    if (bytes.length > GUEST_LIMITS.maxLineBytes) {
      // The same cap as a line on the socket: libvirt passes replies of up to 10 MiB.
      this.note(new Map([[GuestIssue.lineTooLong, 1]]));
      throw new QgaCommandError('agent', `reply of ${bytes.length} bytes dropped (over ${GUEST_LIMITS.maxLineBytes})`);
    }
    const reply = parseQgaReply(bytes, issues);
    if (issues.size) this.note(issues);
    if (reply.kind === 'return') return reply.value;
    if (reply.kind === 'error') throw new QgaCommandError('agent', reply.desc, reply.errorClass);
    throw new QgaCommandError('agent', 'libvirt passed on an unreadable agent reply');
  }

  /** libvirt synchronises with the agent itself (guest-sync) before it sends a command. */
  resync(_timeoutMs: number, replyTo: QgaReplyTo): void {
    queueMicrotask(() => replyTo.answered(undefined));
  }
}

/**
 * `--qga-via auto`, per VM: through libvirt when libvirtd answers and runs a domain with the VM's
 * UUID, directly otherwise. A VM already reached through libvirt stays so while libvirtd is away
 * for less than `holdMs` (a libvirtd restart): connecting to its socket meanwhile would take the
 * agent away from libvirtd when it comes back.
 */
export class LibvirtRouteDecider {
  private readonly viaLibvirt = new Set<string>();
  private downSince: number | null;
  private holdTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly client: LibvirtClient,
    private readonly holdMs: number,
    /** Called when libvirtd has stayed away past the hold: routes are to be decided again. */
    onHoldExpired: () => void,
    private readonly now: () => number = Date.now,
  ) {
    this.downSince = client.state === 'down' ? now() : null;
    client.on('state', (s: string) => {
      if (this.holdTimer) clearTimeout(this.holdTimer);
      this.holdTimer = null;
      this.downSince = s === 'down' ? now() : null;
      if (s === 'down') {
        this.holdTimer = setTimeout(onHoldExpired, holdMs + 1);
        this.holdTimer.unref();
      }
    });
  }

  stop(): void {
    if (this.holdTimer) clearTimeout(this.holdTimer);
    this.holdTimer = null;
  }

  async useLibvirt(vmId: string): Promise<boolean> {
    let decision: boolean;
    if (this.client.state === 'up') {
      try {
        decision = await this.client.hasDomain(vmId);
      } catch {
        decision = this.viaLibvirt.has(vmId); // libvirtd hiccup: keep what was decided
      }
    } else {
      decision = this.viaLibvirt.has(vmId) && this.downSince !== null && this.now() - this.downSince < this.holdMs;
    }
    if (decision) this.viaLibvirt.add(vmId);
    else this.viaLibvirt.delete(vmId);
    return decision;
  }

  forget(vmId: string): void {
    this.viaLibvirt.delete(vmId);
    this.client.forget(vmId);
  }
}
