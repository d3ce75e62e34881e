// QgaReader.read() (the framer's sink, events handed to a sink as they are found: issue 16, idle
// CPU) gives what push() (the framer's frame list, an event list) gives, on the same streams cut
// into chunks at random places and read from one reused buffer as the channels read them.
import { describe, expect, it } from 'vitest';
import type { IssueCounts } from '../src/guest/issues.js';
import { GUEST_LIMITS } from '../src/guest/sanitize.js';
import { QgaReader, SAME_REPLY, type QgaEvent, type QgaEventSink, type QgaReply } from '../src/guest/qemuAgent.js';

const IFACES = 'guest-network-get-interfaces';
const HOST = 'guest-get-host-name';

/** Deterministic pseudo-random numbers in [0, n). */
function rng(seed: number): (n: number) => number {
  let x = seed * 2654435761 + 1;
  return (n) => {
    x = (Math.imul(x ^ (x >>> 15), 2246822507) + 0x6d2b79f5) | 0;
    return ((x >>> 8) & 0xffffff) % n;
  };
}

/** A reply line the agent could send (or a broken one), by kind. */
function message(pick: (n: number) => number, syncId: number): Buffer {
  const addr = `10.0.${pick(2)}.${1 + pick(3)}`;
  const stats = `{"rx-bytes": ${pick(100000)}, "tx-packets": ${pick(1000)}}`;
  switch (pick(12)) {
    case 0:
      return Buffer.from([0xff]);
    case 1:
      return Buffer.from(`{"return": ${syncId}}\n`);
    case 2:
      return Buffer.from(`{"return": {"host-name": "vm-${pick(2)}"}}\n`);
    case 3:
      return Buffer.from('{"error": {"class": "CommandNotFound", "desc": "no"}}\n');
    case 4:
      return Buffer.from('not json at all\n');
    case 5:
      return Buffer.from(' \t\r\n');
    case 6: // now and then over the line cap
      return Buffer.from(pick(20) ? 'garbage\n' : `{"return": "${'x'.repeat(GUEST_LIMITS.maxLineBytes)}"}\n`);
    case 7:
      return Buffer.concat([Buffer.from('{"return": {"host-name": "a'), Buffer.of(0xc3), Buffer.from('b"}}\n')]);
    default:
      return Buffer.from(
        `{"return": [{"name": "eth0", "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "${addr}", ` +
          `"prefix": 24}], "statistics": ${stats}, "hardware-address": "52:54:00:12:34:56"}]}\n`,
      );
  }
}

/** What an event says, comparable with toEqual (a repeated reply by identity, issues as entries). */
function described(type: string, reply?: QgaReply, issues?: IssueCounts, code?: string): unknown {
  if (type !== 'reply') return { type, code };
  return { type, same: reply === SAME_REPLY, reply: reply === SAME_REPLY ? null : reply, issues: [...issues!] };
}

function fromList(events: QgaEvent[]): unknown[] {
  return events.map((e) =>
    e.type === 'reply'
      ? described(e.type, e.reply, e.issues)
      : described(e.type, undefined, undefined, e.type === 'discarded' ? e.code : undefined),
  );
}

class Recorder implements QgaEventSink {
  readonly got: unknown[] = [];
  synced(): void {
    this.got.push(described('synced'));
  }
  reply(reply: QgaReply, issues: IssueCounts): void {
    // What a sink sees must be read at once: the line it came from is a view of reused memory.
    this.got.push(structuredClone(described('reply', reply, issues)));
  }
  discarded(code: string): void {
    this.got.push(described('discarded', undefined, undefined, code));
  }
}

describe('QgaReader.read() against push()', () => {
  it('gives the same events, repeated replies included, however the stream is cut', () => {
    // One read buffer for every chunk, as the channels have (channels/channel.ts): a reply's bytes
    // are overwritten by the next chunk.
    const readBuffer = Buffer.alloc(GUEST_LIMITS.maxLineBytes + 4096);
    let sames = 0;
    let replies = 0;
    for (let seed = 0; seed < 300; seed++) {
      const pick = rng(seed);
      const fast = new QgaReader();
      const general = new QgaReader();
      const rec = new Recorder();
      const listed: unknown[] = [];
      let syncId = 1;
      for (let step = 0; step < 40; step++) {
        if (pick(8) === 0) {
          syncId = 1 + pick(1000);
          fast.beginSync(syncId);
          general.beginSync(syncId);
        }
        if (pick(30) === 0) {
          fast.reset();
          general.reset();
        }
        const parts = Array.from({ length: 1 + pick(3) }, () => message(pick, syncId));
        const stream = Buffer.concat(parts);
        const answering = [null, IFACES, HOST][pick(3)]!;
        // Whole, or cut at random places (a line spanning chunks is the framer's own copy).
        let at = 0;
        let first = true;
        while (at < stream.length) {
          const len = pick(3) === 0 ? 1 + pick(stream.length - at) : stream.length - at;
          const chunk = stream.subarray(at, at + len);
          at += len;
          const offset = pick(4) === 0 ? pick(64) : 0;
          chunk.copy(readBuffer, offset);
          fast.read(readBuffer.subarray(offset, offset + chunk.length), first ? answering : null, rec);
          listed.push(...fromList(general.push(Buffer.from(chunk), first ? answering : null)));
          first = false;
        }
        expect(fast.syncing).toBe(general.syncing);
        expect(fast.bufferedBytes).toBe(general.bufferedBytes);
      }
      expect(rec.got, `seed ${seed}`).toEqual(listed);
      for (const e of listed as { type: string; same?: boolean }[]) {
        if (e.type !== 'reply') continue;
        replies++;
        if (e.same) sames++;
      }
    }
    // The streams exercised both outcomes of the comparison.
    expect(sames).toBeGreaterThan(50);
    expect(replies - sames).toBeGreaterThan(50);
  });

  it('hands a repeated reply on as unparsed only when the bytes in the reused buffer repeat it', () => {
    const buffer = Buffer.alloc(4096);
    const line = (addr: string, n: number): Buffer =>
      Buffer.from(
        `{"return": [{"name": "eth0", "ip-addresses": [{"ip-address": "${addr}"}], "statistics": {"a": ${n}}}]}\n`,
      );
    const r = new QgaReader();
    const rec = new Recorder();
    for (const [addr, n] of [
      ['10.0.0.1', 1],
      ['10.0.0.1', 2],
      ['10.0.0.2', 3], // same length and place, new bytes
      ['10.0.0.2', 4],
    ] as const) {
      const b = line(addr, n);
      b.copy(buffer);
      r.read(buffer.subarray(0, b.length), IFACES, rec);
    }
    expect(rec.got.map((e) => (e as { same: boolean }).same)).toEqual([false, true, false, true]);
    expect(
      (rec.got[2] as { reply: { value: { 'ip-addresses': unknown[] }[] } }).reply.value[0]!['ip-addresses'],
    ).toEqual([{ 'ip-address': '10.0.0.2' }]);
  });
});
