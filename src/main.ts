#!/usr/bin/env node
// Flags -> Config -> Daemon. Start-up errors are one line on stderr and exit status 2.
// signals.js first: its handlers must be in place before anything else is evaluated.
import { onOtherSignals } from './signals.js';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import type { Logger } from 'pino';
import { ConfigError, loadConfig, optionsMarkdown, parseArgs, planReload, usage, type Config } from './config.js';
import { Daemon } from './daemon.js';
import { createLogger } from './log.js';
import { notifyReady } from './systemdNotify.js';
import { keepYoungGenerationSmall } from './youngGeneration.js';

function die(message: string): never {
  process.stderr.write(`vdsm-agentd: error: ${message}\n`);
  process.exit(2);
}

/** One line for a failure to bind or to build the listener. */
function startError(config: Config, err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  const where = `${config.listen.host}:${config.listen.port}`;
  switch (e.code) {
    case 'EADDRINUSE':
      return `cannot listen on ${where}: address already in use${portHolder(config.listen.port)}`;
    case 'EADDRNOTAVAIL':
      return `cannot listen on ${where}: address not available on this host`;
    case 'EACCES':
      return `cannot listen on ${where}: permission denied`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `cannot listen on ${config.listen.host}: unknown host`;
    default:
      return `cannot start: ${(err instanceof Error ? err.message : String(err)).split('\n')[0]}`;
  }
}

/** ' (by NAME, pid N)' when ss can tell which process listens on the port (root sees all). */
function portHolder(port: number): string {
  try {
    const out = execFileSync('ss', ['-Hltnp', `sport = :${port}`], {
      encoding: 'utf8',
      timeout: 3000,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const m = /users:\(\("([^"]+)",pid=(\d+)/.exec(out);
    return m ? ` (by ${m[1]}, pid ${m[2]})` : '';
  } catch {
    return ''; // no ss: the plain message is still right
  }
}

/**
 * SIGHUP: config file and environment read again with the same flags. The log level and the TLS
 * files apply at once (TLS for new connections); other changes are named as needing a restart.
 * A reload that fails keeps everything as it runs and says why in one line.
 */
function reload(argv: readonly string[], running: Config, daemon: Daemon, log: Logger): Config {
  let next: Config;
  try {
    next = loadConfig(argv);
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    log.error({ signal: 'SIGHUP' }, `reload failed, running settings kept: ${why}`);
    return running;
  }
  const plan = planReload(running, next);
  const applied: string[] = [];
  if (plan.tls) {
    try {
      daemon.server.setTls(plan.tls);
      applied.push('tls-cert/tls-key/tls-ca');
    } catch (err) {
      log.error(
        { signal: 'SIGHUP' },
        `reload failed, running settings kept: TLS files not usable: ${(err as Error).message}`,
      );
      return running;
    }
  }
  if (plan.logLevel) {
    log.level = plan.logLevel;
    applied.push('log-level');
  }
  const now: Config = { ...running, logLevel: plan.logLevel ?? running.logLevel, tls: plan.tls ?? running.tls };
  if (plan.restart.length) {
    log.warn(
      { signal: 'SIGHUP', settings: plan.restart },
      `changed settings need a restart to take effect: ${plan.restart.join(', ')}`,
    );
  }
  log.info({ signal: 'SIGHUP', applied, tls: now.tls?.paths ?? null }, 'configuration reloaded');
  return now;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  let config: Config;
  try {
    const { help, helpMarkdown, version } = parseArgs(argv);
    if (help || helpMarkdown) {
      process.stdout.write((help ? usage() : optionsMarkdown()) + '\n');
      return;
    }
    if (version) {
      // package.json sits one level above dist/, in a checkout and in an installed package alike.
      const pkg = createRequire(import.meta.url)('../package.json') as { version: string };
      process.stdout.write(`vdsm-agentd ${pkg.version}\n`);
      return;
    }
    config = loadConfig(argv);
  } catch (err) {
    if (err instanceof ConfigError) die(err.message);
    throw err;
  }
  keepYoungGenerationSmall();
  const log = createLogger(config.logLevel, { format: config.logFormat });
  log.debug({ config: { ...config, tls: config.tls?.paths ?? null } }, 'configuration');
  let daemon: Daemon;
  try {
    daemon = new Daemon(config, log);
  } catch (err) {
    die(startError(config, err));
  }

  // Handlers go in before listening: a SIGTERM right after start-up (systemctl stop) must still
  // get the graceful path, once start-up has finished.
  let started: Promise<unknown> = Promise.resolve();
  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    started
      .catch(() => undefined)
      .then(() => daemon.stop())
      .then(
        () => {
          log.info('stopped');
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
  let running = config;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    if (signal === 'SIGHUP') running = reload(argv, running, daemon, log);
    else log.info({ signal }, `${signal} ignored: SIGHUP reloads, SIGTERM or SIGINT stops the daemon`);
  };
  for (const signal of onOtherSignals(onSignal)) onSignal(signal);
  // A bug must not take down a host agent silently: log it; the daemon stays up for other VMs.
  process.on('uncaughtException', (err) => log.fatal({ err }, 'uncaught exception'));
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));

  let url: string;
  try {
    started = daemon.start();
    url = (await started) as string;
  } catch (err) {
    die(startError(config, err));
  }
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- a signal may have come during the await
  if (stopping) return;

  const ready = await notifyReady(`listening on ${url}`);
  if (ready.sent) log.info('told systemd the daemon is ready');
  else if (ready.error)
    log.error({ err: ready.error }, 'could not tell systemd the daemon is ready (systemd-notify failed)');
}

void main();
