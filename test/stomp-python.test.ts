// The daemon's port as an oVirt engine sees it, driven by Debian's python3-stomp 8 (a STOMP
// client nobody here wrote), over plain TCP and over mutual TLS, against the real daemon with a
// scripted oVirt guest agent on a UNIX socket.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RpcClient } from '../src/client/rpcClient.js';
import type { RunningDaemon } from './helpers/daemon.js';
import { missing } from './helpers/prereq.js';
import { bodiesTo, missingPythonStomp, runStompPeer, type PeerPlan } from './helpers/stompPeer.js';
import { makePki } from './helpers/throwawayPki.js';
import type { ScriptedGuest } from './helpers/scriptedGuest.js';
import { newVmId } from './helpers/channelsDir.js';
import { startDaemonWithGuest } from './helpers/daemonWithGuest.js';

const RESP = 'jms.topic.vdsm_responses';
const EVENTS = 'jms.queue.events';
const SUBS = [
  { destination: EVENTS, id: 'events-sub' },
  { destination: RESP, id: 'responses-sub' },
];
const GUEST_IFACES = [
  { name: 'eth0', hw: '00:21:cc:68:d7:38', inet: ['192.0.2.77'], inet6: ['fe80::221:ccff:fe68:d738'] },
  { name: 'virbr0', hw: '52:54:00:5b:3f:e1', inet: ['192.168.122.1'], inet6: [] },
];

const noPython = missingPythonStomp() ?? missing({ commands: ['openssl'] });

function rpc(id: string, method: string, params?: unknown): string {
  return JSON.stringify({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) });
}

function port(d: RunningDaemon): number {
  return Number(new URL(d.url).port);
}

