// The pure STOMP pieces: frame parser and writer, protocol detection, heart-beat and version
// negotiation. The parser is fuzzed: any chunking of any bytes parses the same as the whole,
// it never throws, and every failure has one of the stable codes.
import { describe, expect, it } from 'vitest';
import { encodeFrame, escapeHeader, FrameParser, unescapeHeader, type ParsedItem } from '../src/stomp/frame.js';
import { detectProtocol } from '../src/transport/detect.js';
import { isRequestDestination, negotiateHeartBeat, offersVersion12 } from '../src/stomp/session.js';
import { rng } from './helpers/seededRandom.js';

const LIMIT = 1024;
const CODES = ['frame-too-large', 'bad-content-length', 'missing-nul', 'bad-header', 'bad-escape'];

function parse(chunks: (string | Buffer)[], maxFrameBytes = LIMIT): ParsedItem[] {
  const p = new FrameParser({ maxFrameBytes });
  return chunks.flatMap((c) => p.push(typeof c === 'string' ? Buffer.from(c, 'utf8') : c));
}

/** Items in a comparable shape (headers as arrays, bodies as text). */
function plain(items: ParsedItem[]): unknown[] {
  return items.map((i) =>
    i.kind === 'frame'
      ? { kind: i.kind, command: i.frame.command, headers: [...i.frame.headers], body: i.frame.body.toString('latin1') }
      : i,
  );
}

function frames(items: ParsedItem[]): { command: string; headers: Record<string, string>; body: string }[] {
  return items.flatMap((i) =>
    i.kind === 'frame'
      ? [
          {
            command: i.frame.command,
            headers: Object.fromEntries(i.frame.headers),
            body: i.frame.body.toString('utf8'),
          },
        ]
      : [],
  );
}

function randomChunks(buf: Buffer, rand: () => number): Buffer[] {
  const out: Buffer[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const n = 1 + Math.floor(rand() * (rand() < 0.5 ? 4 : 64));
    out.push(buf.subarray(pos, pos + n));
    pos += n;
  }
  return out;
}

