// The untrusted-input rules of SPEC section 4, one by one, on the pure framing and sanitiser.
import { describe, expect, it } from 'vitest';
import { LineFramer, QGA_DELIMITER } from '../src/guest/framing.js';
import { GuestIssue, type IssueCounts } from '../src/guest/issues.js';
import {
  GUEST_LIMITS,
  cleanAddress,
  cleanMac,
  cleanText,
  decodeUtf8,
  sanitizeInterfaces,
} from '../src/guest/sanitize.js';
import { TokenBucket } from '../src/guest/rateBudget.js';
import { WarnLimiter } from '../src/guest/warnLimiter.js';

const MiB = 1024 * 1024;
const lines = (frames: ReturnType<LineFramer['push']>): string[] =>
  frames.flatMap((f) => (f.kind === 'line' ? [f.bytes.toString('utf8')] : []));

describe('LineFramer', () => {
  it('splits lines across arbitrary chunk boundaries', () => {
    const text = '{"a":1}\n{"b":2}\n{"c":3}\n';
    for (let cut = 1; cut < text.length; cut++) {
      const f = new LineFramer(GUEST_LIMITS.maxLineBytes);
      const got = [...lines(f.push(Buffer.from(text.slice(0, cut)))), ...lines(f.push(Buffer.from(text.slice(cut))))];
      expect(got).toEqual(['{"a":1}', '{"b":2}', '{"c":3}']);
    }
  });

  it('drops a 2 MiB line whole, never holding more than the cap, and uses the next line', () => {
    const f = new LineFramer(GUEST_LIMITS.maxLineBytes);
    const frames: ReturnType<LineFramer['push']> = [];
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    let maxHeld = 0;
    for (let sent = 0; sent < 2 * MiB; sent += chunk.length) {
      frames.push(...f.push(chunk));
      maxHeld = Math.max(maxHeld, f.bufferedBytes);
    }
    frames.push(...f.push(Buffer.from('\n{"__name__":"heartbeat"}\n')));
    expect(maxHeld).toBeLessThanOrEqual(GUEST_LIMITS.maxLineBytes);
    expect(frames.filter((x) => x.kind === 'dropped')).toEqual([{ kind: 'dropped', code: GuestIssue.lineTooLong }]);
    expect(lines(frames)).toEqual(['{"__name__":"heartbeat"}']);
  });

  it('keeps a line of exactly the cap and drops one byte more', () => {
    const f = new LineFramer(10);
    expect(lines(f.push(Buffer.from('0123456789\n')))).toEqual(['0123456789']);
    const frames = f.push(Buffer.from('0123456789X\nok\n'));
    expect(frames.map((x) => x.kind)).toEqual(['dropped', 'line']);
  });

  it('treats 0xFF as a delimiter that discards a half line (qemu-ga framing)', () => {
    const f = new LineFramer(100, QGA_DELIMITER);
    const frames = f.push(Buffer.concat([Buffer.from('{"retu'), Buffer.of(0xff), Buffer.from('{"return": 7}\n')]));
    expect(frames.map((x) => x.kind)).toEqual(['delimiter', 'line']);
    expect(lines(frames)).toEqual(['{"return": 7}']);
  });
});

describe('text', () => {
  it('replaces invalid UTF-8 with U+FFFD and counts it', () => {
    const issues: IssueCounts = new Map();
    expect(decodeUtf8(Buffer.from([0x61, 0xc3, 0x28, 0x62, 0xff]), issues)).toBe('a\ufffd(b\ufffd');
    expect(issues.get(GuestIssue.textReplaced)).toBe(1);
  });

  it('replaces every control and non-character VDSM replaces, and lone surrogates', () => {
    const issues: IssueCounts = new Map();
    const bad = [
      '\u0000',
      '\u0008',
      '\u001b',
      '\u007f',
      '\u0084',
      '\u0086',
      '\u009f',
      '\ud800',
      '\udfff',
      '\ufffe',
      '\uffff',
      '\t',
      '\n',
      '\r',
    ];
    for (const ch of bad) expect(cleanText(`a${ch}b`, 50, issues)).toBe('a\ufffdb');
    expect(cleanText('ok 😀 ü 以太网', 50, issues)).toBe('ok 😀 ü 以太网'); // valid pairs and non-ASCII pass
    expect(issues.get(GuestIssue.textReplaced)).toBe(bad.length);
  });

  it('cuts at code points, never inside a surrogate pair', () => {
    const issues: IssueCounts = new Map();
    expect(cleanText('x'.repeat(80), 50, issues)).toHaveLength(50);
    const emoji = '😀'.repeat(60);
    const cut = cleanText(emoji, 50, issues);
    expect(Array.from(cut)).toHaveLength(50);
    expect(cut).toBe('😀'.repeat(50));
    expect(issues.get(GuestIssue.textTruncated)).toBe(2);
  });
});

