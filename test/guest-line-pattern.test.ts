// What an oVirt agent repeats is matched against what it said last instead of being parsed again
// (issue 16, idle CPU): a heartbeat numbers aside, network data exactly.
// What must hold: a line taken for the last heartbeat parses, every time, to a clean heartbeat
// with the same apiVersion (checked against the parser over generated and mutated lines), and
// the handler's visible effects (status, version negotiation, issue logs) are the parser's.
import fc from 'fast-check';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { GuestIssue } from '../src/guest/issues.js';
import { parseOvirtLine } from '../src/guest/ovirtAgent.js';
import { LinePattern } from '../src/guest/linePattern.js';
import { heartbeatLine } from '../src/sim/ovirtAgent.js';
import { InputGuard } from '../src/channels/inputGuard.js';
import { OvirtChannelHandler } from '../src/channels/ovirtChannel.js';
import { VmRegistry } from '../src/vms/registry.js';

const VM = '0b5e7c1d-2f3a-4b5c-8d9e-0f1a2b3c4d5e';
const OVIRT = 'ovirt-guest-agent.0' as const;

/** The pattern of a clean heartbeat (the handler makes one only of those), or null. */
function pattern(text: string): LinePattern | null {
  const bytes = Buffer.from(text);
  const m = parseOvirtLine(bytes);
  if (!(m.valid && m.name === 'heartbeat' && m.issues.size === 0)) throw new Error(`not a clean heartbeat: ${text}`);
  return LinePattern.numbersAside(bytes, 0, bytes.length);
}

/** Whether `line` matches the pattern of `ref`, also when `line` sits inside a larger buffer. */
function matches(ref: string, line: string): boolean {
  const p = pattern(ref);
  if (!p) throw new Error(`no pattern: ${ref}`);
  const inside = Buffer.from(`xx\n${line}\n7`);
  const alone = p.matches(Buffer.from(line), 0, Buffer.byteLength(line));
  expect(p.matches(inside, 3, 3 + Buffer.byteLength(line))).toBe(alone);
  return alone;
}

/** A heartbeat as the real agent words it (REFERENCE: free-ram, memory-stat, apiVersion). */
const agentBeat = (freeRam: number, unused: number, faults: number, api: string): string =>
  `{"__name__": "heartbeat", "free-ram": "${freeRam}", "memory-stat": {"mem_total": 4026512, ` +
  `"mem_unused": ${unused}, "swap_in": 0, "majflt": ${faults}}, "apiVersion": ${api}}`;

describe('LinePattern.numbersAside', () => {
  it('heartbeats that differ only in their numbers match', () => {
    expect(matches(heartbeatLine(3, 2048), heartbeatLine(3, 1984))).toBe(true);
    expect(matches(agentBeat(2048, 1, 0, '3'), agentBeat(123456, 99999999, 17, '3'))).toBe(true);
    expect(matches(heartbeatLine(0, 2048), heartbeatLine(0, 2048))).toBe(true);
  });

  it('a different apiVersion does not match, however the number is written', () => {
    for (const [a, b] of [
      ['0', '3'],
      ['3', '30'],
      ['30', '3'],
      ['-0', '-5'],
      ['3e0', '3e1'],
      ['3.0', '3.5'],
    ] as const)
      expect(matches(agentBeat(1, 1, 1, a), agentBeat(1, 1, 1, b)), `${a} / ${b}`).toBe(false);
    expect(matches(heartbeatLine(0, 2048), heartbeatLine(3, 2048))).toBe(false);
  });

  it('any other byte changed, added or removed does not match', () => {
    const base = agentBeat(2048, 1, 0, '3');
    for (let i = 0; i < base.length; i++) {
      if (/[0-9]/.test(base[i]!)) continue;
      expect(matches(base, base.slice(0, i) + (base[i] === 'x' ? 'y' : 'x') + base.slice(i + 1))).toBe(false);
      expect(matches(base, base.slice(0, i) + base.slice(i + 1))).toBe(false);
      expect(matches(base, base.slice(0, i) + ' ' + base.slice(i))).toBe(false);
    }
    expect(matches(base, base + ' ')).toBe(false);
    expect(matches(base, base.slice(0, -1))).toBe(false);
  });

  it('a number with a leading zero never matches; a line with a backslash makes no pattern', () => {
    const base = agentBeat(2048, 1, 0, '3');
    expect(matches(base, base.replace('"swap_in": 0', '"swap_in": 01'))).toBe(false);
    expect(matches(base, base.replace('"free-ram": "2048"', '"free-ram": "02048"'))).toBe(false);
    expect(pattern('{"__name__": "heartbeat", "note": "\\u0041", "apiVersion": 3}')).toBeNull();
    expect(pattern('{"__name__": "heartbeat", "note": "\\n", "apiVersion": 3}')).toBeNull();
  });
});

