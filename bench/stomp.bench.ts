// STOMP beside WebSocket on the same daemon: Host.ping2 round trips over one connection each
// (sequential and 32 in flight), and the frame parser fed in large and tiny chunks against the
// obvious alternative (append every chunk to one buffer and search it again, as VDSM does).
import net from 'node:net';
import { RpcClient } from '../src/client/rpcClient.js';
import { encodeFrame, FrameParser } from '../src/stomp/frame.js';
import { startDaemon } from './daemonProcess.js';

class BenchStompClient {
  private readonly parser = new FrameParser({ maxFrameBytes: 1 << 20 });
  private readonly pending = new Map<string, () => void>();
  private nextId = 1;

  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      for (const item of this.parser.push(chunk)) {
        if (item.kind !== 'frame' || item.frame.command !== 'MESSAGE') continue;
        const id = (JSON.parse(item.frame.body.toString()) as { id: string }).id;
        this.pending.get(id)?.();
        this.pending.delete(id);
      }
    });
  }

  static async connect(port: number): Promise<BenchStompClient> {
    const socket = net.connect(port, '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.setNoDelay(true);
    socket.write(
      encodeFrame({
        command: 'SUBSCRIBE',
        headers: [
          ['destination', 'jms.topic.vdsm_responses'],
          ['id', 'r'],
        ],
      }),
    );
    return new BenchStompClient(socket);
  }

  call(method: string): Promise<void> {
    const id = String(this.nextId++);
    const body = JSON.stringify({ jsonrpc: '2.0', id, method });
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.socket.write(
        encodeFrame({
          command: 'SEND',
          headers: [
            ['destination', 'jms.topic.vdsm_requests'],
            ['reply-to', 'jms.topic.vdsm_responses'],
          ],
          body,
        }),
      );
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

async function rates(call: () => Promise<unknown>, n: number): Promise<{ seq: number; par: number }> {
  for (let i = 0; i < 500; i++) await call(); // warm-up
  let t0 = performance.now();
  for (let i = 0; i < n; i++) await call();
  const seq = n / ((performance.now() - t0) / 1000);
  t0 = performance.now();
  for (let i = 0; i < n / 32; i++) await Promise.all(Array.from({ length: 32 }, call));
  const par = n / ((performance.now() - t0) / 1000);
  return { seq: Math.round(seq), par: Math.round(par) };
}

/** The alternative: keep one growing buffer, re-search it from the start after every chunk. */
function naiveParse(chunks: Buffer[]): number {
  let buf = Buffer.alloc(0);
  let frames = 0;
  for (const c of chunks) {
    buf = Buffer.concat([buf, c]);
    for (;;) {
      const headEnd = buf.indexOf('\n\n');
      if (headEnd === -1) break;
      const m = /content-length:(\d+)/.exec(buf.subarray(0, headEnd).toString());
      const len = m ? Number(m[1]) : buf.indexOf(0, headEnd + 2) - headEnd - 2;
      if (len < 0 || buf.length < headEnd + 2 + len + 1) break;
      frames++;
      buf = buf.subarray(headEnd + 2 + len + 1);
    }
  }
  return frames;
}

function chunked(data: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < data.length; i += size) out.push(data.subarray(i, i + size));
  return out;
}

function timeParse(label: string, chunks: Buffer[], frames: number, bytes: number): Record<string, string | number>[] {
  const ours = (): number => {
    const p = new FrameParser({ maxFrameBytes: 1 << 22 });
    let n = 0;
    for (const c of chunks) for (const i of p.push(c)) if (i.kind === 'frame') n++;
    return n;
  };
  const rows: Record<string, string | number>[] = [];
  for (const [name, fn] of [
    ['FrameParser', ours],
    ['append+rescan', () => naiveParse(chunks)],
  ] as const) {
    if (fn() !== frames) throw new Error(`${name} miscounted frames`);
    const t0 = performance.now();
    const reps = 3;
    for (let r = 0; r < reps; r++) fn();
    const s = (performance.now() - t0) / 1000 / reps;
    rows.push({ what: `${name}, ${label}`, 'MB/s': (bytes / s / 1e6).toFixed(1) });
  }
  return rows;
}

export async function run(): Promise<void> {
  const d = await startDaemon(['--listen', '127.0.0.1:0', '--channels-dir', '/nonexistent-vdsm-agentd']);
  try {
    const port = Number(new URL(d.url).port);
    const stomp = await BenchStompClient.connect(port);
    const ws = await RpcClient.connect(d.url);
    const n = 4000;
    const s = await rates(() => stomp.call('Host.ping2'), n);
    const w = await rates(() => ws.call('Host.ping2'), n);
    console.table([
      { what: 'Host.ping2 over STOMP', 'sequential calls/s': s.seq, '32 in flight calls/s': s.par },
      { what: 'Host.ping2 over WebSocket', 'sequential calls/s': w.seq, '32 in flight calls/s': w.par },
    ]);
    console.log(
      `ratio STOMP/WebSocket: sequential ${(s.seq / w.seq).toFixed(2)}x, 32 in flight ${(s.par / w.par).toFixed(2)}x`,
    );
    stomp.close();
    await ws.close();
  } finally {
    await d.stop();
  }

  const body = JSON.stringify({
    jsonrpc: '2.0',
    id: 1,
    result: [{ vmId: 'x', netIfaces: [], guestIPs: '192.0.2.1'.repeat(20) }],
  });
  const one = encodeFrame({
    command: 'MESSAGE',
    headers: [
      ['destination', 'jms.topic.vdsm_responses'],
      ['subscription', 's'],
    ],
    body,
  });
  const many = Buffer.concat(Array.from({ length: 2000 }, () => one));
  const big = encodeFrame({ command: 'MESSAGE', headers: [['destination', 'd']], body: 'x'.repeat(1 << 20) });
  console.table([
    ...timeParse('2000 small frames in 64 KiB chunks', chunked(many, 65536), 2000, many.length),
    ...timeParse('2000 small frames in 16-byte chunks', chunked(many, 16), 2000, many.length),
    ...timeParse('one 1 MiB frame in 1 KiB chunks', chunked(big, 1024), 1, big.length),
  ]);
}
