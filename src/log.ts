// pino on stdout (journald collects it under systemd). One place decides the logger's shape.
import { pino, type Logger } from 'pino';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export function createLogger(level: LogLevel): Logger {
  // Synchronous writes: each line is out when the call returns, so nothing is left to flush at
  // exit. With pino's default asynchronous stream, a stdout whose reader has gone (EPIPE) made
  // the exit-time flush retry forever, and the daemon never exited on SIGTERM.
  return pino(
    { level, base: { svc: 'vdsm-agentd' }, timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ dest: 1, sync: true }),
  );
}
