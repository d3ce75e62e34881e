// What the oVirt engine's own parsing code (VdsBrokerObjectsBuilder) can take: it casts every
// VmStats field without checks, and one VM map that breaks a cast fails Host.getAllVmStats for the
// whole host (REFERENCE.md, "What the engine's code reads"). The real daemon, three VMs on real
// UNIX sockets — a qemu-ga that accepts the connection and never answers, an oVirt agent that
// connects and never speaks, and a normal oVirt agent — and every field's JSON type checked
// against the table below, in Host.getAllVmStats, VM.getStats and the VM_status events, over
// WebSocket and over STOMP 1.2, on the raw JSON text each transport delivered.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { startDaemon, type RunningDaemon } from './helpers/daemon.js';
import { channelPath, newVmId, tempDir } from './helpers/channelsDir.js';
import { ScriptedGuest, withTimeout } from './helpers/scriptedGuest.js';
import { frame, RawStomp } from './helpers/rawStomp.js';

const INT_MAX = 2147483647;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const DIGITS = /^\d+$/;
/** vmstatus.py's words: anything else the engine reads as Unassigned. */
const VDSM_STATUS = [
  'Up',
  'Down',
  'Paused',
  'Powering up',
  'Powering down',
  'RebootInProgress',
  'Migration Source',
  'Migration Destination',
  'Saving State',
  'Restoring state',
  'WaitForLaunch',
];

/** The JSON type of a parsed value, telling integers from other numbers. */
type JsonType = 'string' | 'integer' | 'number' | 'boolean' | 'null' | 'array' | 'object';
function jsonType(v: unknown): JsonType {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v as JsonType;
}

interface FieldRule {
  /** The JSON type the engine's cast needs. */
  type: JsonType;
  /** What else about the value the engine relies on; returns the problem or null. */
  check?: (v: never) => string | null;
}

const stringList = (v: unknown[]): string | null =>
  v.every((a) => typeof a === 'string') ? null : `not all strings: ${JSON.stringify(v)}`;

/** netIfaces[] elements: a list of maps whose inet/inet6 are lists of strings (null there is an NPE). */
const INTERFACE_RULES: Record<string, FieldRule> = {
  name: { type: 'string' },
  hw: { type: 'string' },
  inet: { type: 'array', check: stringList },
  inet6: { type: 'array', check: stringList },
};

/** Every VmStats key the daemon may send, with the type REFERENCE's table gives for the engine's cast. */
const STATS_RULES: Record<string, FieldRule> = {
  vmId: { type: 'string', check: (v: string) => (UUID.test(v) ? null : 'not a lower-case UUID') },
  status: { type: 'string', check: (v: string) => (VDSM_STATUS.includes(v) ? null : `not a VDSM status word: ${v}`) },
  // A string of digits on VDSM's event clock (a JSON integer here becomes a null timestamp and an NPE).
  statusTime: {
    type: 'string',
    check: (v: string) => (DIGITS.test(v) && Number(v) > INT_MAX ? null : `not a string of digits above INT_MAX: ${v}`),
  },
  elapsedTime: { type: 'string', check: (v: string) => (DIGITS.test(v) ? null : `not whole seconds: ${v}`) },
  netIfaces: {
    type: 'array',
    check: (v: unknown[]) =>
      v.map((i) => problemsOf(i, INTERFACE_RULES, Object.keys(INTERFACE_RULES)).join('; ')).find((p) => p !== '') ??
      null,
  },
  // A map of maps keyed by host device; {} is fine, null an NPE, a list a ClassCastException.
  network: {
    type: 'object',
    check: (v: Record<string, unknown>) =>
      Object.values(v).every((n) => jsonType(n) === 'object') ? null : 'a vNIC entry that is not a map',
  },
  guestIPs: { type: 'string' },
  guestName: { type: 'string' },
  guestFQDN: { type: 'string' },
  guestOs: { type: 'string' },
  guestAgentStatus: {
    type: 'string',
    check: (v: string) => (['responsive', 'unresponsive', 'unknown'].includes(v) ? null : `unknown agent status ${v}`),
  },
  // Down only (VDSM's exit fields): exitCode 0 or 1, exitReason an integer, exitMessage a string.
  exitCode: { type: 'integer', check: (v: number) => (v === 0 || v === 1 ? null : `exitCode ${v}`) },
  exitReason: { type: 'integer' },
  exitMessage: { type: 'string' },
  // Paused only: a string or absent, never null.
  pauseCode: { type: 'string' },
};