describe('FrameParser', () => {
  it('parses the frames the oVirt engine sends', () => {
    const items = parse([
      'CONNECT\naccept-version:1.2\nheart-beat:0,15000\nhost:null\n\n\0',
      'SUBSCRIBE\ndestination:jms.queue.events\nack:auto\nid:5c1f\n\n\0',
      'SEND\ndestination:jms.topic.vdsm_requests\nreply-to:jms.topic.vdsm_responses\ncontent-length:2\novirtCorrelationId:a:b\n\n{}\0',
    ]);
    expect(frames(items)).toEqual([
      { command: 'CONNECT', headers: { 'accept-version': '1.2', 'heart-beat': '0,15000', host: 'null' }, body: '' },
      { command: 'SUBSCRIBE', headers: { destination: 'jms.queue.events', ack: 'auto', id: '5c1f' }, body: '' },
      {
        command: 'SEND',
        // A ':' inside a value is kept (peers that never escape send them).
        headers: {
          destination: 'jms.topic.vdsm_requests',
          'reply-to': 'jms.topic.vdsm_responses',
          'content-length': '2',
          ovirtCorrelationId: 'a:b',
        },
        body: '{}',
      },
    ]);
  });

  it('counts content-length in bytes and lets such a body hold NUL bytes', () => {
    const body = 'é€\0x';
    const items = parse([`SEND\ncontent-length:${Buffer.byteLength(body)}\n\n${body}\0`]);
    expect(frames(items)[0]!.body).toBe(body);
  });

  it('without content-length, the body runs to the first NUL', () => {
    expect(frames(parse(['SEND\ndestination:d\n\nhello\0SEND\n\nworld\0']))).toEqual([
      { command: 'SEND', headers: { destination: 'd' }, body: 'hello' },
      { command: 'SEND', headers: {}, body: 'world' },
    ]);
  });

  it('accepts CRLF line ends and takes blank lines between frames as heart-beats', () => {
    const items = parse(['\n\r\n\nSEND\r\ndestination:d\r\n\r\nx\0\r\n']);
    expect(items.filter((i) => i.kind === 'heartbeat')).toHaveLength(4);
    expect(frames(items)).toEqual([{ command: 'SEND', headers: { destination: 'd' }, body: 'x' }]);
  });

  it('decodes header escapes, except in CONNECT frames', () => {
    expect(frames(parse(['SEND\ndest\\cination:a\\nb\\\\c\\rd\n\n\0']))[0]!.headers).toEqual({
      'dest:ination': 'a\nb\\c\rd',
    });
    expect(frames(parse(['CONNECT\nlogin:a\\nb\n\n\0']))[0]!.headers).toEqual({ login: 'a\\nb' });
  });

  it('keeps the first of repeated headers', () => {
    expect(frames(parse(['SEND\nfoo:1\nfoo:2\n\n\0']))[0]!.headers).toEqual({ foo: '1' });
  });

  const failures: [string, string, string][] = [
    ['an undefined escape', 'SEND\nfoo:a\\tb\n\n\0', 'bad-escape'],
    ['a header line without colon', 'SEND\nfoo\n\n\0', 'bad-header'],
    ['a content-length that is not a number', 'SEND\ncontent-length:-1\n\n\0', 'bad-content-length'],
    ['a body longer than its content-length', 'SEND\ncontent-length:1\n\nxy\0', 'missing-nul'],
  ];
  for (const [what, bytes, code] of failures) {
    it(`fails with ${code} on ${what}, then stays failed`, () => {
      const p = new FrameParser({ maxFrameBytes: LIMIT });
      const items = p.push(Buffer.from(bytes));
      expect(items.at(-1)).toMatchObject({ kind: 'error', code });
      expect(p.failed).toBe(true);
      expect(p.push(Buffer.from('SEND\n\n\0'))).toEqual([]);
    });
  }

  it('refuses an oversized frame the moment content-length is known, before any body byte', () => {
    const items = parse([`SEND\ncontent-length:${LIMIT}\n\n`]);
    expect(items).toEqual([expect.objectContaining({ kind: 'error', code: 'frame-too-large' })]);
  });

  it('refuses a body without content-length at the first byte past the limit', () => {
    const p = new FrameParser({ maxFrameBytes: LIMIT });
    const head = 'SEND\n\n'; // 6 bytes of the frame
    expect(p.push(Buffer.from(head + 'x'.repeat(LIMIT - head.length)))).toEqual([]);
    expect(p.push(Buffer.from('x'))).toEqual([expect.objectContaining({ kind: 'error', code: 'frame-too-large' })]);
  });

  it('refuses an endless header line at the first byte past the limit', () => {
    const p = new FrameParser({ maxFrameBytes: LIMIT });
    expect(p.push(Buffer.from('SEND\nh:' + 'x'.repeat(LIMIT - 7)))).toEqual([]);
    expect(p.push(Buffer.from('x'))).toEqual([expect.objectContaining({ kind: 'error', code: 'frame-too-large' })]);
  });

  it('accepts a frame of exactly the limit', () => {
    const head = 'SEND\ncontent-length:1000\n\n';
    const body = 'y'.repeat(LIMIT - head.length);
    const items = parse([head.replace('1000', String(body.length)) + body + '\0']);
    expect(frames(items)[0]!.body).toHaveLength(body.length);
  });

  it('parses the same at every split point and byte by byte', () => {
    const stream = Buffer.from(
      '\n' +
        'CONNECT\r\naccept-version:1.2\r\n\r\n\0' +
        '\r\nSEND\ndestination:a\\cb\ncontent-length:5\n\nab\0cd\0' +
        'SUBSCRIBE\nid:1\ndestination:x\n\n\0\n\n' +
        'SEND\n\nno length\0',
    );
    const whole = plain(parse([stream]));
    expect(whole.filter((i) => (i as { kind: string }).kind === 'frame')).toHaveLength(4);
    for (let cut = 1; cut < stream.length; cut++) {
      expect(plain(parse([stream.subarray(0, cut), stream.subarray(cut)]))).toEqual(whole);
    }
    expect(plain(parse([...stream].map((b) => Buffer.of(b))))).toEqual(whole);
  });

  it('fuzz: random bytes in random chunks never throw and parse as the whole does', () => {
    const alphabet = Buffer.from('SENDCONNECT:\\ncr\n\r\0content-length:12 \xff');
    for (let seed = 1; seed <= 500; seed++) {
      const rand = rng(seed);
      const len = Math.floor(rand() * 600);
      const buf = Buffer.alloc(len);
      for (let i = 0; i < len; i++)
        buf[i] = rand() < 0.7 ? alphabet[Math.floor(rand() * alphabet.length)]! : Math.floor(rand() * 256);
      const whole = parse([buf], 256);
      for (const i of whole) if (i.kind === 'error') expect(CODES).toContain(i.code);
      const errors = whole.filter((i) => i.kind === 'error');
      expect(errors.length).toBeLessThanOrEqual(1);
      expect(plain(parse(randomChunks(buf, rand), 256)), `seed ${seed}`).toEqual(plain(whole));
    }
  });

  it('fuzz: mutated engine frames in random chunks never throw, never pass the limit, parse as the whole does', () => {
    const seeds = [
      'CONNECT\naccept-version:1.2\nheart-beat:0,15000\nhost:null\n\n\0',
      'SUBSCRIBE\ndestination:jms.queue.events\nack:auto\nid:5c1f\n\n\0',
      'SEND\ndestination:jms.topic.vdsm_requests\nreply-to:jms.topic.vdsm_responses\ncontent-length:44\n\n{"jsonrpc":"2.0","id":"1","method":"ping"}\0',
      'SEND\r\ndestination:a\\cb\r\n\r\nbody\0\n',
    ].map((t) => Buffer.from(t));
    const special = [0x00, 0x0a, 0x0d, 0x3a, 0x5c, 0x63, 0x30, 0x39, 0xff];
    for (let iter = 0; iter < 3000; iter++) {
      const rand = rng(0x570a9 + iter);
      const bytes = [
        ...Buffer.concat(
          Array.from({ length: 1 + Math.floor(rand() * 3) }, () => seeds[Math.floor(rand() * seeds.length)]!),
        ),
      ];
      for (let m = 1 + Math.floor(rand() * 6); m > 0; m--) {
        const at = Math.floor(rand() * (bytes.length + 1));
        const op = Math.floor(rand() * 4);
        if (op === 0 && bytes.length) bytes[at % bytes.length] = special[Math.floor(rand() * special.length)]!;
        else if (op === 1) bytes.splice(at, 0, special[Math.floor(rand() * special.length)]!);
        else if (op === 2) bytes.splice(at, 1 + Math.floor(rand() * 4));
        else bytes.splice(at, 0, ...bytes.slice(at, at + Math.floor(rand() * 40)));
      }
      const buf = Buffer.from(bytes);
      const whole = parse([buf], 128);
      for (const i of whole) {
        if (i.kind === 'error') expect(CODES).toContain(i.code);
        if (i.kind === 'frame') expect(i.frame.body.length).toBeLessThanOrEqual(128);
      }
      expect(plain(parse(randomChunks(buf, rand), 128)), `iteration ${iter}`).toEqual(plain(whole));
    }
  });

  it('fuzz: random frames survive encode, random heart-beats and random chunking unchanged', () => {
    const chars = 'aZ09:\\\n\r -_.é€{}"';
    const text = (rand: () => number, max: number): string => {
      let s = '';
      const n = Math.floor(rand() * max);
      for (let i = 0; i < n; i++) s += chars[Math.floor(rand() * chars.length)]!;
      return s;
    };
    for (let seed = 1; seed <= 300; seed++) {
      const rand = rng(seed * 7919);
      const sent: { command: string; headers: [string, string][]; body: string }[] = [];
      const parts: Buffer[] = [];
      const count = 1 + Math.floor(rand() * 5);
      for (let f = 0; f < count; f++) {
        const command = ['SEND', 'SUBSCRIBE', 'MESSAGE', 'ERROR'][Math.floor(rand() * 4)]!;
        const headers: [string, string][] = [];
        const names = new Set<string>(['content-length']);
        const hn = Math.floor(rand() * 4);
        for (let h = 0; h < hn; h++) {
          const name = 'h' + text(rand, 6);
          if (names.has(name)) continue;
          names.add(name);
          headers.push([name, text(rand, 20)]);
        }
        const body = text(rand, 80) + (rand() < 0.2 ? '\0tail' : '');
        sent.push({ command, headers, body });
        if (rand() < 0.5) parts.push(Buffer.from(rand() < 0.5 ? '\n' : '\r\n'));
        parts.push(encodeFrame({ command, headers, body }));
      }
      const items = parse(randomChunks(Buffer.concat(parts), rand), 4096);
      const got = items.flatMap((i) =>
        i.kind === 'frame'
          ? [
              {
                command: i.frame.command,
                headers: [...i.frame.headers].filter(([k]) => k !== 'content-length'),
                body: i.frame.body.toString('utf8'),
              },
            ]
          : [],
      );
      expect(got, `seed ${seed * 7919}`).toEqual(sent);
    }
  });
});

