// Per-VM token buckets: how much a guest may send before the excess is dropped unread. Pure
// (time comes in as an argument) so tests can drive the clock.

export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    readonly capacity: number,
    /** Tokens added per second. */
    readonly refillPerSecond: number,
    now: number,
  ) {
    this.tokens = capacity;
    this.last = now;
  }

  private refill(now: number): void {
    if (now > this.last) {
      this.tokens = Math.min(this.capacity, this.tokens + ((now - this.last) / 1000) * this.refillPerSecond);
      this.last = now;
    }
  }

  /** Takes `n` tokens if all are there; otherwise takes none and says no. */
  tryTake(n: number, now: number): boolean {
    this.refill(now);
    if (this.tokens < n) return false;
    this.tokens -= n;
    return true;
  }

  /** Takes `n` tokens even into debt; returns ms until the balance is back at zero (0 if not in debt). */
  charge(n: number, now: number): number {
    this.refill(now);
    this.tokens -= n;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens / this.refillPerSecond) * 1000);
  }
}

/**
 * The budget one VM's channels share. Messages: a burst of 200 (an agent's full report at start-up
 * is about 15), then 20 a second (a well-behaved agent sends one every few seconds). Bytes: a
 * burst of 8 MiB, then 2 MiB a second; past it the channel stops reading until the debt is paid,
 * so a flood costs the daemon bounded CPU and memory and the guest's writes simply block.
 */
export const VM_RATE_BUDGET = {
  messagesBurst: 200,
  messagesPerSecond: 20,
  bytesBurst: 8 * 1024 * 1024,
  bytesPerSecond: 2 * 1024 * 1024,
} as const;

export class VmRateBudget {
  readonly messages: TokenBucket;
  readonly bytes: TokenBucket;

  constructor(now: number, limits: typeof VM_RATE_BUDGET = VM_RATE_BUDGET) {
    this.messages = new TokenBucket(limits.messagesBurst, limits.messagesPerSecond, now);
    this.bytes = new TokenBucket(limits.bytesBurst, limits.bytesPerSecond, now);
  }
}
