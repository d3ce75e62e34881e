// `events`: subscribes and prints each event as it comes, until stopped; when the connection
// goes (a daemon restart), says so on stderr and reconnects with backoff, subscribing again.
import type { RpcClient } from './rpcClient.js';

export interface FollowOptions {
  connect: () => Promise<RpcClient>;
  prefixes: string[] | null;
  onEvent: (method: string, params: unknown) => void;
  /** Connection changes, for people (stderr). */
  onStatus: (text: string) => void;
  /** Called when the first connection fails: following never starts then. */
  onFirstFailure: (err: Error) => never;
}

const BACKOFF_MIN_MS = 200;
const BACKOFF_MAX_MS = 5000;

export async function followEvents(opts: FollowOptions): Promise<void> {
  let first = true;
  let delayMs = BACKOFF_MIN_MS;
  let failing = false;
  for (;;) {
    let client: RpcClient;
    try {
      client = await opts.connect();
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      if (first) opts.onFirstFailure(e);
      // One line per streak of failures, not one per attempt.
      if (!failing) opts.onStatus(`waiting for the daemon: ${e.message}`);
      failing = true;
      await sleep(delayMs);
      delayMs = Math.min(BACKOFF_MAX_MS, delayMs * 2);
      continue;
    }
    const closed = new Promise<string>((resolve) =>
      client.ws.once('close', (code, reason) => resolve(`${code}${reason.length ? ` ${reason.toString()}` : ''}`)),
    );
    client.onNotification = (n) => opts.onEvent(n.method, n.params);
    try {
      await client.call('Host.subscribeEvents', opts.prefixes ? { prefixes: opts.prefixes } : {});
    } catch (err) {
      if (first) opts.onFirstFailure(err instanceof Error ? err : new Error(String(err)));
    }
    opts.onStatus(first ? 'following events (Ctrl-C to stop)' : 'reconnected; following events again');
    first = false;
    failing = false;
    delayMs = BACKOFF_MIN_MS;
    const why = await closed;
    opts.onStatus(`connection closed (${why}); reconnecting`);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