describe('a line that matches the last heartbeat parses as that heartbeat', () => {
  // Reference heartbeats: JSON text of arbitrary numbers, strings and nesting around the name and
  // an apiVersion of any kind; mutations: digit runs rewritten (leading zeros included), bytes
  // replaced, inserted and removed.
  const scalar = fc.oneof(
    fc.integer({ min: -1e9, max: 1e9 }),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.string({ maxLength: 8 }),
    fc.constantFrom(true, false, null),
  );
  const body = fc.dictionary(
    fc.string({ maxLength: 6 }),
    fc.oneof(scalar, fc.dictionary(fc.string({ maxLength: 4 }), scalar, { maxKeys: 3 })),
    {
      maxKeys: 4,
    },
  );
  const apiVersion = fc.oneof(
    fc.constantFrom('0', '3', '-0', '3e0', '1E1', '2.0', '-3', '3.5', '"3"', 'null'),
    fc.nat(50).map(String),
  );
  const space = fc.constantFrom('', ' ', '  ', '\t');
  const reference = fc.tuple(body, apiVersion, space, fc.boolean()).map(([b, v, sp, apiFirst]) => {
    const rest = JSON.stringify(b).slice(1, -1);
    const api = `"apiVersion":${sp}${v}`;
    const fields = [`"__name__":${sp}"heartbeat"`, ...(apiFirst ? [api, rest] : [rest, api])].filter(Boolean);
    return `{${fields.join(`,${sp}`)}}`;
  });
  const digitRun = fc.stringMatching(/^[0-9]{1,6}$/);
  const edit = fc.oneof(
    { arbitrary: fc.record({ kind: fc.constant('digits' as const), at: fc.nat(), digits: digitRun }), weight: 6 },
    fc.record({ kind: fc.constant('byte' as const), at: fc.nat(), byte: fc.integer({ min: 0x20, max: 0x7e }) }),
    fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), byte: fc.integer({ min: 0x20, max: 0x7e }) }),
    fc.record({ kind: fc.constant('remove' as const), at: fc.nat() }),
  );
  type Edit = typeof edit extends fc.Arbitrary<infer T> ? T : never;

  function mutate(text: string, edits: Edit[]): string {
    let out = text;
    for (const e of edits) {
      if (e.kind === 'digits') {
        const runs = [...out.matchAll(/[0-9]+/g)];
        if (!runs.length) continue;
        const run = runs[e.at % runs.length]!;
        out = out.slice(0, run.index) + e.digits + out.slice(run.index + run[0].length);
      } else if (out.length) {
        const at = e.at % out.length;
        const ch = 'byte' in e ? String.fromCharCode(e.byte) : '';
        out =
          e.kind === 'remove'
            ? out.slice(0, at) + out.slice(at + 1)
            : out.slice(0, at) + ch + out.slice(at + (e.kind === 'byte' ? 1 : 0));
      }
    }
    return out;
  }

  it('every line that matches a clean heartbeat parses as a clean heartbeat with its apiVersion', () => {
    let taken = 0;
    let differentText = 0;
    fc.assert(
      fc.property(reference, fc.array(edit, { minLength: 1, maxLength: 4 }), (ref, edits) => {
        const refBytes = Buffer.from(ref);
        const r = parseOvirtLine(refBytes);
        fc.pre(r.valid && r.name === 'heartbeat' && r.issues.size === 0);
        const p = LinePattern.numbersAside(refBytes, 0, refBytes.length);
        fc.pre(p !== null);
        const line = Buffer.from(mutate(ref, edits));
        if (!p.matches(line, 0, line.length)) return;
        taken++;
        if (!line.equals(refBytes)) differentText++;
        const m = parseOvirtLine(line);
        expect(m).toMatchObject({ valid: true, name: 'heartbeat', report: null, apiVersion: r.apiVersion });
        expect([...m.issues]).toEqual([]);
      }),
      { numRuns: 3000, seed: 20261128 },
    );
    // The property was exercised, with lines other than the reference itself.
    expect(differentText).toBeGreaterThan(300);
    expect(taken).toBeGreaterThanOrEqual(differentText);
  });
});

/** A handler over a real registry and input guard; what it writes to the agent, logs and registry changes are kept. */
function handler(): {
  reg: VmRegistry;
  h: OvirtChannelHandler;
  logs: Record<string, unknown>[];
  written: string[];
  changed: string[][];
  guard: InputGuard;
} {
  const reg = new VmRegistry();
  const changed: string[][] = [];
  reg.onChange((c) => changed.push(c.changed));
  reg.channelAdded(VM, OVIRT);
  const logs: Record<string, unknown>[] = [];
  const guard = new InputGuard(
    VM,
    pino({ level: 'debug' }, { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) }),
  );
  const h = new OvirtChannelHandler(VM, OVIRT, reg, guard, 120_000);
  const written: string[] = [];
  h.connected({
    write: (b: Buffer) => {
      written.push(b.toString().trim());
      return true;
    },
  });
  return { reg, h, logs, written, changed, guard };
}