describe('MAC and address rules', () => {
  it('keeps 6- and 20-octet MACs lower-cased; anything else becomes ""', () => {
    const issues: IssueCounts = new Map();
    expect(cleanMac('52:54:00:AB:cd:EF', issues)).toBe('52:54:00:ab:cd:ef');
    const ib = Array.from({ length: 20 }, (_, i) => (i + 160).toString(16)).join(':');
    expect(cleanMac(ib.toUpperCase(), issues)).toBe(ib);
    for (const bad of [
      '52:54:00:ab:cd',
      '52-54-00-ab-cd-ef',
      '525400abcdef',
      '52:54:00:ab:cd:eg',
      '52:54:00:ab:cd:ef:00',
      ' 52:54:00:ab:cd:ef',
      42,
      {},
      ['52:54:00:ab:cd:ef'],
    ]) {
      expect(cleanMac(bad, issues)).toBe('');
    }
    expect(issues.get(GuestIssue.badMac)).toBe(9);
    expect(cleanMac(undefined, issues)).toBe(''); // absent (Windows loopback) is not an error
    expect(issues.get(GuestIssue.badMac)).toBe(9);
  });

  it('keeps only IP literals of the right family and removes an IPv6 zone', () => {
    const issues: IssueCounts = new Map();
    expect(cleanAddress('192.0.2.1', 4, issues)).toBe('192.0.2.1');
    expect(cleanAddress('fe80::1%eth0', 6, issues)).toBe('fe80::1');
    expect(cleanAddress('2001:db8::1', 6, issues)).toBe('2001:db8::1');
    for (const [bad, fam] of [
      ['10.1', 4],
      ['1.2.3.4/24', 4],
      ['host.example', 4],
      ['2001:db8::1', 4],
      ['192.0.2.1', 6],
      ['::1/128', 6],
      ['1.2.3.04', 4],
      ['', 4],
      [7, 4],
      ['%eth0', 6],
    ] as const) {
      expect(cleanAddress(bad, fam, issues)).toBeNull();
    }
    expect(issues.get(GuestIssue.badAddress)).toBe(10);
  });

  it('caps interfaces at 128 and addresses at 64 per interface, counting what it dropped', () => {
    const issues: IssueCounts = new Map();
    const raw = Array.from({ length: 300 }, (_, i) => ({
      name: `eth${i}`,
      hw: '52:54:00:00:00:01',
      inet: Array.from({ length: 50 }, (_, j) => `10.${i % 256}.${j}.1`),
      inet6: Array.from({ length: 50 }, (_, j) => `2001:db8:${i.toString(16)}::${j.toString(16)}`),
    }));
    const out = sanitizeInterfaces(raw, issues);
    expect(out).toHaveLength(128);
    expect(out.every((i) => i.inet.length + i.inet6.length === 64)).toBe(true);
    expect(out[0]!.inet).toHaveLength(50);
    expect(out[0]!.inet6).toEqual(raw[0]!.inet6.slice(0, 14));
    expect(issues.get(GuestIssue.tooManyInterfaces)).toBe(172);
    expect(issues.get(GuestIssue.tooManyAddresses)).toBe(128 * 36);
  });
});

describe('budgets', () => {
  it('a token bucket refills with time and refuses past its burst', () => {
    const b = new TokenBucket(3, 1, 0);
    expect([b.tryTake(1, 0), b.tryTake(1, 0), b.tryTake(1, 0), b.tryTake(1, 0)]).toEqual([true, true, true, false]);
    expect(b.tryTake(1, 1000)).toBe(true);
    expect(b.charge(5, 1000)).toBe(5000); // 5 tokens of debt at 1/s
  });

  it('warnings: a few per window, then one summary of what was suppressed', () => {
    const w = new WarnLimiter(0, 2, 1000);
    const d = [w.decide('A', 0), w.decide('A', 1), w.decide('B', 2), w.decide('A', 3)];
    expect(d.map((x) => x.log)).toEqual([true, true, false, false]);
    const next = w.decide('A', 1500);
    expect(next).toEqual({ log: true, suppressed: { A: 1, B: 1 } });
  });
});
