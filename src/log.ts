// pino on stdout (journald collects it under systemd). One place decides the logger's shape:
// level names rather than numbers; JSON lines, or pino-pretty's text for a person at a terminal;
// under journald each line starts with its syslog priority (`<4>` for a warning, the sd-daemon
// convention that journald strips and files), so `journalctl -p warning` finds the warnings.
import { fstatSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isatty } from 'node:tty';
import { pino, type DestinationStream, type Logger } from 'pino';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
/** `auto`: text on a terminal, JSON otherwise. */
export type LogFormat = 'json' | 'text' | 'auto';

/** syslog priorities (RFC 5424): crit, err, warning, info, debug. */
const PRIORITY: Record<string, number> = { fatal: 2, error: 3, warn: 4, info: 6, debug: 7, trace: 7 };
const LEVEL_OF_LINE = /^\{"level":"([a-z]+)"/;

/**
 * True when stdout is the stream journald gave us: JOURNAL_STREAM holds that stream's
 * "device:inode", which a child's stdout redirected elsewhere does not match.
 */
function stdoutIsJournal(env: NodeJS.ProcessEnv = process.env, fd = 1): boolean {
  const want = env.JOURNAL_STREAM;
  if (!want) return false;
  try {
    const st = fstatSync(fd);
    return want === `${st.dev}:${st.ino}`;
  } catch {
    return false;
  }
}

export function resolveFormat(format: LogFormat, fd = 1): 'json' | 'text' {
  return format === 'auto' ? (isatty(fd) ? 'text' : 'json') : format;
}

/** A JSON log line to pino-pretty's one-line text (also used by the demo for the daemon's lines). */
export function textFormatter(colour: boolean): (line: string) => string {
  // Loaded only for text: pino-pretty costs ~50 ms of start-up that the JSON log (journald) never needs.
  const { prettyFactory } = createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty');
  return prettyFactory({
    colorize: colour,
    singleLine: true,
    translateTime: 'SYS:standard',
    ignore: 'svc,pid,hostname',
  });
}

/** pino's numeric order of the level names (silent above all). */
export const LEVEL_VALUES: Record<LogLevel, number> = {
  trace: 10,
  debug: 20,
  info: 30,
  warn: 40,
  error: 50,
  fatal: 60,
  silent: Infinity,
};

export interface LoggerOptions {
  format?: LogFormat;
  /** Prefix each line with its syslog priority; default: when stdout is journald's stream. */
  journal?: boolean;
}

export function createLogger(level: LogLevel, opts: LoggerOptions = {}): Logger {
  const format = resolveFormat(opts.format ?? 'json');
  const journal = opts.journal ?? stdoutIsJournal();
  // Synchronous writes: each line is out when the call returns, so nothing is left to flush at
  // exit. With pino's default asynchronous stream, a stdout whose reader has gone (EPIPE) made
  // the exit-time flush retry forever, and the daemon never exited on SIGTERM.
  const out = pino.destination({ dest: 1, sync: true });
  const pretty = format === 'text' ? textFormatter(isatty(1) && !journal) : null;
  const dest: DestinationStream = {
    write(line: string): void {
      const text = pretty ? pretty(line) : line;
      if (!journal) {
        out.write(text);
        return;
      }
      const prefix = `<${PRIORITY[LEVEL_OF_LINE.exec(line)?.[1] ?? 'info'] ?? 6}>`;
      // Every line of a multi-line text entry (a stack trace) keeps the entry's priority.
      out.write(prefix + text.replace(/\n(?=.)/g, `\n${prefix}`));
    },
  };
  return pino(
    {
      level,
      base: { svc: 'vdsm-agentd' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    dest,
  );
}
