// QgaPoller over a scripted QgaLink: the contract every qemu-ga transport (the channel socket
// here, libvirt's agent-command later) relies on. Resync before polling, the polled commands in
// order, one report per round, timeouts -> unresponsive + resync, agent errors -> still alive.
import { afterEach, describe, expect, it } from 'vitest';
import { QgaCommandError, type QgaLink } from '../src/guest/qgaLink.js';
import { QgaPoller, type QgaSink } from '../src/channels/qgaPoller.js';
import type { GuestReport } from '../src/guest/sanitize.js';
import { qgaReturn } from './helpers/guestFixtures.js';
import { eventually } from './helpers/scriptedGuest.js';

/** A reply's value, or a QgaCommandError. */
type Answer = unknown;

/** A transport whose agent answers from a table; every call is recorded. */
class ScriptedLink implements QgaLink {
  calls: string[] = [];
  answers = new Map<string, Answer>();
  execute(command: string): Promise<unknown> {
    this.calls.push(command);
    const a = this.answers.get(command);
    return a instanceof QgaCommandError ? Promise.reject(a) : Promise.resolve(a);
  }
  resync(): Promise<void> {
    this.calls.push('sync');
    const a = this.answers.get('sync');
    return a instanceof QgaCommandError ? Promise.reject(a) : Promise.resolve();
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

function setup(): { link: ScriptedLink; sink: RecordingSink; poller: QgaPoller } {
  const link = new ScriptedLink();
  link.answers.set('guest-network-get-interfaces', qgaReturn('linux-interfaces'));
  link.answers.set('guest-get-host-name', qgaReturn('host-name'));
  link.answers.set('guest-get-osinfo', qgaReturn('osinfo'));
  const sink = new RecordingSink();
  const poller = new QgaPoller(link, sink, { intervalMs: 20, timeoutMs: 100 });
  pollers.push(poller);
  return { link, sink, poller };
}

describe('QgaPoller', () => {
  it('resyncs first, then polls the three commands in order, one report per round', async () => {
    const { link, sink, poller } = setup();
    poller.start();
    await eventually(() => sink.reports.length, (n) => n >= 2);
    expect(link.calls.slice(0, 7)).toEqual([
      'sync',
      'guest-network-get-interfaces',
      'guest-get-host-name',
      'guest-get-osinfo',
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
  });

  it('a timeout makes the agent unresponsive, keeps what the round got, and resyncs next round', async () => {
    const { link, sink, poller } = setup();
    link.answers.set('guest-get-host-name', new QgaCommandError('timeout', 'no answer'));
    poller.start();
    await eventually(() => link.calls.filter((c) => c === 'sync').length, (n) => n >= 2);
    expect(link.calls.slice(0, 4)).toEqual(['sync', 'guest-network-get-interfaces', 'guest-get-host-name', 'sync']);
    expect(sink.statuses[0]).toBe('unresponsive');
    expect(sink.reports[0]!.netIfaces).toHaveLength(2); // interfaces arrived before the timeout
    expect(sink.codes).toContain('GUEST_ERR_QGA_TIMEOUT');
  });

  it('an agent error is an answer: still responsive; a missing command is not asked again until relinked', async () => {
    const { link, sink, poller } = setup();
    link.answers.set('guest-get-osinfo', new QgaCommandError('agent', 'The command guest-get-osinfo has not been found', 'CommandNotFound'));
    poller.start();
    await eventually(() => sink.reports.length, (n) => n >= 3);
    expect(link.calls.filter((c) => c === 'guest-get-osinfo')).toHaveLength(1);
    expect(sink.statuses.every((s) => s === 'responsive')).toBe(true);
    expect(sink.reports[0]!.guestOs).toBeUndefined();
    expect(sink.codes).toContain('GUEST_ERR_QGA_ERROR');
    poller.linkReset();
    await eventually(() => link.calls.filter((c) => c === 'guest-get-osinfo').length, (n) => n === 2);
  });

  it('a failing resync polls nothing and reports unresponsive', async () => {
    const { link, sink, poller } = setup();
    link.answers.set('sync', new QgaCommandError('disconnected', 'channel not connected'));
    poller.start();
    await eventually(() => link.calls.length, (n) => n >= 3);
    expect(new Set(link.calls)).toEqual(new Set(['sync']));
    expect(sink.reports).toEqual([]);
    expect(sink.statuses.every((s) => s === 'unresponsive')).toBe(true);
  });
});