/** Keys every VmStats carries (VM.getStats, Host.getAllVmStats). */
const STATS_REQUIRED = [
  'vmId',
  'status',
  'statusTime',
  'elapsedTime',
  'netIfaces',
  'network',
  'guestIPs',
  'guestName',
  'guestFQDN',
  'guestOs',
  'guestAgentStatus',
];
/** Keys every VM_status event body carries. */
const EVENT_REQUIRED = ['status', 'statusTime'];

/** Every broken rule of `value` (an object) against `rules`: missing keys, unknown keys, wrong types. */
function problemsOf(value: unknown, rules: Record<string, FieldRule>, required: string[]): string[] {
  if (jsonType(value) !== 'object') return [`not an object: ${JSON.stringify(value)}`];
  const o = value as Record<string, unknown>;
  const problems: string[] = [];
  for (const k of required) if (!(k in o)) problems.push(`${k} missing`);
  for (const [k, v] of Object.entries(o)) {
    const rule = rules[k];
    if (!rule) {
      problems.push(`${k}: not in the table`);
      continue;
    }
    const t = jsonType(v);
    if (t !== rule.type && !(rule.type === 'number' && t === 'integer')) {
      problems.push(`${k}: ${t} where the engine casts to ${rule.type} (${JSON.stringify(v)})`);
      continue;
    }
    const p = rule.check?.(v as never);
    if (p) problems.push(`${k}: ${p}`);
  }
  return problems;
}

/** Monotonic milliseconds of this process: the daemon's clock is the same CLOCK_MONOTONIC. */
const monoMs = (): number => Number(process.hrtime.bigint() / 1_000_000n);

/** One client connection, whatever the transport: raw JSON texts in, raw JSON texts out. */
interface Side {
  readonly name: string;
  /** Sends a JSON-RPC request; resolves with the raw text of its response. */
  call(method: string, params?: unknown): Promise<string>;
  /** Raw texts of every event received so far. */
  events(): string[];
  /** Resolves once `pred` holds, checked on every arrival. */
  until(pred: () => boolean, what: string): Promise<void>;
  close(): void;
}

const WAIT_MS = 20_000;

/** Resolves when `pred` holds; `subscribe` registers a re-check that runs on each arrival. */
function untilArrival(
  pred: () => boolean,
  subscribe: (check: () => void) => void,
  what: string,
  describeState: () => string,
): Promise<void> {
  return withTimeout(
    new Promise<void>((resolve) => {
      const check = (): void => (pred() ? resolve() : subscribe(check));
      check();
    }),
    WAIT_MS,
    `${what} (${describeState()})`,
  );
}

async function webSocketSide(url: string): Promise<Side> {
  const ws = new WebSocket(url);
  ws.on('error', () => {});
  await withTimeout(
    new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject)),
    WAIT_MS,
    'WebSocket open',
  );
  const texts: string[] = [];
  let waiters: (() => void)[] = [];
  ws.on('message', (data: Buffer) => {
    texts.push(data.toString('utf8'));
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  });
  let nextId = 1;
  const side: Side = {
    name: 'WebSocket',
    async call(method, params) {
      const id = nextId++;
      ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) }));
      const isReply = (t: string): boolean => (JSON.parse(t) as { id?: unknown }).id === id;
      await side.until(() => texts.some(isReply), `reply to ${method}`);
      return texts.find(isReply)!;
    },
    events: () => texts.filter((t) => (JSON.parse(t) as { method?: unknown }).method !== undefined),
    until: (pred, what) =>
      untilArrival(
        pred,
        (f) => waiters.push(f),
        what,
        () => `${texts.length} messages`,
      ),
    close: () => ws.close(),
  };
  expect(JSON.parse(await side.call('Host.subscribeEvents'))).toMatchObject({ result: true });
  return side;
}

