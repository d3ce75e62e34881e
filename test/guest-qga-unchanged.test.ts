// A qemu-ga reply that repeats the last reply to the same command (counters aside) is not parsed
// again: the reader says SAME_REPLY. Anything else that differs, counters it cannot vouch for, a
// reply to another command, or a reply nobody waited for, is parsed.
import { describe, expect, it } from 'vitest';
import { QgaReader, SAME_REPLY, type QgaEvent } from '../src/guest/qemuAgent.js';

const IFACES = 'guest-network-get-interfaces';
const HOST = 'guest-get-host-name';

function ifaces(addr: string, stats: string): Buffer {
  return Buffer.from(
    `{"return": [{"name": "eth0", "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "${addr}", "prefix": 24}], ` +
      `"statistics": ${stats}, "hardware-address": "52:54:00:12:34:56"}]}\n`,
  );
}

const counters = (n: number): string => `{"tx-packets": ${n}, "rx-bytes": ${n * 1200}, "tx-errs": 0}`;

function reply(ev: QgaEvent | undefined): (QgaEvent & { type: 'reply' })['reply'] {
  if (ev?.type !== 'reply') throw new Error(`not a reply: ${JSON.stringify(ev)}`);
  return ev.reply;
}

function value(ev: QgaEvent | undefined): unknown {
  const r = reply(ev);
  if (r.kind !== 'return') throw new Error(`not a return: ${JSON.stringify(ev)}`);
  return r.value;
}

