#!/usr/bin/env node
// Flags -> Config -> Daemon. Start-up errors are one line on stderr and exit status 2.
import { ConfigError, loadConfig, parseArgs, usage } from './config.js';
import { Daemon } from './daemon.js';
import { createLogger } from './log.js';

function die(message: string): never {
  process.stderr.write(`vdsm-agentd: error: ${message}\n`);
  process.exit(2);
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  let config;
  try {
    const { help, version } = parseArgs(argv);
    if (help) {
      process.stdout.write(usage() + '\n');
      return;
    }
    if (version) {
      process.stdout.write('vdsm-agentd 0.1.0\n');
      return;
    }
    config = loadConfig(argv);
  } catch (err) {
    if (err instanceof ConfigError) die(err.message);
    throw err;
  }
  const log = createLogger(config.logLevel);
  const daemon = new Daemon(config, log);
  try {
    await daemon.start();
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'EADDRINUSE') die(`cannot listen on ${config.listen.host}:${config.listen.port}: address already in use`);
    if (e.code === 'EADDRNOTAVAIL') die(`cannot listen on ${config.listen.host}:${config.listen.port}: address not available on this host`);
    if (e.code === 'EACCES') die(`cannot listen on ${config.listen.host}:${config.listen.port}: permission denied`);
    if (e.code === 'ENOTFOUND' || e.code === 'EAI_AGAIN') die(`cannot listen on ${config.listen.host}: unknown host`);
    die(`cannot start: ${e.message}`);
  }
  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    daemon.stop().then(
      () => {
        log.info('stopped');
        log.flush?.();
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  // A bug must not take down a host agent silently: log it; the daemon stays up for other VMs.
  process.on('uncaughtException', (err) => log.fatal({ err }, 'uncaught exception'));
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));
}

void main();
