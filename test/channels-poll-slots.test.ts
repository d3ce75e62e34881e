// The qemu-ga pollers' shared timer wheel: many pollers cost one pending timer, a round is
// never due later than its interval asks, and a cancelled or moved round does not run twice.
import { describe, expect, it } from 'vitest';
import { PollSlots, slotWidthFor, type SlotEntry } from '../src/channels/pollSlots.js';

const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

function entry(run: () => void = () => {}): SlotEntry {
  return { run, slot: -1 };
}

describe('PollSlots', () => {
  it('runs a thousand rounds from one pending timer, each once', async () => {
    const slots = new PollSlots(5);
    const before = timers();
    const ran = new Map<number, number>();
    let done!: () => void;
    const all = new Promise<void>((r) => (done = r));
    for (let i = 0; i < 1000; i++) {
      const e = entry(() => {
        ran.set(i, (ran.get(i) ?? 0) + 1);
        if (ran.size === 1000) done();
      });
      slots.schedule(e, i % 40);
    }
    expect(timers() - before).toBeLessThanOrEqual(1);
    expect(slots.size).toBe(1000);
    await all;
    expect([...ran.values()].every((n) => n === 1)).toBe(true);
    expect(slots.size).toBe(0);
  });

  it('rounds a due time down to its slot boundary, never past it, and never into the past', () => {
    let now = 1_000_003;
    const slots = new PollSlots(250, () => now);
    for (const delay of [0, 1, 249, 250, 251, 4999, 5000, 5001]) {
      const e = entry();
      slots.schedule(e, delay);
      const at = e.slot * 250;
      expect(at).toBeLessThanOrEqual(Math.max(now + delay, Math.floor(now / 250) * 250 + 250));
      expect(at).toBeGreaterThan(now); // the next boundary at the earliest
      expect(at).toBeGreaterThan(now + delay - 250);
      slots.cancel(e);
      now += 7;
    }
  });

  it('places a deadline at the first boundary at or after it: never early, at most one slot late', () => {
    let now = 2_000_011;
    const slots = new PollSlots(250, () => now);
    for (const delay of [0, 1, 249, 250, 251, 4999, 5000, 5001]) {
      const e = entry();
      slots.scheduleNotBefore(e, delay);
      const at = e.slot * 250;
      expect(at).toBeGreaterThanOrEqual(now + delay);
      expect(at).toBeLessThan(now + delay + 250);
      slots.cancel(e);
      now += 13;
    }
  });

  it('keeps a steady interval exactly: a round that ends a little after its slot is due one interval after it', () => {
    let now = 0;
    const w = slotWidthFor(5000);
    const slots = new PollSlots(w, () => now);
    const e = entry();
    slots.schedule(e, 5000);
    const first = e.slot;
    now = first * w + 3; // the slot ran; the round took 3 ms
    slots.schedule(e, 5000);
    expect((e.slot - first) * w).toBe(5000);
    slots.cancel(e);
  });

  it('does not run a cancelled round, and runs a moved one once, at its new slot', async () => {
    const slots = new PollSlots(2);
    let cancelledRan = false;
    const cancelled = entry(() => (cancelledRan = true));
    slots.schedule(cancelled, 4);
    slots.cancel(cancelled);
    let movedRuns = 0;
    let moved!: () => void;
    const movedDone = new Promise<void>((r) => (moved = r));
    const m = entry(() => {
      movedRuns++;
      moved();
    });
    slots.schedule(m, 4);
    slots.schedule(m, 20);
    // A later round proves the earlier slots have run.
    let lateDone!: () => void;
    const late = new Promise<void>((r) => (lateDone = r));
    slots.schedule(entry(lateDone), 40);
    await Promise.all([movedDone, late]);
    expect(cancelledRan).toBe(false);
    expect(movedRuns).toBe(1);
  });

  it('chooses slots that cost at most 10 % of the interval and at most 500 ms', () => {
    expect(slotWidthFor(5000)).toBe(500);
    expect(slotWidthFor(60_000)).toBe(500);
    expect(slotWidthFor(1000)).toBe(100);
    expect(slotWidthFor(20)).toBe(2);
    expect(slotWidthFor(5)).toBe(1);
  });
});
