// At most N tasks run at once; the rest wait in FIFO order. Bounds requests in flight on a netlink
// socket (the netlink package aborts the process when ~128 replies overrun its receive buffer) and
// concurrent `ip` processes.
export class ConcurrencyLimit {
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(readonly max: number) {}

  get inFlight(): number {
    return this.active;
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active >= this.max) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.active++;
    try {
      return await task();
    } finally {
      const next = this.waiting.shift();
      // The slot passes straight to the next waiter, so `active` never exceeds `max`.
      if (next) next();
      else this.active--;
    }
  }
}