describe('encodeFrame', () => {
  it('writes CONNECTED unescaped and without content-length', () => {
    expect(
      encodeFrame({
        command: 'CONNECTED',
        headers: [
          ['version', '1.2'],
          ['heart-beat', '15000,0'],
        ],
      }).toString(),
    ).toBe('CONNECTED\nversion:1.2\nheart-beat:15000,0\n\n\0');
  });

  it("adds content-length in bytes after the other headers, and escapes other frames' headers", () => {
    const bytes = encodeFrame({ command: 'MESSAGE', headers: [['destination', 'a:b\nc\\']], body: '€' });
    expect(bytes.toString()).toBe('MESSAGE\ndestination:a\\cb\\nc\\\\\ncontent-length:3\n\n€\0');
  });

  it('escapes and unescapes as inverses', () => {
    for (const s of ['', 'plain', 'a:b', '\\', '\r\n', 'x\\cy']) expect(unescapeHeader(escapeHeader(s))).toBe(s);
  });
});

describe('detectProtocol', () => {
  const cases: [string, string][] = [
    ['GET / HTTP/1.1\r\n', 'http'],
    ['POST /x HTTP/1.1', 'http'],
    ['CONNECT host:443 HTTP/1.1', 'http'],
    ['CONNECT\n', 'stomp'],
    ['CONNECT\r\naccept-version:1.2', 'stomp'],
    ['STOMP\n', 'stomp'],
    ['SUBSCRIBE\ndestination:x', 'stomp'],
    ['\n\r\nSEND\n', 'stomp'],
    ['', 'undecided'],
    ['CONN', 'undecided'],
    ['CONNECT', 'undecided'],
    ['G', 'undecided'],
    ['\n\n', 'undecided'],
    ['\nGET / HTTP/1.1', 'unknown'],
    ['MESSAGE\n', 'unknown'],
    ['hello', 'unknown'],
    ['\x16\x03\x01\x02', 'unknown'],
    ['connect\n', 'unknown'],
    ['\n'.repeat(64) + 'SEND\n', 'unknown'],
  ];
  for (const [bytes, want] of cases) {
    it(`${JSON.stringify(bytes.slice(0, 30))} is ${want}`, () => {
      expect(detectProtocol(Buffer.from(bytes, 'latin1'))).toBe(want);
    });
  }
});

