// Feeds an oVirt guest agent connection to the pure protocol: sends `refresh` on connect,
// frames and parses what the agent pushes, answers api-version negotiation, reports sanitised
// data to the registry, and marks the agent unresponsive after a silence.
import type { ChannelName } from '../wire.js';
import type { VmRegistry } from '../vms/registry.js';
import type { ChannelHandler, ChannelWriter } from './channel.js';
import { LineFramer, isBlank, type FrameSink } from '../guest/framing.js';
import type { GuestIssue } from '../guest/issues.js';
import type { InputGuard } from './inputGuard.js';
import { encodeApiVersion, encodeRefresh, negotiateApiVersion, parseOvirtLine } from '../guest/ovirtAgent.js';
import { GUEST_LIMITS } from '../guest/sanitize.js';
import { LinePattern } from '../guest/linePattern.js';
import type { GuestReport } from '../guest/sanitize.js';

/** Longer lines are not kept as patterns (a copy is kept: ~0.3 KiB for a heartbeat, ~1 KiB for 4 NICs' data). */
const MAX_PATTERN_BYTES = 8 * 1024;

export class OvirtChannelHandler implements ChannelHandler, FrameSink {
  private readonly framer = new LineFramer(GUEST_LIMITS.maxLineBytes);
  private writer: ChannelWriter | null = null;
  private apiVersion = 0;
  private silence: NodeJS.Timeout | null = null;
  /** When the agent was last heard (performance.now()). */
  private lastHeard = 0;
  /**
   * The agent repeats itself; what it said last is kept so that a repeat is not parsed again
   * (src/guest/linePattern.ts). The last heartbeat that parsed clean, numbers aside, and what it
   * announced: a heartbeat every 5 s.
   */
  private beat: { pattern: LinePattern; apiVersion: number | null } | null = null;
  /** The last network data that parsed clean, exactly, and its report: the agent sends it every 120 s (other data only on refresh). */
  private network: { pattern: LinePattern; report: GuestReport } | null = null;

  constructor(
    private readonly vmId: string,
    private readonly channel: ChannelName,
    private readonly registry: VmRegistry,
    private readonly guard: InputGuard,
    /** No message for this long makes the agent unresponsive (VDSM: 120 s). */
    private readonly silenceMs: number,
  ) {}

  connected(writer: ChannelWriter): void {
    this.writer = writer;
    this.framer.reset();
    this.apiVersion = 0;
    this.beat = null;
    this.network = null;
    writer.write(encodeRefresh());
  }

  data(chunk: Buffer): void {
    this.framer.feed(chunk, this);
  }

  /** FrameSink: a line the framer found. */
  line(chunk: Buffer, start: number, end: number): void {
    if (isBlank(chunk, start, end) || !this.guard.admitMessage(this.channel)) return;
    this.handleLine(chunk, start, end);
  }

  /** FrameSink: a line over the cap was dropped. */
  dropped(code: typeof GuestIssue.lineTooLong): void {
    this.guard.note(this.channel, new Map([[code, 1]]));
  }

  /** FrameSink: the oVirt agent has no delimiter byte (the framer is made without one). */
  delimiter(): void {
    // never called
  }

  private handleLine(chunk: Buffer, start: number, end: number): void {
    const beat = this.beat;
    if (beat !== null && beat.pattern.matches(chunk, start, end)) {
      this.heartbeat(beat.apiVersion);
      return;
    }
    const network = this.network;
    if (network !== null && network.pattern.matches(chunk, start, end)) {
      // The same bytes parse to the same report; the registry still compares it (its state may
      // have been replaced since: a VM started again, a channel re-added).
      this.heard();
      this.registry.report(this.vmId, this.channel, network.report);
      return;
    }
    const msg = parseOvirtLine(chunk, start, end);
    if (msg.issues.size) this.guard.note(this.channel, msg.issues, msg.name ? { message: msg.name } : undefined);
    if (!msg.valid) return;
    if (msg.report) {
      if (msg.name === 'network-interfaces' && !msg.issues.size && end - start <= MAX_PATTERN_BYTES)
        this.network = { pattern: LinePattern.exact(chunk, start, end), report: msg.report };
      this.heard();
      this.negotiate(msg.apiVersion);
      this.registry.report(this.vmId, this.channel, msg.report);
      return;
    }
    // A message without data (heartbeat) only says the agent is alive: no empty report to compare.
    if (msg.name === 'heartbeat' && !msg.issues.size && end - start <= MAX_PATTERN_BYTES) {
      const pattern = LinePattern.numbersAside(chunk, start, end);
      this.beat = pattern && { pattern, apiVersion: msg.apiVersion };
    }
    this.heartbeat(msg.apiVersion);
  }

  /** A valid message without data: the agent is alive, and may have announced its version. */
  private heartbeat(apiVersion: number | null): void {
    this.heard();
    this.negotiate(apiVersion);
    this.registry.setAgentStatus(this.vmId, this.channel, 'responsive');
  }

  private negotiate(announced: number | null): void {
    const agreed = negotiateApiVersion(this.apiVersion, announced);
    if (agreed !== null) {
      this.apiVersion = agreed;
      this.writer?.write(encodeApiVersion(agreed));
    }
  }

  // A heartbeat only notes the time; the timer, armed for the silence after the message it was
  // armed at, looks again when it fires and waits out the rest. Re-arming it on every message
  // (a timer-list insert per heartbeat) was a visible part of the idle cost.
  private heard(): void {
    this.lastHeard = performance.now();
    if (!this.silence) this.armSilence(this.silenceMs);
  }

  private armSilence(ms: number): void {
    this.silence = setTimeout(this.silenceCheck, ms);
    this.silence.unref();
  }

  private readonly silenceCheck = (): void => {
    this.silence = null;
    const quiet = performance.now() - this.lastHeard;
    if (quiet < this.silenceMs) this.armSilence(this.silenceMs - quiet);
    else this.registry.setAgentStatus(this.vmId, this.channel, 'unresponsive');
  };

  disconnected(): void {
    this.writer = null;
    this.framer.reset();
    this.stop();
    this.registry.setAgentStatus(this.vmId, this.channel, 'unresponsive');
  }

  stop(): void {
    if (this.silence) clearTimeout(this.silence);
    this.silence = null;
  }
}