const REQUESTS = 'jms.topic.vdsm_requests';
const RESPONSES = 'jms.topic.vdsm_responses';
const EVENTS = 'jms.queue.events';

/** STOMP 1.2 over the daemon's TCP port, as the engine speaks it (responses and events subscribed). */
async function stompSide(port: number): Promise<Side> {
  const c = await RawStomp.connect(port);
  c.write('CONNECT\naccept-version:1.2\nheart-beat:0,0\nhost:null\n\n\0');
  c.write(frame('SUBSCRIBE', { destination: RESPONSES, id: 'responses', ack: 'auto' }));
  c.write(frame('SUBSCRIBE', { destination: EVENTS, id: 'events', ack: 'auto' }));
  /** Bodies of the MESSAGE frames sent to `destination`. */
  const bodies = (destination: string): string[] =>
    c
      .frames()
      .filter((f) => f.startsWith('MESSAGE\n') && f.includes(`\ndestination:${destination}\n`))
      .map((f) => f.slice(f.indexOf('\n\n') + 2));
  let nextId = 1;
  const side: Side = {
    name: 'STOMP',
    async call(method, params) {
      const id = `stomp-${nextId++}`;
      c.write(
        frame(
          'SEND',
          { destination: REQUESTS, 'reply-to': RESPONSES },
          JSON.stringify({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) }),
        ),
      );
      const isReply = (t: string): boolean => (JSON.parse(t) as { id?: unknown }).id === id;
      await side.until(() => bodies(RESPONSES).some(isReply), `reply to ${method}`);
      return bodies(RESPONSES).find(isReply)!;
    },
    events: () => bodies(EVENTS),
    until: (pred, what) => c.until(pred, WAIT_MS, what),
    close: () => c.close(),
  };
  // Frames are handled in order: once this answers, both SUBSCRIBEs are in place.
  expect(JSON.parse(await side.call('Host.ping2'))).toMatchObject({ result: true });
  return side;
}

interface EventSeen {
  raw: string;
  vmId: string;
  body: Record<string, unknown>;
  notifyTime: unknown;
}

function parseEvents(side: Side): EventSeen[] {
  return side.events().map((raw) => {
    const ev = JSON.parse(raw) as { method: string; params: Record<string, unknown> };
    const vmId = ev.method.slice('|virt|VM_status|'.length);
    return { raw, vmId, body: ev.params[vmId] as Record<string, unknown>, notifyTime: ev.params.notify_time };
  });
}

