// Host.setLogLevel (VDSM has it): changes the daemon's log level without a restart. VDSM's level
// names (Python logging: DEBUG, INFO, WARNING, ERROR, CRITICAL) and pino's are both accepted.
import type { Logger } from 'pino';
import { describe, fail, string, type Check } from '../params.js';
import type { MethodDef } from '../registry.js';

const LEVELS: Readonly<Record<string, string>> = {
  trace: 'trace',
  debug: 'debug',
  info: 'info',
  warn: 'warn',
  warning: 'warn',
  error: 'error',
  fatal: 'fatal',
  critical: 'fatal',
  silent: 'silent',
};

/** The names accepted, as shown in help and errors. */
export const LOG_LEVEL_NAMES =
  'trace | debug | info | warn | error | fatal | silent (or DEBUG, INFO, WARNING, ERROR, CRITICAL)';

export const logLevel: Check<string> = (value, name) => {
  if (typeof value !== 'string') return fail(name, `must be a level name string, got ${describe(value)}`);
  const level = Object.prototype.hasOwnProperty.call(LEVELS, value.toLowerCase())
    ? LEVELS[value.toLowerCase()]
    : undefined;
  return level ?? fail(name, `is not a log level: ${JSON.stringify(value.slice(0, 40))}; expected ${LOG_LEVEL_NAMES}`);
};

/** `name` is VDSM's logger name; this daemon has one logger, so only '' or 'root' is accepted. */
export const rootLoggerName: Check<string> = (value, name) => {
  const text = string(value, name);
  return text === '' || text === 'root'
    ? text
    : fail(name, `names no logger: vdsm-agentd has only the root logger ('' or 'root')`);
};

export function logLevelMethods(log: Logger): MethodDef[] {
  return [
    {
      name: 'Host.setLogLevel',
      aliases: ['setLogLevel'],
      params: [
        { name: 'level', required: true, check: logLevel },
        { name: 'name', required: false, check: rootLoggerName },
      ],
      handler: (p, session) => {
        const from = log.level;
        const to = p.level as string;
        // Logged under whichever of the two levels shows info lines, so the change is on record.
        const line = { from, to, peer: session.peer, conn: session.id };
        const shownBefore = log.isLevelEnabled('info');
        if (shownBefore) log.info(line, 'log level changed');
        log.level = to;
        if (!shownBefore && log.isLevelEnabled('info')) log.info(line, 'log level changed');
        return true;
      },
    },
  ];
}
