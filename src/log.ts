// pino on stdout (journald collects it under systemd). One place decides the logger's shape.
import { pino, type Logger } from 'pino';
import type { LogLevel } from './config.js';

export function createLogger(level: LogLevel): Logger {
  return pino({ level, base: { svc: 'vdsm-agentd' }, timestamp: pino.stdTimeFunctions.isoTime });
}