describe("VmStats in shapes the engine's code can take", () => {
  let d: RunningDaemon | undefined;
  let dir: string;
  let sides: Side[] = [];
  const silentQga = newVmId();
  const silentOvirt = newVmId();
  const normal = newVmId();
  const vms = [silentQga, silentOvirt, normal];
  let startedMs = 0;

  const normalIfaces = [
    { name: 'eth0', hw: '52:54:00:12:34:56', inet: ['192.0.2.10'], inet6: ['fe80::5054:ff:fe12:3456'] },
    { name: 'eth1', hw: '52:54:00:12:34:57', inet: ['198.51.100.7'] }, // no inet6 key at all
    { name: 'eth2', hw: '52:54:00:12:34:58', inet: null, inet6: ['2001:db8::2'] }, // inet null
  ];

  beforeAll(async () => {
    startedMs = monoMs();
    dir = tempDir('vat-shapes-');
    d = await startDaemon([
      '--listen',
      '127.0.0.1:0',
      '--channels-dir',
      dir,
      '--qga-via',
      'direct',
      '--qga-poll-interval',
      '0.5',
      '--qga-timeout',
      '0.5',
    ]);
    // Subscribed before any VM exists, so every VM's first event is seen.
    sides = [await webSocketSide(d.url), await stompSide(Number(new URL(d.url).port))];

    // qemu-ga that accepts the connection, reads every command, and never answers.
    const qga = await ScriptedGuest.listen(channelPath(dir, silentQga, 'org.qemu.guest_agent.0'));
    // oVirt agent that connects and never speaks.
    const quiet = await ScriptedGuest.listen(channelPath(dir, silentOvirt, 'ovirt-guest-agent.0'));
    // A normal oVirt agent.
    const g = await ScriptedGuest.listen(channelPath(dir, normal, 'ovirt-guest-agent.0'));
    await g.connected();
    await g.send('heartbeat', { 'free-ram': 1024, apiVersion: 3 });
    await g.send('host-name', { name: 'shape-normal' });
    await g.send('fqdn', { fqdn: 'shape-normal.example.test' });
    await g.send('os-version', { version: '6.1.0-18-amd64' });
    await g.send('network-interfaces', { interfaces: normalIfaces });

    // What each VM must have reached, as every subscriber saw it.
    for (const s of sides) {
      const seen =
        (pred: (e: EventSeen) => boolean): (() => boolean) =>
        () =>
          parseEvents(s).some(pred);
      await s.until(
        seen((e) => e.vmId === silentQga && e.body.guestAgentStatus === 'unresponsive'),
        `${s.name}: qemu-ga not answering`,
      );
      await s.until(
        seen((e) => e.vmId === silentOvirt && e.body.status === 'Up'),
        `${s.name}: silent oVirt VM up`,
      );
      await s.until(
        seen(
          (e) =>
            e.vmId === normal &&
            e.body.guestName === 'shape-normal' &&
            Array.isArray(e.body.netIfaces) &&
            e.body.netIfaces.length === 3,
        ),
        `${s.name}: normal VM reported`,
      );
    }
    await qga.waitForLine((l) => l.includes('guest-sync-delimited'));
    await quiet.waitForLine((l) => l.includes('"refresh"'));
  });

  afterAll(async () => {
    for (const s of sides) s.close();
    await d?.stop();
  });

  for (const sideIndex of [0, 1]) {
    const sideName = ['WebSocket', 'STOMP'][sideIndex]!;
    const side = (): Side => sides[sideIndex]!;

    describe(`over ${sideName}`, () => {
      it('Host.getAllVmStats: every field of every VM has the type the engine casts to, on its event clock', async () => {
        const before = monoMs();
        const raw = await side().call('Host.getAllVmStats');
        const after = monoMs();
        const result = (JSON.parse(raw) as { result: Record<string, unknown>[] }).result;
        expect(result.map((s) => s.vmId).sort()).toEqual([...vms].sort());
        for (const s of result) {
          expect(problemsOf(s, STATS_RULES, STATS_REQUIRED), `${String(s.vmId)} in ${raw}`).toEqual([]);
          // 2147483647 + this host's monotonic milliseconds at the time of the call (vdsm event_time).
          expect(Number(s.statusTime)).toBeGreaterThanOrEqual(INT_MAX + before);
          expect(Number(s.statusTime)).toBeLessThanOrEqual(INT_MAX + after);
        }
        // As text too: statusTime and elapsedTime are quoted, the lists are lists.
        expect(raw).toMatch(/"statusTime":"\d+","elapsedTime":"\d+"/);
        expect(raw).not.toMatch(/:null/);
      });

      it('VM.getStats: each VM, including the two whose agents never said anything', async () => {
        const byVm: Record<string, Record<string, unknown>> = {};
        for (const vmId of vms) {
          const raw = await side().call('VM.getStats', { vmID: vmId });
          const result = (JSON.parse(raw) as { result: Record<string, unknown>[] }).result;
          expect(result).toHaveLength(1);
          expect(problemsOf(result[0], STATS_RULES, STATS_REQUIRED), raw).toEqual([]);
          expect(raw).not.toMatch(/:null/);
          byVm[vmId] = result[0]!;
        }
        const nothingYet = {
          status: 'Up',
          netIfaces: [],
          network: {},
          guestIPs: '',
          guestName: '',
          guestFQDN: '',
          guestOs: '',
        };
        expect(byVm[silentQga]).toMatchObject({ ...nothingYet, guestAgentStatus: 'unresponsive' });
        expect(byVm[silentOvirt]).toMatchObject({ ...nothingYet, guestAgentStatus: 'unknown' });
        expect(byVm[normal]).toMatchObject({
          status: 'Up',
          netIfaces: [
            { name: 'eth0', hw: '52:54:00:12:34:56', inet: ['192.0.2.10'], inet6: ['fe80::5054:ff:fe12:3456'] },
            { name: 'eth1', hw: '52:54:00:12:34:57', inet: ['198.51.100.7'], inet6: [] },
            { name: 'eth2', hw: '52:54:00:12:34:58', inet: [], inet6: ['2001:db8::2'] },
          ],
          network: {},
          guestIPs: '192.0.2.10 198.51.100.7',
          guestName: 'shape-normal',
          guestFQDN: 'shape-normal.example.test',
          guestOs: '6.1.0-18-amd64',
          guestAgentStatus: 'responsive',
        });
      });

      it('VM_status events: every body field typed as in the table, notify_time an integer on the event clock', async () => {
        const events = parseEvents(side()).filter((e) => vms.includes(e.vmId));
        // At least: Up for each VM, qemu-ga unresponsive, and the normal VM's reports.
        expect(new Set(events.map((e) => e.vmId))).toEqual(new Set(vms));
        const now = monoMs();
        for (const e of events) {
          expect(problemsOf(e.body, STATS_RULES, EVENT_REQUIRED), e.raw).toEqual([]);
          // A JSON integer literal above INT_MAX (engines before 4.4 take nothing else), never 4711.0.
          expect(e.raw, e.raw).toMatch(/"notify_time":\d+[,}]/);
          expect(jsonType(e.notifyTime)).toBe('integer');
          const notifyTime = e.notifyTime as number;
          expect(notifyTime).toBeGreaterThanOrEqual(INT_MAX + startedMs);
          expect(notifyTime).toBeLessThanOrEqual(INT_MAX + now);
          // Taken when the change happened, announced right after: one clock for both.
          expect(Number(e.body.statusTime)).toBeLessThanOrEqual(notifyTime);
          expect(e.raw).not.toMatch(/:null/);
        }
        // A poll after the events is never older than them: the engine drops data older than the
        // last event it processed for the VM.
        const lastNotify = Math.max(...events.map((e) => e.notifyTime as number));
        const all = (JSON.parse(await side().call('Host.getAllVmStats')) as { result: { statusTime: string }[] })
          .result;
        for (const s of all) expect(Number(s.statusTime)).toBeGreaterThanOrEqual(lastNotify);
      });
    });
  }

  it('the table catches what the engine cannot take (the checker itself can fail)', () => {
    const good = {
      vmId: normal,
      status: 'Up',
      statusTime: String(INT_MAX + 1),
      elapsedTime: '3',
      netIfaces: [],
      network: {},
      guestIPs: '',
      guestName: '',
      guestFQDN: '',
      guestOs: '',
      guestAgentStatus: 'unknown',
    };
    expect(problemsOf(good, STATS_RULES, STATS_REQUIRED)).toEqual([]);
    const broken: [string, unknown][] = [
      ['netIfaces', null],
      ['netIfaces', {}],
      ['netIfaces', [{ name: 'eth0', hw: '', inet: null, inet6: [] }]],
      ['netIfaces', [{ name: 'eth0', hw: '', inet: '192.0.2.1', inet6: [] }]],
      ['statusTime', INT_MAX + 1],
      ['statusTime', '4711'],
      ['elapsedTime', 12],
      ['guestFQDN', null],
      ['guestName', 7],
      ['network', null],
      ['network', []],
      ['status', 'Running'],
    ];
    for (const [k, v] of broken)
      expect(problemsOf({ ...good, [k]: v }, STATS_RULES, STATS_REQUIRED), `${k}: ${JSON.stringify(v)}`).not.toEqual(
        [],
      );
    const { network: _n, ...withoutNetwork } = good;
    expect(problemsOf(withoutNetwork, STATS_RULES, STATS_REQUIRED)).toEqual(['network missing']);
  });
});
