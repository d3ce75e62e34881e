// QgaPoller over a scripted QgaLink: the contract every qemu-ga transport (the channel socket
// here, libvirt's agent-command later) relies on. Resync before polling, network data every
// round and host name / OS after a resync and every `detailsEveryMs`, one report per round,
// timeouts -> unresponsive + resync, agent errors -> still alive, unreadable replies -> resync
// at once and unresponsive only when they keep coming.
import { afterEach, describe, expect, it } from 'vitest';
import { QGA_SAME_REPLY, QgaCommandError, type QgaLink, type QgaReplyTo } from '../src/guest/qgaLink.js';
import { QGA_PROTOCOL_ERRORS_TOLERATED, QgaPoller, type QgaSink } from '../src/channels/qgaPoller.js';
import type { GuestReport } from '../src/guest/sanitize.js';
import { qgaReturn } from './helpers/guestFixtures.js';
import { eventually } from './helpers/scriptedGuest.js';

/** A reply's value, or a QgaCommandError. */
type Answer = unknown;

/** A transport whose agent answers from a table (or `answerFor`); every call is recorded. */
class ScriptedLink implements QgaLink {
  calls: string[] = [];
  answers = new Map<string, Answer>();
  answerFor = (command: string): Answer => this.answers.get(command);
  execute(command: string, _args: unknown, _timeoutMs: number, replyTo: QgaReplyTo): void {
    this.calls.push(command);
    this.answerLater(this.answerFor(command), replyTo);
  }
  resync(_timeoutMs: number, replyTo: QgaReplyTo): void {
    this.calls.push('sync');
    this.answerLater(this.answers.get('sync'), replyTo);
  }
  /** As a link must: never from inside the call. */
  private answerLater(a: Answer, replyTo: QgaReplyTo): void {
    queueMicrotask(() => (a instanceof QgaCommandError ? replyTo.failed(a) : replyTo.answered(a)));
  }
}

class RecordingSink implements QgaSink {
  reports: GuestReport[] = [];
  statuses: string[] = [];
  codes: string[] = [];
  report(r: GuestReport): void {
    this.reports.push(r);
  }
  status(s: 'responsive' | 'unresponsive'): void {
    this.statuses.push(s);
  }
  issues(i: Map<string, number>): void {
    this.codes.push(...i.keys());
  }
}

const pollers: QgaPoller[] = [];
afterEach(() => pollers.splice(0).forEach((p) => p.stop()));

function setup(detailsEveryMs = 60): { link: ScriptedLink; sink: RecordingSink; poller: QgaPoller } {
  const link = new ScriptedLink();
  link.answers.set('guest-network-get-interfaces', qgaReturn('linux-interfaces'));
  link.answers.set('guest-get-host-name', qgaReturn('host-name'));
  link.answers.set('guest-get-osinfo', qgaReturn('osinfo'));
  const sink = new RecordingSink();
  const poller = new QgaPoller(link, sink, { intervalMs: 20, timeoutMs: 100, detailsEveryMs });
  pollers.push(poller);
  return { link, sink, poller };
}

