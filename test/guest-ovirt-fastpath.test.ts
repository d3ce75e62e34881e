// The oVirt agent's per-message fast paths (issue 16, idle CPU) give what the general paths give:
// UTF-8 decoding through Buffer, the parser's issues copied out only when there are some, the
// framer's sink, a heartbeat as setAgentStatus('responsive') instead of an empty report, and the
// handler that ties them together.
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { LineFramer, QGA_DELIMITER, isBlank, type Frame, type FrameSink } from '../src/guest/framing.js';
import { GuestIssue, type IssueCounts } from '../src/guest/issues.js';
import { parseOvirtLine } from '../src/guest/ovirtAgent.js';
import { decodeUtf8 } from '../src/guest/sanitize.js';
import { InputGuard } from '../src/channels/inputGuard.js';
import { OvirtChannelHandler } from '../src/channels/ovirtChannel.js';
import { VmRegistry, type VmChange } from '../src/vms/registry.js';
import type { GuestNetworkDeviceInfo } from '../src/wire.js';

const VM = '6f2b1a8e-0c5d-4e6f-9a7b-8c9d0e1f2a3b';
const OVIRT = 'ovirt-guest-agent.0' as const;
const strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const lenient = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

/** What decodeUtf8 gave before its fast path: TextDecoder alone. */
function referenceDecode(bytes: Uint8Array): { text: string; replaced: boolean } {
  try {
    return { text: strict.decode(bytes), replaced: false };
  } catch {
    return { text: lenient.decode(bytes), replaced: true };
  }
}

/** Deterministic bytes, biased to UTF-8 lead and continuation bytes so that both valid and broken sequences occur. */
function randomBytes(seed: number, length: number): Buffer {
  let x = seed * 2654435761 + 1;
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) {
    x = (Math.imul(x ^ (x >>> 15), 2246822507) + 0x6d2b79f5) | 0;
    const r = (x >>> 8) & 0xff;
    out[i] = r < 80 ? r & 0x7f : r < 150 ? 0x80 | (r & 0x3f) : r < 230 ? 0xc0 | (r & 0x3f) : r;
  }
  return out;
}

describe('decodeUtf8 through Buffer', () => {
  it('gives what TextDecoder gives, and counts a replacement exactly when TextDecoder refused the bytes', () => {
    let invalid = 0;
    for (let seed = 0; seed < 20_000; seed++) {
      const bytes = randomBytes(seed, 1 + (seed % 24));
      const want = referenceDecode(bytes);
      for (const input of [bytes, new Uint8Array(bytes)]) {
        const issues: IssueCounts = new Map();
        expect(decodeUtf8(input, issues), bytes.toString('hex')).toBe(want.text);
        expect(issues.get(GuestIssue.textReplaced), bytes.toString('hex')).toBe(want.replaced ? 1 : undefined);
      }
      if (want.replaced) invalid++;
    }
    expect(invalid).toBeGreaterThan(1000); // the sample really had broken sequences
  });

  it('a range of a chunk decodes as that range on its own would', () => {
    for (let seed = 0; seed < 2000; seed++) {
      const chunk = randomBytes(seed, 40);
      const start = seed % 13;
      const end = 40 - (seed % 7);
      const alone: IssueCounts = new Map();
      const ranged: IssueCounts = new Map();
      expect(decodeUtf8(chunk, ranged, start, end)).toBe(decodeUtf8(Buffer.from(chunk.subarray(start, end)), alone));
      expect(ranged).toEqual(alone);
    }
  });

  it('a U+FFFD the guest really sent, a BOM and surrogates encoded in UTF-8 decode as before', () => {
    for (const hex of ['efbfbd', 'efbbbf41', 'eda080', 'f09f9880', 'c080', 'f4908080', '41efbfbd42ff']) {
      const bytes = Buffer.from(hex, 'hex');
      const issues: IssueCounts = new Map();
      const want = referenceDecode(bytes);
      expect(decodeUtf8(bytes, issues), hex).toBe(want.text);
      expect(issues.size, hex).toBe(want.replaced ? 1 : 0);
    }
  });
});

const heartbeat = (freeRam: number, extra = ''): Buffer =>
  Buffer.from(`{"__name__": "heartbeat", "free-ram": "${freeRam}"${extra}, "apiVersion": 3}`);