describe('OvirtChannelHandler with the heartbeat pattern', () => {
  it('negotiates the version the agent announces after a run of matching heartbeats', () => {
    const { h, written } = handler();
    for (let n = 0; n < 5; n++) h.data(Buffer.from(agentBeat(2048 - n, 10 * n + 1, n, '0') + '\n'));
    expect(written.filter((w) => w.includes('api-version'))).toEqual([]);
    for (let n = 0; n < 5; n++) h.data(Buffer.from(agentBeat(1000 + n, 7 + n, n, '3') + '\n'));
    expect(written.filter((w) => w.includes('api-version')).map((w) => JSON.parse(w) as unknown)).toEqual([
      { __name__: 'api-version', apiVersion: 3 },
    ]);
    h.stop();
  });

  it('a line like the last heartbeat that is not JSON is counted as bad JSON, not taken for a heartbeat', () => {
    const { h, logs, reg } = handler();
    h.data(Buffer.from(agentBeat(2048, 1, 0, '3') + '\n'));
    expect(reg.get(VM)).toMatchObject({ guestAgentStatus: 'responsive' });
    h.data(Buffer.from(agentBeat(2048, 1, 0, '3').replace('"swap_in": 0', '"swap_in": 007') + '\n'));
    h.data(Buffer.from(agentBeat(4096, 2, 5, '3') + '\n'));
    h.stop();
    expect(logs.filter((l) => l.code === GuestIssue.badJson)).toHaveLength(1);
    expect(logs.filter((l) => typeof l.code === 'string' && l.code !== GuestIssue.badJson)).toEqual([]);
  });
});

const network = (inet: string): string =>
  `{"__name__": "network-interfaces", "interfaces": [{"name": "eth0", "hw": "52:54:00:00:00:01", "inet": ["${inet}"], "inet6": ["fd00::7"]}]}`;

describe('LinePattern.exact', () => {
  it('matches the very bytes only, a digit included, also inside a larger buffer', () => {
    const line = Buffer.from(network('192.0.2.7'));
    const p = LinePattern.exact(line, 0, line.length);
    const inside = Buffer.concat([Buffer.from('{"a": 1}\n'), line, Buffer.from('\n{"a": 1}')]);
    expect(p.matches(line, 0, line.length)).toBe(true);
    expect(p.matches(inside, 9, 9 + line.length)).toBe(true);
    expect(p.matches(inside, 9, 9 + line.length - 1)).toBe(false);
    expect(p.matches(inside, 9, 9 + line.length + 1)).toBe(false);
    for (const other of [network('192.0.2.8'), network('192.0.2.70'), network('192.0.2.7 ')]) {
      const b = Buffer.from(other);
      expect(p.matches(b, 0, b.length), other).toBe(false);
    }
  });
});

describe('OvirtChannelHandler with repeated network data', () => {
  it('a repeat changes nothing; a change is announced; the first data again after a change is applied', () => {
    const { reg, changed, h } = handler();
    h.data(Buffer.from(network('192.0.2.7') + '\n'));
    expect(changed.at(-1)).toEqual(['netIfaces', 'guestIPs', 'guestAgentStatus']);
    changed.length = 0;
    h.data(Buffer.from(network('192.0.2.7') + '\n'));
    expect(changed).toEqual([]);
    h.data(Buffer.from(network('192.0.2.8') + '\n'));
    expect(reg.get(VM)).toMatchObject({ guestIPs: '192.0.2.8' });
    h.data(Buffer.from(network('192.0.2.7') + '\n'));
    h.stop();
    expect(changed).toEqual([
      ['netIfaces', 'guestIPs'],
      ['netIfaces', 'guestIPs'],
    ]);
    expect(reg.get(VM)).toMatchObject({ guestIPs: '192.0.2.7' });
  });

  it('a repeat after the registry lost the VM (its channel re-added) brings the data back', () => {
    const { reg, h } = handler();
    h.data(Buffer.from(network('192.0.2.7') + '\n'));
    reg.channelRemoved(VM, OVIRT);
    reg.channelAdded(VM, OVIRT);
    expect(reg.get(VM)).toMatchObject({ guestIPs: '' });
    h.data(Buffer.from(network('192.0.2.7') + '\n'));
    h.stop();
    expect(reg.get(VM)).toMatchObject({ guestIPs: '192.0.2.7', guestAgentStatus: 'responsive' });
    expect(reg.get(VM)?.netIfaces).toEqual([
      { name: 'eth0', hw: '52:54:00:00:00:01', inet: ['192.0.2.7'], inet6: ['fd00::7'] },
    ]);
  });

  it('data with an issue is parsed, and counted, every time it comes', () => {
    const { h, guard, logs } = handler();
    for (let n = 0; n < 3; n++) h.data(Buffer.from(network('192.0.2.777') + '\n'));
    h.stop();
    guard.close();
    expect(logs.find((l) => l.msg === 'guest input issues while the VM was known')).toMatchObject({
      counts: { [GuestIssue.badAddress]: 3 },
    });
  });
});
