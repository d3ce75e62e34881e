// Simulated guests in a process of their own, for benches that time calls: a GuestSimulator
// serving a thousand guests (polls answered, heartbeats on a shared 250 ms tick) in the bench's
// own event loop delays the measuring client's reads by whatever burst it is serving, and that
// delay would be counted as the daemon's latency. The parent talks to it over IPC (SimProcess).
// Run as a child: `node --import tsx bench/simProcess.ts` (forked by SimProcess.start).
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { GuestSimulator, type SimCounters } from '../src/sim/simulator.js';
import { generateGuests, type SimAgent } from '../src/sim/guest.js';

type Request =
  | { op: 'addAll'; count: number }
  | { op: 'counters' }
  | { op: 'changeAddress'; vmId: string }
  | { op: 'pick'; agent: SimAgent; count: number }
  | { op: 'close' };

interface Answer {
  id: number;
  result?: unknown;
  error?: string;
}

/** Wall-clock milliseconds with performance.now()'s resolution, comparable between processes. */
export const epochMs = (): number => performance.timeOrigin + performance.now();

/** The parent's handle on a simulator child: each method is one IPC round trip. */
export class SimProcess {
  private seq = 0;
  private readonly waiting = new Map<number, (a: Answer) => void>();

  private constructor(private readonly child: ChildProcess) {
    child.on('message', (a: Answer) => {
      const w = this.waiting.get(a.id);
      this.waiting.delete(a.id);
      w?.(a);
    });
  }

  /** Forks a simulator serving channel sockets in `dir`. */
  static start(dir: string): SimProcess {
    const child = fork(fileURLToPath(import.meta.url), [dir], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    return new SimProcess(child);
  }

  get pid(): number {
    return this.child.pid!;
  }

  private ask<T>(req: Request): Promise<T> {
    const id = ++this.seq;
    return new Promise((resolve, reject) => {
      if (this.child.exitCode !== null) return reject(new Error('simulator process has exited'));
      this.waiting.set(id, (a) => (a.error === undefined ? resolve(a.result as T) : reject(new Error(a.error))));
      this.child.send({ id, ...req });
    });
  }

  /** Adds generateGuests(count) (the same guests in every simulator); resolves once they listen. */
  addAll(count: number): Promise<void> {
    return this.ask({ op: 'addAll', count });
  }

  counters(): Promise<SimCounters> {
    return this.ask({ op: 'counters' });
  }

  /** Changes one address of the guest now; returns the new address and when it changed (epochMs()). */
  changeAddress(vmId: string): Promise<{ address: string; atMs: number }> {
    return this.ask({ op: 'changeAddress', vmId });
  }

  /** The first `count` guests whose first agent is `agent`. */
  pick(agent: SimAgent, count: number): Promise<string[]> {
    return this.ask({ op: 'pick', agent, count });
  }

  /** Closes the guests' sockets and ends the child. */
  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise<void>((r) => this.child.once('exit', () => r()));
    await this.ask({ op: 'close' }).catch(() => undefined);
    this.child.disconnect();
    await exited;
  }
}

function serve(dir: string): void {
  const sim = new GuestSimulator({ dir });
  const handle = async (req: Request): Promise<unknown> => {
    switch (req.op) {
      case 'addAll':
        return sim.addAll(generateGuests(req.count));
      case 'counters':
        return { ...sim.counters };
      case 'changeAddress': {
        const address = sim.changeAddress(req.vmId);
        if (address === null) throw new Error(`guest ${req.vmId} has no address to change`);
        return { address, atMs: epochMs() };
      }
      case 'pick':
        return sim
          .vmIds()
          .filter((id) => sim.guest(id)!.agents[0] === req.agent)
          .slice(0, req.count);
      case 'close':
        return sim.close();
    }
  };
  process.on('message', (msg: Request & { id: number }) => {
    handle(msg).then(
      (result) => process.send!({ id: msg.id, result: result ?? null }),
      (err: unknown) => process.send!({ id: msg.id, error: err instanceof Error ? err.message : String(err) }),
    );
  });
  // The parent gone (or done): close the sockets and leave.
  process.on('disconnect', () => void sim.close().finally(() => process.exit(0)));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) serve(process.argv[2]!);