describe('QgaReader: replies unchanged but for their counters', () => {
  it('says SAME_REPLY when only the statistics counters moved', () => {
    const r = new QgaReader();
    value(r.push(ifaces('10.0.0.1', counters(1)), IFACES)[0]);
    expect(reply(r.push(ifaces('10.0.0.1', counters(123456)), IFACES)[0])).toBe(SAME_REPLY);
    expect(reply(r.push(ifaces('10.0.0.1', '{}'), IFACES)[0])).toBe(SAME_REPLY);
  });

  it('repeats the issues the reply had when it was parsed', () => {
    const r = new QgaReader();
    const line = Buffer.concat([Buffer.from('{"return": {"host-name": "a'), Buffer.of(0xc3), Buffer.from('b"}}\n')]);
    const [first] = r.push(line, HOST);
    expect(value(first)).toEqual({ 'host-name': 'a\ufffdb' });
    const [second] = r.push(line, HOST);
    expect(reply(second)).toBe(SAME_REPLY);
    expect(second?.type === 'reply' && [...second.issues]).toEqual([['GUEST_ERR_TEXT_REPLACED', 1]]);
  });

  it('parses again when anything else changed', () => {
    const r = new QgaReader();
    value(r.push(ifaces('10.0.0.1', counters(1)), IFACES)[0]);
    const second = value(r.push(ifaces('10.0.0.2', counters(1)), IFACES)[0]) as {
      'ip-addresses': { 'ip-address': string }[];
    }[];
    expect(second[0]!['ip-addresses'][0]!['ip-address']).toBe('10.0.0.2');
    // The changed reply is now the one remembered.
    expect(reply(r.push(ifaces('10.0.0.2', counters(9)), IFACES)[0])).toBe(SAME_REPLY);
    expect(value(r.push(ifaces('10.0.0.1', counters(9)), IFACES)[0])).toBeInstanceOf(Array);
  });

  it('sees a change of any one byte outside the counters, wherever the line sits in its buffer', () => {
    // The check hashes four bytes at a time from the line's own offset: every alignment, and a
    // change in the last one to three bytes (hashed one by one), must still be seen.
    const base = ifaces('10.0.0.1', counters(1));
    const counterStart = base.indexOf('"statistics": ') + '"statistics": '.length;
    const counterEnd = base.indexOf('}', counterStart) + 1;
    for (let offset = 0; offset < 4; offset++) {
      for (let at = 0; at < base.length - 1; at++) {
        if (at >= counterStart && at < counterEnd) continue;
        const r = new QgaReader();
        value(r.push(base, IFACES)[0]);
        const changed = Buffer.alloc(offset + base.length);
        base.copy(changed, offset);
        changed[offset + at] = base[at] === 0x41 ? 0x42 : 0x41; // 'A' or 'B': not JSON-special
        const [ev] = r.push(changed.subarray(offset), IFACES);
        expect([at, reply(ev) === SAME_REPLY]).toEqual([at, false]);
      }
      // The same bytes at this offset, counters moved: still the same reply.
      const r = new QgaReader();
      value(r.push(base, IFACES)[0]);
      const moved = ifaces('10.0.0.1', counters(77));
      const shifted = Buffer.alloc(offset + moved.length);
      moved.copy(shifted, offset);
      expect(reply(r.push(shifted.subarray(offset), IFACES)[0])).toBe(SAME_REPLY);
    }
  });

  it('parses again when the counters are not plain integers, and reports what is not JSON', () => {
    const r = new QgaReader();
    value(r.push(ifaces('10.0.0.1', counters(1)), IFACES)[0]);
    for (const odd of ['{"tx-packets": -1}', '{"tx-packets": 1.5}', '{"tx-packets": "1"}', '{"tx packets": 1}']) {
      const v = value(r.push(ifaces('10.0.0.1', odd), IFACES)[0]) as { statistics: unknown }[];
      expect(v[0]!.statistics).toEqual(JSON.parse(odd));
    }
    for (const bad of ['{"tx-packets": 01}', '{"tx-packets": 1,}', '{"tx-packets": 1']) {
      const [ev] = r.push(ifaces('10.0.0.1', bad), IFACES);
      expect(reply(ev).kind).toBe('invalid');
    }
  });

  it('takes "statistics" inside a string for text, not for a key', () => {
    const r = new QgaReader();
    const line = (n: number): Buffer =>
      Buffer.from(`{"return": {"host-name": "x\\", \\"statistics\\": {\\"a\\": ${n}}"}}\n`);
    value(r.push(line(1), HOST)[0]);
    const second = value(r.push(line(2), HOST)[0]) as { 'host-name': string };
    expect(second['host-name']).toBe('x", "statistics": {"a": 2}');
  });

  it('compares a reply only with the last reply to the same command', () => {
    const r = new QgaReader();
    value(r.push(ifaces('10.0.0.1', counters(1)), IFACES)[0]);
    // The same bytes answering another command, or nobody: parsed.
    expect(value(r.push(ifaces('10.0.0.1', counters(1)), HOST)[0])).toBeInstanceOf(Array);
    expect(value(r.push(ifaces('10.0.0.1', counters(1)))[0])).toBeInstanceOf(Array);
    // Only the first reply line of a push answers the command; the next is unsolicited.
    const both = r.push(Buffer.concat([ifaces('10.0.0.1', counters(2)), ifaces('10.0.0.1', counters(3))]), IFACES);
    expect(reply(both[0])).toBe(SAME_REPLY);
    expect(value(both[1])).toBeInstanceOf(Array);
  });

  it('forgets a reply once another answer to its command came (an error, an over-long line)', () => {
    const r = new QgaReader();
    value(r.push(ifaces('10.0.0.1', counters(1)), IFACES)[0]);
    expect(reply(r.push(Buffer.from('{"error": {"class": "GenericError", "desc": "x"}}\n'), IFACES)[0]).kind).toBe(
      'error',
    );
    expect(value(r.push(ifaces('10.0.0.1', counters(1)), IFACES)[0])).toBeInstanceOf(Array);
    // A dropped over-long line answers the command: the reply after it in the same push is unsolicited.
    const long = Buffer.from(`{"return": "${'x'.repeat(1024 * 1024)}"}\n`);
    const evs = r.push(Buffer.concat([long, ifaces('10.0.0.1', counters(1))]), IFACES);
    expect(evs.map((e) => e.type)).toEqual(['discarded', 'reply']);
    expect(value(evs[1])).toBeInstanceOf(Array);
    expect(reply(r.push(ifaces('10.0.0.1', counters(1)), IFACES)[0])).toBe(SAME_REPLY);
  });

  it('does not remember replies over 32 KiB', () => {
    const r = new QgaReader();
    const big = Buffer.from(`{"return": {"host-name": "${'h'.repeat(40 * 1024)}"}}\n`);
    value(r.push(big, HOST)[0]);
    expect(value(r.push(big, HOST)[0])).toEqual({ 'host-name': 'h'.repeat(40 * 1024) });
  });

  it('forgets what it remembered on a new connection', () => {
    const r = new QgaReader();
    value(r.push(ifaces('10.0.0.1', counters(1)), IFACES)[0]);
    r.reset();
    expect(value(r.push(ifaces('10.0.0.1', counters(1)), IFACES)[0])).toBeInstanceOf(Array);
  });
});
