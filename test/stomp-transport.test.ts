// The engine's client reads one frame per socket read, so the STOMP socket transport must hand
// the kernel one whole frame per write, and start the next only when the previous one is out.
// Checked on a real TCP socket pair by watching the server side's writes.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SocketTransport } from '../src/stomp/transport.js';
import { encodeFrame } from '../src/stomp/frame.js';

describe('SocketTransport', () => {
  let server: net.Server;
  let serverSide: net.Socket;
  let client: net.Socket;

  beforeAll(async () => {
    server = net.createServer();
    const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    serverSide = await accepted;
  });
  afterAll(() => {
    client?.destroy();
    serverSide?.destroy();
    server?.close();
  });

  it('writes each frame whole, one write at a time, nothing after its NUL', async () => {
    const writes: { data: string; whilePending: boolean }[] = [];
    let pending = 0;
    const realWrite = serverSide.write.bind(serverSide) as (data: Buffer, cb: (err?: Error | null) => void) => boolean;
    (serverSide as unknown as { write: unknown }).write = (data: Buffer, cb: (err?: Error | null) => void): boolean => {
      writes.push({ data: data.toString(), whilePending: pending > 0 });
      pending++;
      return realWrite(data, (err) => {
        pending--;
        cb(err);
      });
    };
    const t = new SocketTransport(serverSide, 'test');
    const frames = [1, 2, 3].map((i) =>
      encodeFrame({ command: 'MESSAGE', headers: [['destination', 'd']], body: `{"id":${i}}` }),
    );
    for (const f of frames) t.write(f);
    t.write(Buffer.from('\n'));
    let received = '';
    client.on('data', (d: Buffer) => (received += d.toString()));
    await new Promise<void>((resolve) => {
      const check = (): void => (received.endsWith('\0\n') ? resolve() : void setTimeout(check, 5));
      check();
    });
    expect(writes.map((w) => w.data)).toEqual([...frames.map((f) => f.toString()), '\n']);
    expect(writes.every((w) => !w.whilePending)).toBe(true);
    expect(writes.slice(0, 3).every((w) => w.data.endsWith('\0'))).toBe(true);
  });
});