describe('VDSM negotiation rules', () => {
  it('swaps the heart-beat pair and raises non-zero values to 1000 ms', () => {
    expect(negotiateHeartBeat('0,15000')).toEqual({ sendMs: 15000, expectMs: 0, header: '15000,0' });
    expect(negotiateHeartBeat('4000,4000')).toEqual({ sendMs: 4000, expectMs: 4000, header: '4000,4000' });
    expect(negotiateHeartBeat('10,1')).toEqual({ sendMs: 1000, expectMs: 1000, header: '1000,1000' });
    expect(negotiateHeartBeat(undefined)).toEqual({ sendMs: 0, expectMs: 0, header: '0,0' });
    expect(negotiateHeartBeat('garbage')).toEqual({ sendMs: 0, expectMs: 0, header: '0,0' });
    expect(negotiateHeartBeat('x,2000')).toEqual({ sendMs: 2000, expectMs: 0, header: '2000,0' });
  });

  it('requires 1.2 among the accepted versions', () => {
    expect(offersVersion12('1.2')).toBe(true);
    expect(offersVersion12('1.0,1.1,1.2')).toBe(true);
    expect(offersVersion12('1.1')).toBe(false);
    expect(offersVersion12('1.20')).toBe(false);
    expect(offersVersion12(undefined)).toBe(false);
  });

  it('knows the request destinations and the ones below them', () => {
    expect(isRequestDestination('jms.topic.vdsm_requests')).toBe(true);
    expect(isRequestDestination('jms.topic.vdsm_irs_requests')).toBe(true);
    expect(isRequestDestination('jms.topic.vdsm_requests.x')).toBe(true);
    expect(isRequestDestination('jms.topic.vdsm_requestsx')).toBe(false);
    expect(isRequestDestination('jms.queue.events')).toBe(false);
  });
});
