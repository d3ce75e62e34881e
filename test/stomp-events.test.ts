// Events over STOMP: the daemon's one event hub fans out to STOMP subscribers of
// jms.queue.events (raw port and v12.stomp) beside WebSocket subscribers. The daemon runs in
// this process so the test can publish on its hub directly; clients connect over real sockets.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { Daemon } from '../src/daemon.js';
import { RpcClient } from '../src/client/rpcClient.js';
import { missingPythonStomp, runStompPeer } from './helpers/stompPeer.js';
import { frame, RawStomp } from './helpers/rawStomp.js';
import { STOMP_EVENTS, STOMP_RESPONSES, WsStompPeer } from './helpers/stompOverWs.js';

const noPython = missingPythonStomp();
const VM = '8a3e0e8c-52a4-4d3e-9a62-2f6d3d8d1b11';
const status = (guestIPs: string): Record<string, unknown> => ({ [VM]: { status: 'Up', guestIPs }, notify_time: 1234 });

describe.skipIf(noPython)('STOMP events', () => {
  let daemon: Daemon;
  let url: string;
  let port: number;
  let channels: string;

  beforeAll(async () => {
    channels = mkdtempSync(path.join(tmpdir(), 'vdsm-agentd-stompev-'));
    const config = loadConfig(
      ['--listen', '127.0.0.1:0', '--channels-dir', channels, '--max-subscriber-buffer-bytes', '65536'],
      {},
    );
    daemon = new Daemon(config, pino({ level: 'silent' }));
    url = await daemon.start();
    port = Number(new URL(url).port);
  });
  afterAll(async () => {
    await daemon?.stop();
    rmSync(channels, { recursive: true, force: true });
  });

  it('delivers each event once to python3-stomp, stompjs and WebSocket subscribers alike', async () => {
    const py = runStompPeer({
      host: '127.0.0.1',
      port,
      subscriptions: [{ destination: STOMP_EVENTS, id: 'ev' }],
      expect_events: 2,
    });
    const js = await WsStompPeer.connect(url);
    js.subscribe(STOMP_EVENTS);
    js.subscribe(STOMP_RESPONSES);
    await js.call('Host.ping2'); // the SUBSCRIBEs before it are in place
    const ws = await RpcClient.connect(url);
    await ws.call('Host.subscribeEvents');
    await py.ready;

    daemon.hub.publish(`|virt|VM_status|${VM}`, status('192.0.2.1'));
    daemon.hub.publish(`|virt|VM_status|${VM}`, status('192.0.2.2'));

    const s = await py.done;
    const events = s.messages.filter((m) => m.headers.destination === STOMP_EVENTS);
    expect(events.map((m) => JSON.parse(m.body))).toEqual([
      { jsonrpc: '2.0', method: `|virt|VM_status|${VM}`, params: status('192.0.2.1') },
      { jsonrpc: '2.0', method: `|virt|VM_status|${VM}`, params: status('192.0.2.2') },
    ]);
    expect(events[0]!.headers).toMatchObject({ subscription: 'ev', 'content-type': 'application/json' });
    const jsEvents = await js.waitFor(() => {
      const got = js.messages.filter((m) => m.headers.destination === STOMP_EVENTS);
      return got.length >= 2 ? got : undefined;
    });
    expect(jsEvents.map((m) => JSON.parse(m.body).params[VM].guestIPs)).toEqual(['192.0.2.1', '192.0.2.2']);
    await new Promise((r) => setTimeout(r, 100));
    expect(ws.notifications.map((n) => (n.params as Record<string, { guestIPs: string }>)[VM]!.guestIPs)).toEqual([
      '192.0.2.1',
      '192.0.2.2',
    ]);
    await js.close();
    await ws.close();
  });

  it('writes an event on the wire as one MESSAGE frame to the jms.queue.events subscription', async () => {
    const c = await RawStomp.connect(port);
    c.write(frame('SUBSCRIBE', { destination: STOMP_EVENTS, id: 'events-1', receipt: 'sub' }));
    await c.nextFrames(1);
    daemon.hub.publish(`|virt|VM_status|${VM}`, status('192.0.2.9'));
    const [, event] = await c.nextFrames(2);
    const body = JSON.stringify({ jsonrpc: '2.0', method: `|virt|VM_status|${VM}`, params: status('192.0.2.9') });
    const id = /\nmessage-id:([^\n]+)\n/.exec(event!)![1];
    expect(event).toBe(
      `MESSAGE\ndestination:${STOMP_EVENTS}\ncontent-type:application/json\nsubscription:events-1\nmessage-id:${id}\ncontent-length:${body.length}\n\n${body}`,
    );
    c.close();
  });

  it('narrows events with Host.subscribeEvents prefixes and stops them on UNSUBSCRIBE', async () => {
    const c = await RawStomp.connect(port);
    const send = (id: string, method: string, params?: unknown): void =>
      c.write(
        frame(
          'SEND',
          { destination: 'jms.topic.vdsm_requests', 'reply-to': STOMP_RESPONSES },
          JSON.stringify({ jsonrpc: '2.0', id, method, params }),
        ),
      );
    c.write(
      frame('SUBSCRIBE', { destination: STOMP_EVENTS, id: 'ev' }) +
        frame('SUBSCRIBE', { destination: STOMP_RESPONSES, id: 'rs' }),
    );
    send('1', 'Host.subscribeEvents', { prefixes: ['|virt|'] });
    await c.nextFrames(1);
    daemon.hub.publish('|net|host_conn|x', { notify_time: 1 });
    daemon.hub.publish(`|virt|VM_status|${VM}`, status('192.0.2.3'));
    const got = await c.nextFrames(2);
    expect(got[1]).toContain('|virt|VM_status|');
    c.write(frame('UNSUBSCRIBE', { id: 'ev' }));
    send('2', 'Host.ping2');
    await c.nextFrames(3);
    daemon.hub.publish(`|virt|VM_status|${VM}`, status('192.0.2.4'));
    send('3', 'Host.ping2');
    const after = await c.nextFrames(4);
    expect(after[3]).toContain('"id":"3"');
    expect(c.text()).not.toContain('192.0.2.4');
    c.close();
  });

  it('drops a STOMP event subscriber that stops reading, and nobody else waits for it', async () => {
    const slow = await RawStomp.connect(port);
    slow.write(frame('SUBSCRIBE', { destination: STOMP_EVENTS, id: 'ev', receipt: 'r' }));
    await slow.nextFrames(1);
    slow.socket.pause(); // reads nothing more: the kernel buffers fill, then ours
    const fast = await RpcClient.connect(url);
    const before = daemon.hub.subscriberCount();
    const big = 'x'.repeat(32 * 1024);
    for (let i = 0; i < 2000 && !slow.isClosed; i++) {
      daemon.hub.publish(`|virt|VM_status|${VM}`, { [VM]: { status: 'Up', guestName: big }, notify_time: i });
      await new Promise((r) => setImmediate(r));
    }
    slow.socket.resume();
    await slow.closed;
    expect(daemon.hub.subscriberCount()).toBe(before - 1);
    expect(await fast.call('Host.ping2')).toBe(true);
    await fast.close();
  });
});
