// The flooding client of bench/pipeline.bench.ts, in a process of its own so its client-side
// work does not delay the other connection's calls: `node --import tsx bench/pipelineFlood.ts
// TRANSPORT URL N` writes N Host.ping2 requests back to back, checks every answer (id and
// result) and prints the figures as one JSON line.
import net from 'node:net';
import { WebSocket } from 'ws';

const [transport, url, count] = process.argv.slice(2);
const N = Number(count);
const REQ = 'jms.topic.vdsm_requests';
const RESP = 'jms.topic.vdsm_responses';
const ping = (id: number): string => `{"jsonrpc":"2.0","id":${id},"method":"Host.ping2"}`;

export interface Flood {
  seconds: number;
  answered: number;
  wrong: number;
}

/** Checks one reply body: `{"jsonrpc":"2.0","id":<id>,"result":true}`, each id once. */
function checker(): { check: (body: string) => void; answered: () => number; wrong: () => number } {
  const seen = new Uint8Array(N);
  let answered = 0;
  let wrong = 0;
  return {
    check: (body) => {
      const m = /^\{"jsonrpc":"2\.0","id":(\d+),"result":true\}$/.exec(body);
      const id = m ? Number(m[1]) : -1;
      if (id < 0 || id >= N || seen[id]) wrong++;
      else {
        seen[id] = 1;
        answered++;
      }
    },
    answered: () => answered,
    wrong: () => wrong,
  };
}

async function floodWebSocket(url: string): Promise<Flood> {
  const ws = new WebSocket(url);
  await new Promise((resolve, reject) => (ws.once('open', resolve), ws.once('error', reject)));
  const c = checker();
  const t0 = performance.now();
  const done = new Promise<void>((resolve) =>
    ws.on('message', (data: Buffer) => {
      c.check(data.toString());
      if (c.answered() + c.wrong() === N) resolve();
    }),
  );
  for (let i = 0; i < N; i++) ws.send(ping(i));
  await done;
  const seconds = (performance.now() - t0) / 1000;
  ws.close();
  return { seconds, answered: c.answered(), wrong: c.wrong() };
}

async function floodStomp(url: string): Promise<Flood> {
  const socket = net.connect(Number(new URL(url).port), '127.0.0.1');
  await new Promise((resolve, reject) => (socket.once('connect', resolve), socket.once('error', reject)));
  const c = checker();
  let frames = 0;
  let rest = '';
  const done = new Promise<void>((resolve) =>
    socket.on('data', (d: Buffer) => {
      const parts = (rest + d.toString()).split('\0');
      rest = parts.pop()!;
      for (const f of parts) {
        if (frames++ === 0) continue; // CONNECTED
        c.check(f.slice(f.indexOf('\n\n') + 2));
      }
      if (c.answered() + c.wrong() === N) resolve();
    }),
  );
  socket.write(`CONNECT\naccept-version:1.2\n\n\0SUBSCRIBE\ndestination:${RESP}\nid:r\n\n\0`);
  const t0 = performance.now();
  const sends: string[] = [];
  for (let i = 0; i < N; i++) {
    const body = ping(i);
    sends.push(`SEND\ndestination:${REQ}\nreply-to:${RESP}\ncontent-length:${body.length}\n\n${body}\0`);
    if (sends.length === 1000) socket.write(sends.splice(0).join(''));
  }
  socket.write(sends.join(''));
  await done;
  const seconds = (performance.now() - t0) / 1000;
  socket.destroy();
  return { seconds, answered: c.answered(), wrong: c.wrong() };
}

const f = await (transport === 'WebSocket' ? floodWebSocket(url!) : floodStomp(url!));
process.stdout.write(JSON.stringify(f) + '\n');
