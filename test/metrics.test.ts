// GET /metrics and /health on the real daemon (--qga-via direct): after a known sequence of
// JSON-RPC requests, guest faults, a channel drop and qemu-ga polls, the counters equal what
// happened; promtool (Prometheus' own checker) accepts the output; /health follows start-up
// and shutdown; Host.setLogLevel changes what the daemon logs.
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RpcClient, RpcCallError } from '../src/client/rpcClient.js';
import { GuestSimulator } from '../src/sim/simulator.js';
import { loadGuestDir } from '../src/sim/guestFile.js';
import { GuestIssue } from '../src/guest/issues.js';
import type { Route, VmStats } from '../src/wire.js';
import { ROOT, startDaemon, type RunningDaemon } from './helpers/daemon.js';
import { channelPath, newVmId, tempDir } from './helpers/channelsDir.js';
import { eventually, ScriptedGuest } from './helpers/scriptedGuest.js';
import { hasCommand, IN_CI } from './helpers/prereq.js';
import { atFileEnd } from './helpers/fileCleanup.js';
import { frame, RawStomp } from './helpers/rawStomp.js';

interface HttpAnswer {
  status: number;
  type: string;
  body: string;
}

function get(url: string, pathName: string): Promise<HttpAnswer> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.get({ host: u.hostname, port: u.port, path: pathName, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }));
    });
    req.on('error', reject);
  });
}