describe('QgaPoller', () => {
  it('resyncs first, polls all three commands, then network data every round and the rest every detailsEveryMs', async () => {
    const { link, sink, poller } = setup();
    poller.start();
    await eventually(
      () => sink.reports.length,
      (n) => n >= 4,
    );
    // detailsEveryMs 60 at a 20 ms interval: host name and OS every third round.
    expect(link.calls.slice(0, 9)).toEqual([
      'sync',
      'guest-network-get-interfaces',
      'guest-get-host-name',
      'guest-get-osinfo',
      'guest-network-get-interfaces',
      'guest-network-get-interfaces',
      'guest-network-get-interfaces',
      'guest-get-host-name',
      'guest-get-osinfo',
    ]);
    expect(sink.reports[0]).toEqual({
      netIfaces: [
        { name: 'lo', hw: '00:00:00:00:00:00', inet: ['127.0.0.1'], inet6: ['::1'] },
        { name: 'vg0', hw: 'b6:19:28:1d:b7:b7', inet: ['192.0.2.10'], inet6: ['2001:db8::10'] },
      ],
      guestName: 'vm',
      guestOs: '6.1.0-18-amd64',
    });
    expect(sink.statuses[0]).toBe('responsive');
    expect(sink.reports[1]).toEqual({ netIfaces: sink.reports[0]!.netIfaces });
    // A host name change is seen at the next details round.
    link.answers.set('guest-get-host-name', { 'host-name': 'renamed' });
    await eventually(
      () => sink.reports,
      (r) => r.some((x) => x.guestName === 'renamed'),
    );
  });

  it('a resync asks for everything again at once', async () => {
    const { link, sink, poller } = setup(60_000);
    poller.start();
    await eventually(
      () => sink.reports.length,
      (n) => n >= 2,
    );
    expect(link.calls.filter((c) => c === 'guest-get-host-name')).toHaveLength(1);
    poller.linkReset();
    await eventually(
      () => link.calls.filter((c) => c === 'guest-get-host-name').length,
      (n) => n === 2,
    );
    expect(link.calls.filter((c) => c === 'sync')).toHaveLength(2);
  });

  it('an unreadable reply resyncs at once, keeps the agent responsive and its data; a run of them makes it unresponsive', async () => {
    const { link, sink, poller } = setup(60_000);
    poller.start();
    await eventually(
      () => sink.reports.length,
      (n) => n >= 2,
    );
    const before = link.calls.length;
    const answers = link.answers;
    // One bad reply, then good ones again: resynced at once (no interval wait), never unresponsive.
    let bad = 1;
    link.answerFor = (command: string): Answer => {
      if (command === 'guest-network-get-interfaces' && bad > 0) {
        bad--;
        return new QgaCommandError('protocol', 'not JSON');
      }
      return command === 'guest-network-get-interfaces' ? qgaReturn('linux-interfaces') : answers.get(command);
    };
    await eventually(
      () => link.calls.slice(before),
      (c) => c.filter((x) => x === 'guest-network-get-interfaces').length >= 3,
    );
    expect(link.calls.slice(before, before + 3)).toEqual([
      'guest-network-get-interfaces',
      'sync',
      'guest-network-get-interfaces',
    ]);
    expect(sink.statuses).not.toContain('unresponsive');
    // Unreadable replies that keep coming: unresponsive after QGA_PROTOCOL_ERRORS_TOLERATED in a row.
    bad = Infinity;
    await eventually(
      () => sink.statuses,
      (s) => s.includes('unresponsive'),
    );
    const failedSince = link.calls.lastIndexOf('guest-get-host-name');
    expect(link.calls.slice(failedSince).filter((c) => c === 'sync').length).toBeGreaterThanOrEqual(
      QGA_PROTOCOL_ERRORS_TOLERATED,
    );
    expect(sink.reports.every((r) => r.netIfaces?.length === 2)).toBe(true); // nothing was lost or blanked
  });

  it('a timeout makes the agent unresponsive, keeps what the round got, and resyncs next round', async () => {
    const { link, sink, poller } = setup();
    link.answers.set('guest-get-host-name', new QgaCommandError('timeout', 'no answer'));
    poller.start();
    await eventually(
      () => link.calls.filter((c) => c === 'sync').length,
      (n) => n >= 2,
    );
    expect(link.calls.slice(0, 4)).toEqual(['sync', 'guest-network-get-interfaces', 'guest-get-host-name', 'sync']);
    expect(sink.statuses[0]).toBe('unresponsive');
    expect(sink.reports[0]!.netIfaces).toHaveLength(2); // interfaces arrived before the timeout
    expect(sink.codes).toContain('GUEST_ERR_QGA_TIMEOUT');
  });

  it('an agent error is an answer: still responsive; a missing command is not asked again until relinked', async () => {
    const { link, sink, poller } = setup();
    link.answers.set(
      'guest-get-osinfo',
      new QgaCommandError('agent', 'The command guest-get-osinfo has not been found', 'CommandNotFound'),
    );
    poller.start();
    await eventually(
      () => sink.reports.length,
      (n) => n >= 3,
    );
    expect(link.calls.filter((c) => c === 'guest-get-osinfo')).toHaveLength(1);
    expect(sink.statuses.every((s) => s === 'responsive')).toBe(true);
    expect(sink.reports[0]!.guestOs).toBeUndefined();
    expect(sink.codes).toContain('GUEST_ERR_QGA_ERROR');
    poller.linkReset();
    await eventually(
      () => link.calls.filter((c) => c === 'guest-get-osinfo').length,
      (n) => n === 2,
    );
  });

  it('a repeated reply (QGA_SAME_REPLY) is reported as what the last reply to that command said, issues and all', async () => {
    const { link, sink, poller } = setup();
    // A host name with a control character: mapped with an issue, which a repeat counts again.
    link.answers.set('guest-get-host-name', { 'host-name': 'v\u0007m' });
    poller.start();
    await eventually(
      () => sink.reports.length,
      (n) => n >= 1,
    );
    const first = sink.reports[0]!;
    expect(first.guestName).toBe('v\ufffdm');
    const replaced = sink.codes.filter((c) => c === 'GUEST_ERR_TEXT_REPLACED').length;
    for (const c of ['guest-network-get-interfaces', 'guest-get-host-name', 'guest-get-osinfo'])
      link.answers.set(c, QGA_SAME_REPLY);
    const asked = link.calls.filter((c) => c === 'guest-get-host-name').length;
    const reported = sink.reports.length;
    await eventually(
      () => link.calls.filter((c) => c === 'guest-get-host-name').length,
      (n) => n > asked + 1,
    );
    const since = sink.reports.slice(reported + 1); // rounds wholly after the switch
    expect(since.length).toBeGreaterThanOrEqual(2);
    for (const r of since) {
      expect(r.netIfaces).toEqual(first.netIfaces);
      expect(r.netIfaces).toBe(since[0]!.netIfaces); // the same mapping, not mapped again
    }
    expect(since.filter((r) => r.guestName !== undefined)).toContainEqual(first);
    expect(sink.codes.filter((c) => c === 'GUEST_ERR_TEXT_REPLACED').length).toBeGreaterThan(replaced);
    expect(sink.codes).not.toContain('GUEST_ERR_BAD_FIELD'); // the marker itself is never mapped
  });

  it('a failing resync polls nothing and reports unresponsive', async () => {
    const { link, sink, poller } = setup();
    link.answers.set('sync', new QgaCommandError('disconnected', 'channel not connected'));
    poller.start();
    await eventually(
      () => link.calls.length,
      (n) => n >= 3,
    );
    expect(new Set(link.calls)).toEqual(new Set(['sync']));
    expect(sink.reports).toEqual([]);
    expect(sink.statuses.every((s) => s === 'unresponsive')).toBe(true);
  });
});
