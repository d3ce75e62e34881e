// STOMP over WebSocket: a client asking for the subprotocol v12.stomp speaks the same STOMP
// session as on the raw port, one frame per WebSocket message; checked with @stomp/stompjs
// (the browsers' STOMP client) over ws:// and mutual-TLS wss://, and byte for byte with ws.
import { randomUUID } from 'node:crypto';
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RpcClient } from '../src/client/rpcClient.js';
import type { RunningDaemon } from './helpers/daemon.js';
import { missing } from './helpers/prereq.js';
import { makePki } from './helpers/throwawayPki.js';
import { startDaemonWithGuest } from './helpers/daemonWithGuest.js';
import { STOMP_EVENTS, STOMP_RESPONSES, WsStompPeer } from './helpers/stompOverWs.js';
import type { ScriptedGuest } from './helpers/scriptedGuest.js';
import { frame } from './helpers/rawStomp.js';

const noOpenssl = missing({ commands: ['openssl'] });
const IFACES = [{ name: 'eth0', hw: '52:54:00:12:34:56', inet: ['198.51.100.7'], inet6: [] }];

/** A ws client on v12.stomp that keeps every message as it came. */
async function rawStompWs(
  url: string,
): Promise<{ ws: WebSocket; messages: string[]; next: (n: number) => Promise<string[]> }> {
  const ws = new WebSocket(url, ['v12.stomp']);
  const messages: string[] = [];
  const waiters: (() => void)[] = [];
  ws.on('message', (data, isBinary) => {
    expect(isBinary).toBe(false);
    messages.push((data as Buffer).toString()); // binaryType nodebuffer
    for (const w of waiters.splice(0)) w();
  });
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  expect(ws.protocol).toBe('v12.stomp');
  const next = (n: number): Promise<string[]> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`only ${messages.length} messages: ${JSON.stringify(messages)}`)),
        5000,
      );
      const check = (): void => {
        if (messages.length >= n) {
          clearTimeout(timer);
          resolve(messages.slice(0, n));
        } else waiters.push(check);
      };
      check();
    });
  return { ws, messages, next };
}

describe.skipIf(noOpenssl)('STOMP over WebSocket (v12.stomp)', () => {
  const pki = noOpenssl ? null : makePki();
  const vmId = randomUUID();
  let plain: RunningDaemon;
  let secure: RunningDaemon;
  let plainGuest: ScriptedGuest;

  beforeAll(async () => {
    const guest = { hostName: 'ws-guest', interfaces: IFACES };
    const tls = ['--tls-cert', pki!.server.cert, '--tls-key', pki!.server.key, '--tls-ca', pki!.ca.cert];
    ({ daemon: plain, guest: plainGuest } = await startDaemonWithGuest(vmId, guest));
    secure = (
      await startDaemonWithGuest(vmId, guest, tls, { cert: pki!.client.cert, key: pki!.client.key, ca: pki!.ca.cert })
    ).daemon;
  });
  afterAll(async () => {
    await plain?.stop();
    await secure?.stop();
  });

  const transports = [
    { name: 'ws://', daemon: () => plain, tls: () => undefined },
    {
      name: 'wss:// with mutual TLS',
      daemon: () => secure,
      tls: () => ({ cert: pki!.client.cert, key: pki!.client.key, ca: pki!.ca.cert }),
    },
  ];
  for (const t of transports) {
    it(`stompjs over ${t.name}: CONNECTED, Host.ping2, Host.getAllVmStats, VM.getStats errors, VDSM's ERROR`, async () => {
      const peer = await WsStompPeer.connect(t.daemon().url, { tls: t.tls(), heartbeatMs: 1000 });
      expect(peer.connected!.headers).toMatchObject({ version: '1.2', 'heart-beat': '1000,1000' });
      peer.subscribe(STOMP_RESPONSES);
      expect(await peer.call('Host.ping2')).toMatchObject({ result: true });
      const all = (await peer.call('Host.getAllVmStats')) as { result: { vmId: string; netIfaces: unknown }[] };
      expect(all.result.find((v) => v.vmId === vmId)?.netIfaces).toEqual(IFACES);
      const nx = await peer.call('VM.getStats', { vmID: randomUUID() });
      expect(nx.error?.code).toBe(1);
      peer.client.publish({ destination: 'jms.topic.nobody', body: 'x' });
      const err = await peer.waitFor(() => peer.errors[0]);
      expect(err.body).toBe('Subscription not available');
      // Heart-beats both ways keep the session through a quiet spell.
      await new Promise((r) => setTimeout(r, 2500));
      expect(await peer.call('ping')).toMatchObject({ result: true });
      await peer.close();
    });
  }

  it('delivers the VM_status event of a guest that changed its interfaces to jms.queue.events', async () => {
    const peer = await WsStompPeer.connect(plain.url);
    peer.subscribe(STOMP_EVENTS);
    peer.subscribe(STOMP_RESPONSES);
    await peer.call('Host.ping2'); // both subscriptions are in place
    const changed = [{ name: 'eth9', hw: '52:54:00:00:00:09', inet: ['198.51.100.9'], inet6: [] }];
    await plainGuest.send('network-interfaces', { interfaces: changed });
    const event = await peer.waitFor(() => peer.messages.find((m) => m.headers.destination === STOMP_EVENTS));
    expect(JSON.parse(event.body)).toMatchObject({
      jsonrpc: '2.0',
      method: `|virt|VM_status|${vmId}`,
      params: { [vmId]: { netIfaces: changed, guestIPs: '198.51.100.9' } },
    });
    await peer.close();
  });

  it('carries exactly one STOMP frame per WebSocket text message, heart-beats as "\\n" messages', async () => {
    const { ws, messages, next } = await rawStompWs(plain.url);
    ws.send(frame('SUBSCRIBE', { destination: STOMP_RESPONSES, id: 'r' }));
    ws.send('CONNECT\naccept-version:1.2\nheart-beat:0,1000\n\n\0');
    ws.send(
      frame(
        'SEND',
        { destination: 'jms.topic.vdsm_requests', 'reply-to': STOMP_RESPONSES },
        '{"jsonrpc":"2.0","id":7,"method":"Host.ping2"}',
      ),
    );
    const [connected, message] = await next(2);
    expect(connected).toBe('CONNECTED\nversion:1.2\nheart-beat:1000,0\n\n\0');
    const body = '{"jsonrpc":"2.0","id":7,"result":true}';
    const id = /\nmessage-id:([^\n]+)\n/.exec(message!)![1];
    expect(message).toBe(
      `MESSAGE\ndestination:${STOMP_RESPONSES}\ncontent-type:application/json\nsubscription:r\nmessage-id:${id}\ncontent-length:${body.length}\n\n${body}\0`,
    );
    await next(3);
    expect(messages[2]).toBe('\n');
    ws.terminate();
  });

  it('leaves JSON-RPC over WebSocket as it was for clients that do not ask for v12.stomp', async () => {
    const c = await RpcClient.connect(plain.url);
    expect(await c.call('Host.ping2')).toBe(true);
    await c.close();
    const ws = new WebSocket(plain.url, ['something-else', 'v12.stomp']);
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    expect(ws.protocol).toBe('v12.stomp');
    ws.terminate();
  });

  it('refuses a wss:// STOMP client whose certificate the CA did not sign', async () => {
    await expect(
      WsStompPeer.connect(secure.url, {
        tls: { cert: pki!.otherCaClient.cert, key: pki!.otherCaClient.key, ca: pki!.ca.cert },
      }),
    ).rejects.toThrow();
  });
});
