// The daemon as a whole stays bounded when many event subscribers stop reading: each is cut off
// (close 1008, one warning naming it) once it has not read its events within
// --subscriber-drain-timeout, the daemon's memory comes back down, and the clients that do read
// keep getting events and answers throughout. Speed and peak figures are the bench's
// (`npm run bench -- subscribers`); this asserts the behaviour.
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { RpcClient } from '../src/client/rpcClient.js';
import { GuestSimulator } from '../src/sim/simulator.js';
import { generateGuests } from '../src/sim/guest.js';
import { tempDir } from './helpers/channelsDir.js';
import { startDaemon, type RunningDaemon } from './helpers/daemon.js';
import { atFileEnd } from './helpers/fileCleanup.js';
import { withTimeout } from './helpers/scriptedGuest.js';

const SLOW = 60;
const rssMiB = (pid: number): number =>
  Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024;

interface Stalled {
  ws: WebSocket;
  socket: Socket;
  port: number;
  closed: Promise<number>;
}

/** Subscribes, then stops reading: its socket is paused, so the daemon's writes pile up unread. */
async function stalledSubscriber(url: string): Promise<Stalled> {
  const ws = new WebSocket(url);
  ws.on('error', () => {});
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => ws.once('open', resolve).once('error', reject));
  ws.send(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'Host.subscribeEvents' }));
  await new Promise<void>((resolve) => ws.once('message', () => resolve()));
  const socket = (ws as unknown as { _socket: Socket })._socket;
  socket.pause();
  return { ws, socket, port: socket.localPort ?? 0, closed };
}

describe('many event subscribers that stop reading', () => {
  let sim: GuestSimulator;
  let d: RunningDaemon;
  const stalled: Stalled[] = [];
  atFileEnd(() => {
    for (const s of stalled) s.ws.terminate();
  });

  beforeAll(async () => {
    const dir = tempDir('vat-slow-');
    sim = new GuestSimulator({ dir, heartbeatMs: 5000 });
    // Every guest changes an address every second: a steady stream of events for everyone, small
    // enough that what a stalled subscriber misses in 2 s fits the kernel's socket buffers.
    await sim.addAll(generateGuests(10, { qemuShare: 0, changingShare: 1, changeEveryMs: 1000, idPrefix: '510e0000' }));
    d = await startDaemon(['--listen', '127.0.0.1:0', '--channels-dir', dir, '--subscriber-drain-timeout', '2']);
  });

  afterAll(async () => {
    await d.stop();
    await sim.close();
  });

  it('are each cut off with close 1008 and a warning naming them; readers and callers are served throughout', async () => {
    const reader = await RpcClient.connect(d.url);
    await reader.call('Host.subscribeEvents');
    const caller = await RpcClient.connect(d.url);
    const rssBefore = rssMiB(d.proc.pid!);

    for (let i = 0; i < SLOW; i += 20)
      stalled.push(...(await Promise.all(Array.from({ length: 20 }, () => stalledSubscriber(d.url)))));
    const ports = new Set(stalled.map((s) => `127.0.0.1:${s.port}`));

    // One warning per stalled subscriber, naming its address; no one else is cut off.
    const cut = new Set<string>();
    const unsentAtCut = new Map<number, number>();
    await withTimeout(
      Promise.all(
        stalled.map((s) =>
          d
            .waitForLog(
              (l) => l.msg === 'event subscriber too slow, disconnecting' && l.peer === `127.0.0.1:${s.port}`,
              120_000,
            )
            .then((l) => {
              expect(l.code).toBe(1008);
              expect(l.level).toBe('warn'); // warn: shown at the default log level
              cut.add(String(l.peer));
              unsentAtCut.set(s.port, Number(l.buffered));
            }),
        ),
      ),
      130_000,
      `stalled subscribers cut off (${cut.size}/${SLOW} so far)`,
    );
    const cutLines = d.logs().filter((l) => l.msg === 'event subscriber too slow, disconnecting');
    expect(cutLines.every((l) => ports.has(String(l.peer)))).toBe(true);
    expect(cutLines).toHaveLength(SLOW);

    // Read again: each finds its connection closed. Where all its events had reached the kernel
    // when it was cut (nothing unsent in the daemon), the close frame followed them: 1008. The
    // others' close frame sat behind unsent bytes that were dropped with the connection.
    for (const s of stalled) s.socket.resume();
    const codes = await withTimeout(
      Promise.all(stalled.map((s) => s.closed)),
      30_000,
      'stalled clients see their connection closed',
    );
    stalled.forEach((s, i) =>
      expect([unsentAtCut.get(s.port), codes[i]]).toEqual([
        unsentAtCut.get(s.port),
        unsentAtCut.get(s.port) === 0 ? 1008 : codes[i] === 1008 ? 1008 : 1006,
      ]),
    );
    expect(codes.filter((c) => c === 1008).length).toBeGreaterThan(0);

    // The reader is still subscribed and still gets events; calls are answered.
    const seen = reader.notifications.length;
    await withTimeout(
      (async () => {
        while (reader.notifications.length <= seen) await new Promise((r) => setTimeout(r, 50));
      })(),
      30_000,
      'an event for the reader after the cut-offs',
    );
    expect(await caller.call('Host.ping2')).toBe(true);
    expect(await reader.call('Host.ping2')).toBe(true);
    expect(reader.closed).toBeNull();

    // Memory back near where it was: loosely, nothing of the stalled subscribers' backlog stays.
    const rssAfter = rssMiB(d.proc.pid!);
    console.log(
      `daemon RSS ${rssBefore.toFixed(0)} MiB before the stalled subscribers, ${rssAfter.toFixed(0)} MiB after their cut-off`,
    );
    expect(rssAfter).toBeLessThan(rssBefore + 64);
    await Promise.all([reader.close(), caller.close()]);
  }, 240_000);
});
