// Fuzzes the pure framing and parsing with random bytes and mutated fixtures, for a fixed number
// of iterations from a fixed seed (a failure prints the seed and iteration to replay it). They
// must never throw past their boundary and never return anything outside the sanitised shape.
import { describe, expect, it } from 'vitest';
import { LineFramer } from '../src/guest/framing.js';
import { GUEST_LIMITS } from '../src/guest/sanitize.js';
import { parseOvirtLine } from '../src/guest/ovirtAgent.js';
import { QgaReader, mapQgaHostName, mapQgaInterfaces, mapQgaOsInfo } from '../src/guest/qemuAgent.js';
import { allFixtureBytes } from './helpers/guestFixtures.js';
import { guestDataProblem, textProblem } from './helpers/sanitisedShape.js';
import { rng } from './helpers/seededRandom.js';

const ITERATIONS = 12_000;
const SEED = 0x5eed2026;

const SPECIAL = [
  0x00, 0x0a, 0x0d, 0x7f, 0x80, 0xc0, 0xed, 0xef, 0xfe, 0xff, 0x22, 0x5c, 0x7b, 0x7d, 0x5b, 0x5d, 0x3a, 0x25,
];
const NASTY_VALUES: unknown[] = [
  null,
  true,
  0,
  -1,
  1e308,
  '',
  '\u0000',
  '\ud800',
  '\uffff',
  'x'.repeat(300),
  '1.2.3.4',
  '::1%lo',
  'fe80::1%',
  'ZZ:00:00:00:00:00',
  '00:11:22:33:44:55',
  [],
  {},
  [null],
  { __proto__: 1 },
  '__proto__',
  'constructor',
  'eth0:1',
  '😀'.repeat(60),
];

function mutateBytes(r: () => number, seeds: Buffer[]): Buffer {
  const base = Buffer.from(seeds[Math.floor(r() * seeds.length)]!);
  const bytes = [...base];
  const n = 1 + Math.floor(r() * 8);
  for (let i = 0; i < n; i++) {
    const at = Math.floor(r() * (bytes.length + 1));
    switch (Math.floor(r() * 6)) {
      case 0:
        if (bytes.length) bytes[at % bytes.length] = Math.floor(r() * 256);
        break;
      case 1:
        bytes.splice(at, 0, SPECIAL[Math.floor(r() * SPECIAL.length)]!);
        break;
      case 2:
        bytes.splice(at, 1 + Math.floor(r() * 16));
        break;
      case 3:
        bytes.splice(at, 0, ...bytes.slice(Math.floor(r() * bytes.length), Math.floor(r() * bytes.length)));
        break;
      case 4:
        bytes.splice(at, 0, ...seeds[Math.floor(r() * seeds.length)]!.subarray(0, Math.floor(r() * 200)));
        break;
      default:
        if (bytes.length) bytes[at % bytes.length]! ^= 1 << Math.floor(r() * 8);
    }
  }
  return Buffer.from(bytes);
}

/** Structure-aware: parse a fixture's JSON lines and replace random values with nasty ones. */
function mutateJson(r: () => number, seeds: Buffer[]): Buffer {
  const lines = seeds[Math.floor(r() * seeds.length)]!.toString('latin1')
    .split('\n')
    .filter((l) => l.startsWith('{'));
  if (!lines.length) return Buffer.alloc(0);
  const value = JSON.parse(Buffer.from(lines[Math.floor(r() * lines.length)]!, 'latin1').toString('utf8')) as unknown;
  const walk = (v: unknown, depth: number): unknown => {
    if (r() < 0.08) return NASTY_VALUES[Math.floor(r() * NASTY_VALUES.length)];
    if (Array.isArray(v)) {
      const out = v.map((x) => walk(x, depth + 1));
      if (r() < 0.05 && out.length) while (out.length < 200) out.push(out[0]); // blow up the list
      return out;
    }
    if (v && typeof v === 'object' && depth < 8)
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [r() < 0.03 ? '__proto__' : k, walk(x, depth + 1)]));
    return v;
  };
  return Buffer.from(JSON.stringify(walk(value, 0)) + '\n', 'utf8');
}

function randomBytes(r: () => number): Buffer {
  const len = Math.floor(r() * 512);
  return Buffer.from(
    Array.from({ length: len }, () => (r() < 0.3 ? SPECIAL[Math.floor(r() * SPECIAL.length)]! : Math.floor(r() * 256))),
  );
}

/** Feeds in random-sized chunks, as a socket would. */
function chunks(r: () => number, bytes: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < bytes.length;) {
    const n = 1 + Math.floor(r() * 64);
    out.push(bytes.subarray(i, i + n));
    i += n;
  }
  return out;
}

/** expect() only for a problem found: on the ~100,000 checks that pass, its cost made the test take a minute on a loaded machine. */
function noProblem(problem: string | null, where: string): void {
  if (problem !== null) expect(problem, where).toBeNull();
}

describe('guest protocol fuzzing', () => {
  // CPU work of a few seconds; with both cores busy a test worker gets a fraction of one, so the
  // bound is well above vitest's 60 s default.
  it(
    `${ITERATIONS} inputs: framing and parsing never throw and only return sanitised data`,
    { timeout: 300_000 },
    () => {
      const seeds = allFixtureBytes();
      const r = rng(SEED);
      let reports = 0;
      for (let iter = 0; iter < ITERATIONS; iter++) {
        const kind = iter % 3;
        const input = kind === 0 ? randomBytes(r) : kind === 1 ? mutateBytes(r, seeds) : mutateJson(r, seeds);
        const where = `seed ${SEED} iteration ${iter}`;
        try {
          const framer = new LineFramer(GUEST_LIMITS.maxLineBytes);
          const reader = new QgaReader();
          if (r() < 0.3) reader.beginSync(1234);
          for (const c of chunks(r, input)) {
            for (const f of framer.push(c)) {
              if (f.kind !== 'line') continue;
              const m = parseOvirtLine(f.bytes);
              if (m.name !== null) noProblem(textProblem(m.name, 50), where);
              if (m.report) {
                reports++;
                noProblem(guestDataProblem(m.report as Record<string, unknown>), where);
              }
            }
            for (const e of reader.push(c)) {
              if (e.type !== 'reply' || e.reply.kind === 'invalid' || e.reply.kind === 'same') continue;
              if (e.reply.kind === 'error') {
                noProblem(textProblem(e.reply.errorClass, 50), where);
                noProblem(textProblem(e.reply.desc, 255), where);
                continue;
              }
              const v = e.reply.value;
              const netIfaces = mapQgaInterfaces(v, new Map());
              const guestName = mapQgaHostName(v, new Map());
              const guestOs = mapQgaOsInfo(v, new Map());
              if (netIfaces) reports++;
              noProblem(
                guestDataProblem({
                  netIfaces: netIfaces ?? undefined,
                  guestName: guestName ?? undefined,
                  guestOs: guestOs ?? undefined,
                }),
                where,
              );
            }
          }
          if (framer.bufferedBytes > GUEST_LIMITS.maxLineBytes)
            expect(framer.bufferedBytes, where).toBeLessThanOrEqual(GUEST_LIMITS.maxLineBytes);
        } catch (err) {
          const msg = (err as Error).message;
          throw new Error(msg.includes(where) ? msg : `${where}: ${msg}`, { cause: err });
        }
      }
      // The fuzzer must reach the interesting paths, not only reject garbage.
      expect(reports).toBeGreaterThan(ITERATIONS / 10);
    },
  );
});