describe.skipIf(noPython)('STOMP with python3-stomp', () => {
  const pki = noPython ? null : makePki();
  const vmId = newVmId();
  let plain: RunningDaemon;
  let secure: RunningDaemon;
  const guests: ScriptedGuest[] = [];

  beforeAll(async () => {
    const guest = { hostName: 'stomp-guest', interfaces: GUEST_IFACES };
    const p = await startDaemonWithGuest(vmId, guest);
    const tls = ['--tls-cert', pki!.server.cert, '--tls-key', pki!.server.key, '--tls-ca', pki!.ca.cert];
    const s = await startDaemonWithGuest(vmId, guest, tls, {
      cert: pki!.client.cert,
      key: pki!.client.key,
      ca: pki!.ca.cert,
    });
    plain = p.daemon;
    secure = s.daemon;
    guests.push(p.guest, s.guest);
  });
  afterAll(async () => {
    await plain?.stop();
    await secure?.stop();
  });

  const transports = [
    { name: 'plain TCP', daemon: () => plain, guest: () => guests[0]!, tls: () => undefined },
    {
      name: 'mutual TLS',
      daemon: () => secure,
      guest: () => guests[1]!,
      tls: () => ({ cert: pki!.client.cert, key: pki!.client.key, ca: pki!.ca.cert }),
    },
  ];

  for (const t of transports) {
    describe(t.name, () => {
      const base = (): PeerPlan => ({ host: '127.0.0.1', port: port(t.daemon()), tls: t.tls(), subscriptions: SUBS });

      for (const command of ['CONNECT', 'STOMP'] as const) {
        it(`connects with ${command}, negotiates heart-beats and answers Host.ping2 as a MESSAGE`, async () => {
          const s = await runStompPeer({
            ...base(),
            command,
            heartbeats: [4000, 4000],
            requests: [{ reply_to: RESP, body: rpc('p1', 'Host.ping2') }],
            expect_responses: 1,
          }).done;
          expect(s.connected).toMatchObject({ version: '1.2', 'heart-beat': '4000,4000' });
          const reply = s.messages.find((m) => m.headers.destination === RESP)!;
          expect(reply.headers).toMatchObject({ 'content-type': 'application/json', subscription: 'responses-sub' });
          expect(reply.headers['message-id']).toBeTruthy();
          expect(Number(reply.headers['content-length'])).toBe(Buffer.byteLength(reply.body));
          expect(JSON.parse(reply.body)).toEqual({ jsonrpc: '2.0', id: 'p1', result: true });
          expect(s.errors).toEqual([]);
        });
      }

      it('accepts SUBSCRIBE before CONNECT, as the engine sends them', async () => {
        const s = await runStompPeer({
          ...base(),
          subscribe_first: true,
          heartbeats: [0, 15000],
          requests: [{ reply_to: RESP, body: rpc('early', 'Host.ping2') }],
          expect_responses: 1,
        }).done;
        // The engine's 0,15000 comes back swapped: we beat every 15 s, and expect nothing.
        expect(s.connected).toMatchObject({ version: '1.2', 'heart-beat': '15000,0' });
        expect(bodiesTo(s, RESP)).toEqual([{ jsonrpc: '2.0', id: 'early', result: true }]);
      });

      it('Host.getAllVmStats lists the scripted guest with its interfaces', async () => {
        const s = await runStompPeer({
          ...base(),
          requests: [{ reply_to: RESP, body: rpc('all', 'Host.getAllVmStats') }],
          expect_responses: 1,
        }).done;
        const [reply] = bodiesTo(s, RESP) as { id: string; result: Record<string, unknown>[] }[];
        expect(reply!.id).toBe('all');
        const vm = reply!.result.find((v) => v.vmId === vmId)!;
        expect(vm).toMatchObject({
          status: 'Up',
          netIfaces: GUEST_IFACES,
          guestIPs: '192.0.2.77 192.168.122.1',
          guestName: 'stomp-guest',
        });
      });

      it('VM.getStats for an unknown VM carries the JSON-RPC error in the MESSAGE body', async () => {
        const unknown = randomUUID();
        const s = await runStompPeer({
          ...base(),
          requests: [{ reply_to: RESP, body: rpc('nx', 'VM.getStats', { vmID: unknown }) }],
          expect_responses: 1,
        }).done;
        const [reply] = bodiesTo(s, RESP) as { id: string; error: { code: number; message: string } }[];
        expect(reply!.id).toBe('nx');
        expect(reply!.error.code).toBe(1);
        expect(reply!.error.message).toMatch(/^Virtual machine does not exist/);
        expect(s.errors).toEqual([]);
      });

      it('sends a VM_status event on jms.queue.events when the guest changes its interfaces', async () => {
        const changed = [{ name: 'eth1', hw: '52:54:00:aa:bb:cc', inet: ['203.0.113.5'], inet6: ['2001:db8::5'] }];
        const peer = runStompPeer({ ...base(), expect_events: 1 });
        await peer.ready;
        await t.guest().send('network-interfaces', { interfaces: changed });
        const s = await peer.done;
        const events = bodiesTo(s, EVENTS) as {
          jsonrpc: string;
          id?: unknown;
          method: string;
          params: Record<string, Record<string, unknown>>;
        }[];
        expect(events).toHaveLength(1);
        expect(events[0]!.id).toBeUndefined(); // the engine takes a body without id as an event
        expect(events[0]!.method).toBe(`|virt|VM_status|${vmId}`);
        expect(events[0]!.params[vmId]).toMatchObject({ status: 'Up', netIfaces: changed, guestIPs: '203.0.113.5' });
        expect(typeof events[0]!.params.notify_time).toBe('number');
        await t.guest().send('network-interfaces', { interfaces: GUEST_IFACES }); // as the other tests expect
      });

      it('keeps a heart-beating client and beats back with bare newlines', async () => {
        const s = await runStompPeer({
          ...base(),
          heartbeats: [1000, 1000],
          hold_seconds: 3.5,
          requests: [{ reply_to: RESP, body: rpc('after', 'Host.ping2') }],
          expect_responses: 1,
        }).done;
        expect(s.connected!['heart-beat']).toBe('1000,1000');
        expect(s.dropped).toBe(false);
        expect(s.heartbeats).toBeGreaterThanOrEqual(2);
      });

      it('drops a client that stops its promised heart-beats', async () => {
        const s = await runStompPeer({ ...base(), heartbeats: [1000, 0], go_silent: true, hold_seconds: 6 }).done;
        expect(s.connected!['heart-beat']).toBe('0,1000');
        expect(s.dropped).toBe(true);
        await t.daemon().waitForLog((l) => l.msg === 'STOMP peer silent past its heart-beat, closing');
      });

      it('answers DISCONNECT with its receipt', async () => {
        const s = await runStompPeer({ ...base(), disconnect_receipt: 'bye-1' }).done;
        expect(s.receipts).toContain('bye-1');
      });

      it("sends VDSM's ERROR frames and keeps the connection for the client's misuses", async () => {
        const s = await runStompPeer({
          ...base(),
          subscriptions: [
            { destination: RESP, id: 'responses-sub' },
            { destination: RESP, id: 'responses-sub' },
            { destination: EVENTS, id: '' },
          ],
          sends: [{ destination: 'jms.topic.nobody', body: 'hello' }],
          requests: [{ reply_to: RESP, body: rpc('still', 'Host.ping2') }],
          expect_errors: 3,
          expect_responses: 1,
        }).done;
        expect(s.errors.map((e) => e.body).sort()).toEqual(
          [
            'Missing destination or subscription id header',
            'Subscription id already exists',
            'Subscription not available',
          ].sort(),
        );
        expect(bodiesTo(s, RESP)).toEqual([{ jsonrpc: '2.0', id: 'still', result: true }]);
      });
    });
  }

  it('refuses a STOMP client whose certificate the engine CA did not sign', async () => {
    const run = runStompPeer({
      host: '127.0.0.1',
      port: port(secure),
      tls: { cert: pki!.otherCaClient.cert, key: pki!.otherCaClient.key, ca: pki!.ca.cert },
      timeout: 3,
    });
    await expect(run.done).rejects.toThrow(/without a summary/);
    await secure.waitForLog(
      (l) => l.msg === 'TLS handshake refused' && String(l.reason).includes('client certificate refused'),
    );
  });

  it('closes a TLS connection without a client certificate before it can speak STOMP', async () => {
    const socket = tls.connect({ host: '127.0.0.1', port: port(secure), ca: readFileSync(pki!.ca.cert) });
    socket.on('error', () => {});
    let received = '';
    socket.on('data', (d: Buffer) => (received += d.toString()));
    socket.on('secureConnect', () => socket.write('CONNECT\naccept-version:1.2\n\n\0'));
    await new Promise((resolve) => socket.on('close', resolve));
    expect(received).toBe('');
    await secure.waitForLog((l) => l.msg === 'TLS handshake refused' && l.reason === 'no client certificate given');
  });

  it('serves 100 concurrent STOMP clients beside WebSocket clients on the same port', async () => {
    const ws = await Promise.all(Array.from({ length: 20 }, () => RpcClient.connect(plain.url)));
    const peers = runStompPeer({
      clients: 100,
      host: '127.0.0.1',
      port: port(plain),
      subscriptions: [{ destination: RESP, id: 'r{i}' }],
      requests: [
        { reply_to: RESP, body: rpc('ping-{i}', 'Host.ping2') },
        { reply_to: RESP, body: rpc('all-{i}', 'Host.getAllVmStats') },
      ],
      expect_responses: 2,
      timeout: 60,
    });
    const wsResults = await Promise.all(ws.flatMap((c) => [c.call('Host.ping2'), c.call('Host.getAllVmStats')]));
    const { clients } = await peers.done;
    expect(clients).toHaveLength(100);
    clients!.forEach((s, i) => {
      const replies = bodiesTo(s!, RESP) as { id: string; result: unknown }[];
      // Each client gets its own two answers and nobody else's.
      expect(replies.map((r) => r.id).sort()).toEqual([`all-${i}`, `ping-${i}`]);
      expect(replies.find((r) => r.id === `ping-${i}`)!.result).toBe(true);
      expect(s!.messages.every((m) => m.headers.subscription === `r${i}`)).toBe(true);
    });
    expect(wsResults.filter((r) => r === true)).toHaveLength(20);
    for (const c of ws) await c.close();
  }, 120_000);
});
