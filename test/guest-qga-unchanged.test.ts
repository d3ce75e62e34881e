// An unchanged qemu-ga reply (counters aside) is not parsed again: the reader hands back the
// earlier reply object. Anything else that differs, or counters it cannot vouch for, is parsed.
import { describe, expect, it } from 'vitest';
import { QgaReader, type QgaEvent } from '../src/guest/qemuAgent.js';

function ifaces(addr: string, stats: string): Buffer {
  return Buffer.from(
    `{"return": [{"name": "eth0", "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "${addr}", "prefix": 24}], ` +
      `"statistics": ${stats}, "hardware-address": "52:54:00:12:34:56"}]}\n`,
  );
}

const counters = (n: number): string => `{"tx-packets": ${n}, "rx-bytes": ${n * 1200}, "tx-errs": 0}`;

function value(ev: QgaEvent | undefined): unknown {
  if (ev?.type !== 'reply' || ev.reply.kind !== 'return') throw new Error(`not a return: ${JSON.stringify(ev)}`);
  return ev.reply.value;
}

describe('QgaReader: replies unchanged but for their counters', () => {
  it('gives back the same value when only the statistics counters moved', () => {
    const r = new QgaReader();
    const first = value(r.push(ifaces('10.0.0.1', counters(1)))[0]);
    const second = value(r.push(ifaces('10.0.0.1', counters(123456)))[0]);
    expect(second).toBe(first);
  });

  it('parses again when anything else changed', () => {
    const r = new QgaReader();
    const first = value(r.push(ifaces('10.0.0.1', counters(1)))[0]);
    const second = value(r.push(ifaces('10.0.0.2', counters(1)))[0]) as {
      'ip-addresses': { 'ip-address': string }[];
    }[];
    expect(second).not.toBe(first);
    expect(second[0]!['ip-addresses'][0]!['ip-address']).toBe('10.0.0.2');
  });

  it('parses again when the counters are not plain integers, and reports what is not JSON', () => {
    const r = new QgaReader();
    const first = value(r.push(ifaces('10.0.0.1', counters(1)))[0]);
    for (const odd of ['{"tx-packets": -1}', '{"tx-packets": 1.5}', '{"tx-packets": "1"}', '{"tx packets": 1}']) {
      const v = value(r.push(ifaces('10.0.0.1', odd))[0]) as { statistics: unknown }[];
      expect(v).not.toBe(first);
      expect(v[0]!.statistics).toEqual(JSON.parse(odd));
    }
    for (const bad of ['{"tx-packets": 01}', '{"tx-packets": 1,}', '{"tx-packets": 1']) {
      const [ev] = r.push(ifaces('10.0.0.1', bad));
      expect(ev?.type === 'reply' && ev.reply.kind).toBe('invalid');
    }
  });

  it('takes "statistics" inside a string for text, not for a key', () => {
    const r = new QgaReader();
    const line = (n: number): Buffer =>
      Buffer.from(`{"return": {"host-name": "x\\", \\"statistics\\": {\\"a\\": ${n}}"}}\n`);
    const first = value(r.push(line(1))[0]);
    const second = value(r.push(line(2))[0]) as { 'host-name': string };
    expect(second).not.toBe(first);
    expect(second['host-name']).toBe('x", "statistics": {"a": 2}');
  });

  it('forgets what it remembered on a new connection', () => {
    const r = new QgaReader();
    const first = value(r.push(ifaces('10.0.0.1', counters(1)))[0]);
    r.reset();
    expect(value(r.push(ifaces('10.0.0.1', counters(1)))[0])).not.toBe(first);
  });
});