describe('parseOvirtLine issues', () => {
  it('a clean heartbeat has no issues, and the issues of one line never show in another', () => {
    const clean = parseOvirtLine(heartbeat(2048));
    expect(clean).toEqual({ name: 'heartbeat', report: null, apiVersion: 3, valid: true, issues: new Map() });
    const bad = parseOvirtLine(Buffer.from('{"__name__": "heartbeat", "apiVersion": "3"}'));
    expect([...bad.issues]).toEqual([[GuestIssue.badField, 1]]);
    expect(bad.apiVersion).toBeNull();
    const next = parseOvirtLine(heartbeat(2049));
    expect(next.issues.size).toBe(0);
    expect(clean.issues.size).toBe(0);
    expect([...bad.issues]).toEqual([[GuestIssue.badField, 1]]); // its own copy, untouched by the next line
  });

  it('a heartbeat with invalid UTF-8 is still a heartbeat, with the replacement counted', () => {
    const m = parseOvirtLine(Buffer.from('{"__name__": "heartbeat", "note": "a\xffb", "apiVersion": 2}', 'latin1'));
    expect(m).toMatchObject({ name: 'heartbeat', valid: true, apiVersion: 2 });
    expect([...m.issues]).toEqual([[GuestIssue.textReplaced, 1]]);
    expect(parseOvirtLine(heartbeat(5)).issues.size).toBe(0);
  });

  it('a line given as a range of its chunk parses as the line alone', () => {
    const lines = [
      heartbeat(7).toString(),
      '{"__name__": "heartbeat", "apiVersion": "x"}',
      '{"__name__": "host-name", "name": "web\u0007"}',
      '[1, 2]',
      'not json',
    ];
    const chunk = Buffer.from(lines.join('\n') + '\n');
    let start = 0;
    for (const text of lines) {
      const end = chunk.indexOf(0x0a, start);
      expect(parseOvirtLine(chunk, start, end), text).toEqual(parseOvirtLine(Buffer.from(text)));
      start = end + 1;
    }
  });

  it('issues add up within a line as before (a name with a control character, an unknown message)', () => {
    const m = parseOvirtLine(Buffer.from('{"__name__": "heart\\u0001beat"}'));
    expect(m.name).toBe('heart\ufffdbeat');
    expect([...m.issues].sort()).toEqual([
      [GuestIssue.textReplaced, 1],
      [GuestIssue.unknownMessage, 1],
    ]);
    const names = parseOvirtLine(Buffer.from(`{"__name__": "${'heartbeat'.repeat(6)}"}`));
    expect(names.name).toHaveLength(50);
    expect([...names.issues].sort()).toEqual([
      [GuestIssue.textTruncated, 1],
      [GuestIssue.unknownMessage, 1],
    ]);
  });
});

describe('LineFramer.feed', () => {
  class Recorder implements FrameSink {
    readonly frames: string[] = [];
    line(chunk: Buffer, start: number, end: number): void {
      this.frames.push(`line:${chunk.toString('hex', start, end)}`);
    }
    dropped(code: string): void {
      this.frames.push(code);
    }
    delimiter(): void {
      this.frames.push('delimiter');
    }
  }
  const show = (frames: Frame[]): string[] =>
    frames.map((f) => (f.kind === 'line' ? `line:${f.bytes.toString('hex')}` : f.kind === 'dropped' ? f.code : f.kind));

  it('hands the sink the frames push() lists, in order, however the stream is split', () => {
    for (let seed = 0; seed < 300; seed++) {
      const stream = Buffer.from(randomBytes(seed, 200).map((b) => (b % 7 === 0 ? 0x0a : b)));
      const cut = [0, (seed * 37) % 200, (seed * 91) % 200, 200].sort((a, b) => a - b);
      const chunks = cut.slice(1).map((end, i) => stream.subarray(cut[i], end));
      const viaPush = new LineFramer(16, QGA_DELIMITER);
      const viaFeed = new LineFramer(16, QGA_DELIMITER);
      const sink = new Recorder();
      const listed: string[] = [];
      for (const c of chunks) {
        listed.push(...show(viaPush.push(c)));
        viaFeed.feed(c, sink);
        expect(viaFeed.bufferedBytes).toBe(viaPush.bufferedBytes);
      }
      expect(sink.frames).toEqual(listed);
    }
  });

  it('isBlank looks at the range only', () => {
    const chunk = Buffer.from('{} \t\r\n{');
    expect(isBlank(chunk, 2, 5)).toBe(true);
    expect(isBlank(chunk, 1, 5)).toBe(false);
    expect(isBlank(chunk, 2, 7)).toBe(false);
    expect(isBlank(chunk.subarray(2, 5))).toBe(true);
  });

  it("push() lists stay each call's own", () => {
    const f = new LineFramer(64);
    const first = f.push(Buffer.from('a\nb\n'));
    const second = f.push(Buffer.from('c\n'));
    expect(show(first)).toEqual(['line:61', 'line:62']);
    expect(show(second)).toEqual(['line:63']);
  });
});