/** The Prometheus text format's samples: `name{a="x",b="y"}` (labels as written) -> value. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{.*\})?) (\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    out.set(m[1] ?? '', Number(m[2]));
  }
  return out;
}

async function scrape(url: string): Promise<Map<string, number>> {
  const r = await get(url, '/metrics');
  expect(r.status).toBe(200);
  expect(r.type).toMatch(/^text\/plain; version=0\.0\.4/);
  return samples(r.body);
}

const qgaGuest = loadGuestDir(path.join(ROOT, 'fixtures/demo')).find(
  (g) => g.agents.length === 1 && g.agents[0] === 'qemu',
);

describe('GET /metrics after a known sequence', () => {
  let d: RunningDaemon;
  let guest: ScriptedGuest;
  let sim: GuestSimulator;
  const vmId = newVmId();
  beforeAll(async () => {
    const dir = tempDir('vat-metrics-');
    guest = await ScriptedGuest.listen(channelPath(dir, vmId, 'ovirt-guest-agent.0'));
    sim = new GuestSimulator({ dir, tickMs: 50 });
    await sim.add(qgaGuest!);
    d = await startDaemon([
      '--listen',
      '127.0.0.1:0',
      '--channels-dir',
      dir,
      '--qga-via',
      'direct',
      '--qga-poll-interval',
      '0.2',
    ]);
    await guest.connected();
  });
  afterAll(async () => {
    expect(await d.stop()).toBe(0);
    await sim.close();
  });

  it('counts requests by method and outcome, guest faults by cause, reconnects, connections, qemu-ga polls, route lookups', async () => {
    const before = await scrape(d.url);
    const ws = await RpcClient.connect(d.url);
    for (let i = 0; i < 3; i++) expect(await ws.call('Host.ping2')).toBe(true);
    for (const ip of ['example.com', '10.1'])
      await expect(ws.call('Host.getRoute', { ip })).rejects.toBeInstanceOf(RpcCallError);
    const route = await ws.call<Route>('Host.getRoute', { ip: '127.0.0.1' });
    await expect(ws.call('Host.noSuchVerb')).rejects.toBeInstanceOf(RpcCallError);
    await expect(ws.call('VM.getStats', { vmID: newVmId() })).rejects.toBeInstanceOf(RpcCallError);

    // Guest faults: two lines that are not JSON, one that is not an object, one unknown message,
    // then a name the daemon shows once it has read everything before it.
    await guest.write('{not json\n');
    await guest.write('still not json\n');
    await guest.write('[1,2]\n');
    await guest.send('some-future-message', {});
    await guest.send('host-name', { name: 'counted' });
    const name = async (): Promise<string> =>
      (await ws.call<VmStats[]>('VM.getStats', { vmID: vmId }))[0]?.guestName ?? '';
    await eventually(name, (n) => n === 'counted', 10_000, 'the marker host name');
    // One channel drop: the daemon reconnects.
    const next = guest.nextConnection();
    guest.hangUp();
    await next;
    // qemu-ga has been polled: its interfaces are known.
    await eventually(
      () => ws.call<VmStats[]>('VM.getStats', { vmID: qgaGuest!.vmId }),
      (s) => (s[0]?.netIfaces ?? []).length > 0,
      10_000,
      'qemu-ga interfaces',
    );

    const after = await scrape(d.url);
    const delta = (key: string): number => (after.get(key) ?? 0) - (before.get(key) ?? 0);
    expect(delta('vdsm_agentd_rpc_requests_total{method="Host.ping2",outcome="ok"}')).toBe(3);
    expect(delta('vdsm_agentd_rpc_requests_total{method="Host.getRoute",outcome="invalid_params"}')).toBe(2);
    expect(delta('vdsm_agentd_rpc_requests_total{method="Host.getRoute",outcome="ok"}')).toBe(1);
    expect(delta('vdsm_agentd_rpc_requests_total{method="unknown",outcome="method_not_found"}')).toBe(1);
    expect(delta('vdsm_agentd_rpc_requests_total{method="VM.getStats",outcome="no_such_vm"}')).toBe(1);
    expect(delta('vdsm_agentd_rpc_request_duration_seconds_count{method="Host.ping2"}')).toBe(3);
    expect(delta(`vdsm_agentd_guest_input_issues_total{cause="${GuestIssue.badJson}"}`)).toBe(2);
    expect(delta(`vdsm_agentd_guest_input_issues_total{cause="${GuestIssue.notObject}"}`)).toBe(1);
    expect(delta(`vdsm_agentd_guest_input_issues_total{cause="${GuestIssue.unknownMessage}"}`)).toBe(1);
    expect(delta(`vdsm_agentd_guest_input_issues_total{cause="${GuestIssue.lineTooLong}"}`)).toBe(0);
    expect(delta('vdsm_agentd_channel_reconnects_total{channel="ovirt-guest-agent.0"}')).toBe(1);
    // Input validation refused two addresses before any lookup; one lookup went to the kernel.
    expect(delta(`vdsm_agentd_route_lookups_total{path="${route.via}",outcome="ok"}`)).toBe(1);
    expect(after.get('vdsm_agentd_connections{transport="websocket"}')).toBe(1);
    expect(delta('vdsm_agentd_connections_opened_total{transport="websocket"}')).toBe(1);
    expect(after.get('vdsm_agentd_vms{status="Up"}')).toBe(2);
    expect(
      (after.get(
        'vdsm_agentd_qga_command_duration_seconds_count{command="guest-network-get-interfaces",outcome="ok"}',
      ) ?? 0) > 0,
    ).toBe(true);
    expect(after.has('process_cpu_seconds_total')).toBe(true);
    expect(after.has('vdsm_agentd_libvirt_up')).toBe(false); // --qga-via direct: no libvirt
    await ws.close();
    const closed = await eventually(
      () => scrape(d.url),
      (m) => m.get('vdsm_agentd_connections{transport="websocket"}') === 0,
      10_000,
      'the connection gone',
    );
    expect(closed.get('vdsm_agentd_connections_opened_total{transport="websocket"}')).toBe(
      (before.get('vdsm_agentd_connections_opened_total{transport="websocket"}') ?? 0) + 1,
    );
  });

  it('counts STOMP connections under their own transport', async () => {
    const before = await scrape(d.url);
    const c = await RawStomp.connect(Number(new URL(d.url).port));
    c.write(frame('CONNECT', { 'accept-version': '1.2', host: 'null' }));
    await c.until(() => c.text().startsWith('CONNECTED'), 10_000, 'CONNECTED');
    const open = await scrape(d.url);
    expect(open.get('vdsm_agentd_connections{transport="stomp"}')).toBe(1);
    expect(
      (open.get('vdsm_agentd_connections_opened_total{transport="stomp"}') ?? 0) -
        (before.get('vdsm_agentd_connections_opened_total{transport="stomp"}') ?? 0),
    ).toBe(1);
    c.close();
    await eventually(
      () => scrape(d.url),
      (m) => m.get('vdsm_agentd_connections{transport="stomp"}') === 0,
      10_000,
      'the STOMP connection gone',
    );
  });

  it('passes promtool check metrics', async (ctx) => {
    if (!hasCommand('promtool')) {
      if (IN_CI)
        throw new Error('promtool missing (Debian package prometheus; scripts/setup-test-host.sh installs it)');
      ctx.skip('promtool not installed (Debian package prometheus)');
    }
    const text = (await get(d.url, '/metrics')).body;
    // promtool prints each problem and exits non-zero; execFileSync throws with its output.
    expect(execFileSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' })).toBe('');
  });

  it('GET /health is 200 with a small JSON body while serving; other paths still say 426', async () => {
    const r = await get(d.url, '/health');
    expect(r.status).toBe(200);
    expect(r.type).toBe('application/json');
    expect(JSON.parse(r.body)).toMatchObject({ status: 'serving', vms: 2, connections: 0 });
    expect((await get(d.url, '/')).status).toBe(426);
  });

  it('Host.setLogLevel changes the level at once, and refuses a name it does not know', async () => {
    const ws = await RpcClient.connect(d.url);
    const debugLines = (): number => d.logs().filter((l) => l.level === 'debug').length;
    expect(await ws.call('Host.setLogLevel', { level: 'DEBUG' })).toBe(true);
    await ws.call('Host.ping2');
    await d.waitForLog((l) => l.level === 'debug' && l.msg === 'request' && String(l.request).includes('Host.ping2'));
    expect(await ws.call('Host.setLogLevel', { level: 'WARNING' })).toBe(true);
    await d.waitForLog((l) => l.msg === 'log level changed' && l.to === 'warn');
    const seen = debugLines();
    await ws.call('Host.ping2');
    expect(await ws.call('Host.setLogLevel', ['info'])).toBe(true);
    // The info line of the last change is logged after the ping's (no debug line came between).
    await d.waitForLog((l) => l.msg === 'log level changed' && l.to === 'info');
    expect(debugLines()).toBe(seen);
    await expect(ws.call('Host.setLogLevel', { level: 'loud' })).rejects.toMatchObject({ error: { code: -32602 } });
    await ws.close();
  });
});

describe('GET /health through start-up and shutdown', () => {
  it('is 503 "starting" until the daemon serves, 200 while it does, refused once shutdown begins', async () => {
    // A libvirt socket that accepts and never answers holds start-up after the port is bound.
    const dir = tempDir('vat-health-');
    const libvirtSock = path.join(dir, 'libvirt-sock');
    const held: net.Socket[] = [];
    const libvirt = net.createServer((s) => held.push(s));
    await new Promise<void>((r) => libvirt.listen(libvirtSock, r));
    atFileEnd(() => libvirt.close());
    const gotLibvirt = new Promise<void>((r) => libvirt.once('connection', () => r()));
    const port = await freePort();
    const url = `ws://127.0.0.1:${port}`;
    const starting = startDaemon(
      [
        '--listen',
        `127.0.0.1:${port}`,
        '--channels-dir',
        dir,
        '--qga-via',
        'libvirt',
        '--libvirt-uri',
        `qemu+unix:///system?socket=${libvirtSock}`,
        '--shutdown-timeout',
        '60',
      ],
      { timeoutMs: 60_000 },
    );
    await gotLibvirt;
    const early = await get(url, '/health');
    expect(early.status).toBe(503);
    expect(JSON.parse(early.body)).toMatchObject({ status: 'starting' });
    for (const s of held) s.destroy(); // libvirt "fails": start-up goes on without it
    const d = await starting;
    expect((await get(url, '/health')).status).toBe(200);
    // libvirt did not answer: the daemon serves without it and says so.
    expect((await scrape(url)).get('vdsm_agentd_libvirt_up')).toBe(0);

    // A WebSocket client that never answers the close handshake keeps shutdown going. The port
    // closes at once on SIGTERM (as before), so a health check made then cannot succeed; a
    // request already on an open connection would be answered 503 "stopping".
    const ws = await RpcClient.connect(url);
    (ws.ws as unknown as { _socket: net.Socket })._socket.pause();
    d.proc.kill('SIGTERM');
    await d.waitForLog((l) => l.msg === 'shutting down');
    // Refused, or reset when it raced the closing listener: never answered 200.
    await expect(get(url, '/health')).rejects.toMatchObject({
      code: expect.stringMatching(/^ECONN(REFUSED|RESET)$/) as unknown,
    });
    expect(d.proc.exitCode).toBe(null); // still shutting down
    ws.ws.terminate();
    expect(await d.exited).toBe(0);
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

describe('events published and subscribers cut off', () => {
  it('counts each event once and the subscriber that stopped reading once', async () => {
    const dir = tempDir('vat-metrics-ev-');
    const vmId = newVmId();
    const g = await ScriptedGuest.listen(channelPath(dir, vmId, 'ovirt-guest-agent.0'));
    const d = await startDaemon([
      '--listen',
      '127.0.0.1:0',
      '--channels-dir',
      dir,
      '--max-subscriber-buffer-bytes',
      '65536',
      '--subscriber-drain-timeout',
      '2',
    ]);
    try {
      await g.connected();
      const reader = await RpcClient.connect(d.url);
      let received = 0;
      const arrived: (() => void)[] = [];
      reader.onNotification = () => {
        received++;
        for (const w of arrived.splice(0)) w();
      };
      await reader.call('Host.subscribeEvents');
      const next = (): Promise<void> => new Promise((resolve) => arrived.push(resolve));
      let event = next();
      await g.send('heartbeat', { apiVersion: 3 }); // the agent turns responsive: one event
      await event;
      // A subscriber whose socket stops reading: the daemon's writes to it pile up.
      const stalled = await RpcClient.connect(d.url);
      await stalled.call('Host.subscribeEvents');
      (stalled.ws as unknown as { _socket: net.Socket })._socket.pause();
      const before = await scrape(d.url);
      received = 0;
      // Large events (128 interfaces), one at a time, each once the reader has it, until the
      // daemon cuts the stalled subscriber off (the kernel's socket buffers fill within a few MB).
      const big = (k: number): unknown[] =>
        Array.from({ length: 128 }, (_, i) => ({
          name: `eth${i}`,
          hw: `52:54:00:00:${(i + 16).toString(16)}:01`,
          inet: [1, 2, 3, 4].map((a) => `10.${k % 250}.${i}.${a}`),
          inet6: [1, 2, 3, 4, 5, 6, 7, 8].map((a) => `fd0${a}::${i}:${k}`),
        }));
      const seen = { cut: false };
      d.waitForLog((l) => l.msg === 'event subscriber too slow, disconnecting', 300_000).then(
        () => (seen.cut = true),
        () => undefined,
      );
      for (let k = 0; !seen.cut && k < 190; k++) {
        event = next();
        await g.send('network-interfaces', { interfaces: big(k) });
        await event;
      }
      expect(seen.cut).toBe(true);
      const after = await scrape(d.url);
      expect(
        (after.get('vdsm_agentd_events_published_total') ?? 0) -
          (before.get('vdsm_agentd_events_published_total') ?? 0),
      ).toBe(received);
      expect(
        (after.get('vdsm_agentd_event_subscribers_cut_off_total') ?? 0) -
          (before.get('vdsm_agentd_event_subscribers_cut_off_total') ?? 0),
      ).toBe(1);
      expect(after.get('vdsm_agentd_event_subscribers')).toBe(1);
      stalled.ws.terminate();
      await reader.close();
    } finally {
      expect(await d.stop()).toBe(0);
      await g.close();
    }
  });
});
