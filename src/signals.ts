// Signals other than SIGTERM/SIGINT must never end the daemon or open a port. Imported first by
// main.ts, so its handlers are in place before any other module is evaluated: Node opens its
// inspector on 127.0.0.1:9229 at SIGUSR1 unless a listener is installed, and SIGHUP, SIGUSR2 and
// the rest end a process that has none (systemd would count SIGHUP's exit as clean, and
// Restart=on-failure would leave the daemon down).

/** Caught and logged; SIGHUP reloads once the daemon is up. SIGQUIT/SIGABRT keep their core dump. */
const HANDLED_SIGNALS = [
  'SIGHUP',
  'SIGUSR1',
  'SIGUSR2',
  'SIGALRM',
  'SIGVTALRM',
  'SIGIO',
  'SIGPWR',
  'SIGSTKFLT',
  'SIGXCPU',
  'SIGXFSZ',
] as const satisfies readonly NodeJS.Signals[];

type Handler = (signal: NodeJS.Signals) => void;

// Before main.ts sets its handler (start-up), a signal is only remembered: the configuration is
// being read for the first time anyway.
const early: NodeJS.Signals[] = [];
let handler: Handler = (signal) => void early.push(signal);

for (const signal of HANDLED_SIGNALS) {
  try {
    process.on(signal, (s: NodeJS.Signals) => handler(s));
  } catch {
    /* a signal this platform does not have */
  }
}

/** Routes the handled signals to `h`; returns those that arrived during start-up. */
export function onOtherSignals(h: Handler): NodeJS.Signals[] {
  handler = h;
  return early.splice(0);
}