const eth0 = (addr: string): GuestNetworkDeviceInfo[] => [
  { name: 'eth0', hw: '52:54:00:00:00:01', inet: [addr], inet6: [] },
];

describe('a heartbeat as setAgentStatus(responsive)', () => {
  type Step = { beat: true } | { report: Parameters<VmRegistry['report']>[2] } | { silent: true };
  const steps: Step[] = [
    { beat: true },
    { beat: true },
    { report: { netIfaces: eth0('192.0.2.1') } },
    { beat: true },
    { silent: true },
    { beat: true },
    { report: { guestName: 'web1', guestOs: 'Fedora' } },
    { beat: true },
    { report: { netIfaces: eth0('192.0.2.2'), guestName: 'web1' } },
    { silent: true },
    { report: { netIfaces: eth0('192.0.2.2') } },
    { beat: true },
  ];

  function run(beat: (reg: VmRegistry, vmId: string) => void, vmId: string): { changes: VmChange[]; last: unknown } {
    const reg = new VmRegistry({ clock: () => 1_000_000 });
    const changes: VmChange[] = [];
    reg.onChange((c) => changes.push(c));
    reg.channelAdded(VM, OVIRT);
    for (const s of steps) {
      if ('beat' in s) beat(reg, vmId);
      else if ('report' in s) reg.report(vmId, OVIRT, s.report);
      else reg.setAgentStatus(vmId, OVIRT, 'unresponsive');
    }
    return { changes, last: reg.get(VM) };
  }

  it('gives the same changes and stats as an empty report, heartbeats around changing reports, any id spelling', () => {
    for (const id of [VM, VM.toUpperCase()]) {
      const slow = run((reg, vmId) => reg.report(vmId, OVIRT, {}), id);
      const fast = run((reg, vmId) => reg.setAgentStatus(vmId, OVIRT, 'responsive'), id);
      expect(fast).toEqual(slow);
      expect(fast.changes.map((c) => c.changed)).toEqual([
        ['status'],
        ['guestAgentStatus'],
        ['netIfaces', 'guestIPs'],
        ['guestAgentStatus'],
        ['guestAgentStatus'],
        ['guestName'],
        ['netIfaces', 'guestIPs'],
        ['guestAgentStatus'],
        ['guestAgentStatus'],
      ]);
    }
  });
});

describe('OvirtChannelHandler over the fast paths', () => {
  function handler(): {
    reg: VmRegistry;
    changes: VmChange[];
    h: OvirtChannelHandler;
    logs: Record<string, unknown>[];
  } {
    const reg = new VmRegistry();
    const changes: VmChange[] = [];
    reg.onChange((c) => changes.push(c));
    reg.channelAdded(VM, OVIRT);
    const logs: Record<string, unknown>[] = [];
    const sink = {
      write(line: string): void {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      },
    };
    const guard = new InputGuard(VM, pino({ level: 'debug' }, sink));
    const h = new OvirtChannelHandler(VM, OVIRT, reg, guard, 120_000);
    h.connected({ write: () => true });
    return { reg, changes, h, logs };
  }

  it('heartbeats (one with an issue), then a change: responsive once, the issue logged, the change announced', () => {
    const { reg, changes, h, logs } = handler();
    const ifaces =
      '{"__name__": "network-interfaces", "interfaces": [{"name": "eth0", "hw": "52:54:00:00:00:01", "inet": ["192.0.2.7"], "inet6": []}]}\n';
    h.data(Buffer.concat([heartbeat(1), Buffer.from('\n'), heartbeat(2), Buffer.from('\n')]));
    h.data(Buffer.from('{"__name__": "heartbeat", "apiVersion": -1}\n'));
    h.data(Buffer.from(ifaces.slice(0, 40)));
    h.data(Buffer.from(ifaces.slice(40)));
    h.data(Buffer.concat([heartbeat(3), Buffer.from('\n')]));
    h.stop();
    expect(changes.map((c) => c.changed)).toEqual([['status'], ['guestAgentStatus'], ['netIfaces', 'guestIPs']]);
    expect(reg.get(VM)).toMatchObject({ guestAgentStatus: 'responsive', guestIPs: '192.0.2.7' });
    const warned = logs.filter((l) => l.code === GuestIssue.badField);
    expect(warned).toMatchObject([
      { vmId: VM, channel: OVIRT, message: 'heartbeat', count: 1, msg: 'bad guest input dropped or replaced' },
    ]);
  });
});
