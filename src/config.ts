// Configuration: one table of options drives the command line, the environment and the JSON
// config file, so the three can never disagree. Precedence: flag > env > file > default.
import { readFileSync, existsSync } from 'node:fs';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { BlockList, isIP } from 'node:net';
import { createSecureContext } from 'node:tls';
import type { QgaVia } from './channels/guestChannels.js';
import type { LogFormat, LogLevel } from './log.js';
import type { RouteLookupMode } from './route/routeLookup.js';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

interface ListenAddress {
  host: string;
  port: number;
}

interface TlsFiles {
  cert: Buffer;
  key: Buffer;
  ca: Buffer;
  paths: { cert: string; key: string; ca: string };
}

export interface Config {
  listen: ListenAddress;
  channelsDir: string;
  configFile: string | null;
  tls: TlsFiles | null;
  insecure: boolean;
  qgaPollIntervalMs: number;
  qgaTimeoutMs: number;
  agentSilenceTimeoutMs: number;
  qgaVia: QgaVia;
  libvirtUri: string;
  routeLookup: RouteLookupMode;
  logLevel: LogLevel;
  logFormat: LogFormat;
  maxFrameBytes: number;
  maxBatch: number;
  maxInFlight: number;
  maxConnections: number;
  allowedOrigins: string[];
  maxSubscriberBufferBytes: number;
  maxEventsBufferBytes: number;
  subscriberDrainTimeoutMs: number;
  shutdownTimeoutMs: number;
  handshakeTimeoutMs: number;
  routeTimeoutMs: number;
}

type Kind = 'string' | 'boolean' | 'int' | 'number' | 'list';

interface OptionDef {
  flag: string; // also the config-file key
  kind: Kind;
  default: string | boolean | number | string[] | null;
  help: string;
  /** Numbers only: the accepted range, inclusive. Past it a limit no longer protects anything. */
  min?: number;
  max?: number;
}

export const DEFAULT_CONFIG_FILE = '/etc/vdsm-agentd/config.json';
const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** The option table. The README's flags table is generated from the same entries (`--help`). */
export const OPTIONS: readonly OptionDef[] = [
  {
    flag: 'listen',
    kind: 'string',
    default: '127.0.0.1:54325',
    help: 'listen address HOST:PORT ([::1]:PORT for IPv6; port 0 picks a free port)',
  },
  {
    flag: 'channels-dir',
    kind: 'string',
    default: '/var/lib/libvirt/qemu/channels',
    help: "directory of the VMs' guest-agent channel sockets",
  },
  {
    flag: 'config',
    kind: 'string',
    default: null,
    help: `JSON config file (default ${DEFAULT_CONFIG_FILE} if present)`,
  },
  {
    flag: 'tls-cert',
    kind: 'string',
    default: null,
    help: 'server certificate (PEM); with --tls-key and --tls-ca serves wss:// with mutual TLS',
  },
  { flag: 'tls-key', kind: 'string', default: null, help: 'server private key (PEM)' },
  { flag: 'tls-ca', kind: 'string', default: null, help: 'CA (PEM) that must have signed client certificates' },
  { flag: 'insecure', kind: 'boolean', default: false, help: 'allow plain ws:// on a non-loopback address' },
  {
    flag: 'qga-poll-interval',
    kind: 'number',
    default: 5,
    help: 'seconds between polls of the QEMU guest agent',
    min: 0.05,
    max: 3600,
  },
  {
    flag: 'qga-timeout',
    kind: 'number',
    default: 5,
    help: 'seconds a qemu-ga command may take before the agent counts as unresponsive',
    min: 0.05,
    max: 600,
  },
  {
    flag: 'agent-silence-timeout',
    kind: 'number',
    default: 120,
    help: 'seconds without a message before an oVirt guest agent counts as unresponsive',
    min: 0.1,
    max: 86_400,
  },
  { flag: 'qga-via', kind: 'string', default: 'auto', help: 'reach qemu-ga: auto | direct | libvirt' },
  {
    flag: 'libvirt-uri',
    kind: 'string',
    default: 'qemu:///system',
    help: 'libvirt connection used with --qga-via libvirt',
  },
  {
    flag: 'route-lookup',
    kind: 'string',
    default: 'netlink',
    help: 'Host.getRoute asks the kernel over: netlink (falls back to ip when netlink fails) | ip (always `ip route get`)',
  },
  { flag: 'log-level', kind: 'string', default: 'info', help: 'fatal | error | warn | info | debug | trace | silent' },
  {
    flag: 'log-format',
    kind: 'string',
    default: 'auto',
    help: 'json (one JSON object a line) | text (pino-pretty, for a person) | auto (text on a terminal, json otherwise)',
  },
  {
    flag: 'max-frame-bytes',
    kind: 'int',
    default: 1_048_576,
    help: 'largest WebSocket message accepted (larger: close 1009)',
    min: 4096,
    max: 64 * 1_048_576,
  },
  { flag: 'max-batch', kind: 'int', default: 100, help: 'most requests in one JSON-RPC batch', min: 1, max: 10_000 },
  {
    flag: 'max-in-flight',
    kind: 'int',
    default: 256,
    help: 'most unanswered requests per connection: at the limit the daemon stops reading from it until answers have gone out; a batch longer than this: error -32000 Server busy',
    min: 1,
    max: 10_000,
  },
  {
    flag: 'max-connections',
    kind: 'int',
    default: 1000,
    help: 'most concurrent client connections',
    min: 1,
    max: 10_000,
  },
  {
    flag: 'allowed-origins',
    kind: 'list',
    default: [],
    help: 'Origin header values allowed to connect (comma-separated; an array in the config file); requests with any other Origin are refused',
  },
  {
    flag: 'max-subscriber-buffer-bytes',
    kind: 'int',
    default: 8 * 1_048_576,
    help: 'an event subscriber whose unsent output passes this is disconnected',
    min: 65_536,
    max: 256 * 1_048_576,
  },
  {
    flag: 'max-events-buffer-bytes',
    kind: 'int',
    default: 32 * 1_048_576,
    help: 'unsent event bytes allowed across all subscribers together; past it the subscribers holding most are disconnected (close 1008)',
    min: 1_048_576,
    max: 1024 * 1_048_576,
  },
  {
    flag: 'subscriber-drain-timeout',
    kind: 'number',
    default: 5,
    help: 'seconds an event subscriber may hold unsent events without catching up before it is disconnected (close 1008)',
    min: 0.5,
    max: 300,
  },
  {
    flag: 'shutdown-timeout',
    kind: 'number',
    default: 5,
    help: 'on SIGTERM/SIGINT, seconds allowed for answering in-flight requests and closing connections',
    min: 0,
    max: 300,
  },
  {
    flag: 'route-timeout',
    kind: 'number',
    default: 2,
    help: 'seconds a route lookup over netlink may take before it is retried with `ip route get`',
    min: 0.05,
    max: 60,
  },
  {
    flag: 'handshake-timeout',
    kind: 'number',
    default: 10,
    help: 'seconds a new connection has for its TLS handshake, its first bytes (HTTP or STOMP) and its WebSocket upgrade request; slower ones are closed',
    min: 0.1,
    max: 600,
  },
];

const BY_FLAG = new Map(OPTIONS.map((o) => [o.flag, o]));

const ENV_PREFIX = 'VDSM_AGENTD_';

export function envName(flag: string): string {
  return ENV_PREFIX + flag.toUpperCase().replace(/-/g, '_');
}

type Raw = Map<string, unknown>;

/** Parses argv (without node and script). Throws ConfigError naming the problem. */
export function parseArgs(argv: readonly string[]): {
  values: Raw;
  help: boolean;
  helpMarkdown: boolean;
  version: boolean;
} {
  const values: Raw = new Map();
  let help = false;
  let helpMarkdown = false;
  let version = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--help' || arg === '-h') {
      help = true;
      continue;
    }
    if (arg === '--version') {
      version = true;
      continue;
    }
    if (arg === '--help-markdown') {
      helpMarkdown = true;
      continue;
    }
    if (!arg.startsWith('--')) throw new ConfigError(`unexpected argument '${arg}'`);
    const eq = arg.indexOf('=');
    const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    const opt = BY_FLAG.get(name);
    if (!opt) throw new ConfigError(`unknown flag '--${name}' (see --help)`);
    if (opt.kind === 'boolean') {
      values.set(name, eq === -1 ? true : parseValue(opt, arg.slice(eq + 1), `--${name}`));
      continue;
    }
    let text: string;
    if (eq !== -1) text = arg.slice(eq + 1);
    else {
      const next = argv[i + 1];
      if (next === undefined) throw new ConfigError(`flag '--${name}' needs a value`);
      text = next;
      i++;
    }
    values.set(name, parseValue(opt, text, `--${name}`));
  }
  return { values, help, helpMarkdown, version };
}

function parseValue(opt: OptionDef, text: string, where: string): unknown {
  switch (opt.kind) {
    case 'string':
      return text;
    case 'boolean':
      if (/^(1|true|yes|on)$/i.test(text)) return true;
      if (/^(0|false|no|off|)$/i.test(text)) return false;
      throw new ConfigError(`${where}: expected true or false, got '${text}'`);
    case 'int': {
      if (!/^\d+$/.test(text.trim())) throw new ConfigError(`${where}: expected a whole number, got '${text}'`);
      return Number(text);
    }
    case 'number': {
      const n = Number(text);
      if (text.trim() === '' || !Number.isFinite(n))
        throw new ConfigError(`${where}: expected a number, got '${text}'`);
      return n;
    }
    case 'list':
      return text
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');
  }
}

function fromEnv(env: NodeJS.ProcessEnv): Raw {
  const values: Raw = new Map();
  // A misspelt variable in a unit's Environment= would otherwise be ignored without a word.
  const known = new Set(OPTIONS.map((o) => envName(o.flag)));
  for (const name of Object.keys(env)) {
    if (name.startsWith(ENV_PREFIX) && !known.has(name))
      throw new ConfigError(`unknown environment variable ${name} (see --help)`);
  }
  for (const opt of OPTIONS) {
    if (opt.flag === 'config') continue; // the file is chosen by flag or env below
    const text = env[envName(opt.flag)];
    if (text !== undefined && text !== '') values.set(opt.flag, parseValue(opt, text, envName(opt.flag)));
  }
  return values;
}

function fromFile(path: string): Raw {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  return parseConfigText(text, path);
}

/** The config file's text -> its values by option, checked for type (pure: the fuzz target). Throws ConfigError. */
export function parseConfigText(text: string, path: string): Map<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid JSON: ${(err as Error).message}`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new ConfigError(`config file ${path} must hold a JSON object`);
  }
  const values: Raw = new Map();
  for (const [key, value] of Object.entries(json)) {
    const opt = BY_FLAG.get(key);
    if (!opt || key === 'config') throw new ConfigError(`config file ${path}: unknown key '${key}'`);
    values.set(key, checkFileValue(opt, value, `config file ${path}: key '${key}'`));
  }
  return values;
}

function checkFileValue(opt: OptionDef, value: unknown, where: string): unknown {
  switch (opt.kind) {
    case 'string':
      if (typeof value === 'string') return value;
      break;
    case 'boolean':
      if (typeof value === 'boolean') return value;
      break;
    case 'int':
      if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return value;
      break;
    case 'number':
      if (typeof value === 'number' && Number.isFinite(value)) return value;
      break;
    case 'list':
      if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return value;
      break;
  }
  const expected = {
    string: 'a string',
    boolean: 'true or false',
    int: 'a whole number',
    number: 'a number',
    list: 'an array of strings',
  }[opt.kind];
  throw new ConfigError(`${where}: expected ${expected}, got ${JSON.stringify(value)}`);
}

/** `A–B`, for --help and the README. */
function rangeText(opt: OptionDef): string | null {
  if (opt.min === undefined || opt.max === undefined) return null;
  return `${opt.min}–${opt.max}`;
}

function checkRange(opt: OptionDef, n: number): void {
  const { min = -Infinity, max = Infinity } = opt;
  if (n >= min && n <= max) return;
  const what = opt.kind === 'int' ? 'a whole number' : 'seconds'; // every 'number' option counts seconds
  throw new ConfigError(`--${opt.flag}: expected ${what} between ${opt.min} and ${opt.max}, got ${n}`);
}

function parseListen(text: string): ListenAddress {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:[\]]+):(\d+)$/.exec(text);
  if (!m) throw new ConfigError(`--listen: expected HOST:PORT or [IPv6]:PORT, got '${text}'`);
  const host = m[1]!;
  const port = Number(m[2]);
  if (port > 65535) throw new ConfigError(`--listen: port ${port} is out of range`);
  if (text.startsWith('[') && isIP(host) !== 6) throw new ConfigError(`--listen: '${host}' is not an IPv6 address`);
  return { host, port };
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');
LOOPBACK.addSubnet('::ffff:127.0.0.0', 104, 'ipv6');

function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  const family = isIP(host);
  return family !== 0 && LOOPBACK.check(host, family === 4 ? 'ipv4' : 'ipv6');
}

/** The file's bytes, or an error naming it (and what it should be) with the reason, e.g. ENOENT. */
export function readTlsFile(path: string, what?: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConfigError(
      `cannot read ${what ? `${what} ` : ''}${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
      { cause: err },
    );
  }
}

/**
 * Reads and checks the three TLS files now, so a wrong file is a start-up error naming that
 * file rather than a failure at the first client's handshake.
 */
function loadTls(paths: TlsFiles['paths']): TlsFiles {
  const cert = readTlsFile(paths.cert, 'TLS certificate');
  const key = readTlsFile(paths.key, 'TLS key');
  const ca = readTlsFile(paths.ca, 'TLS CA');
  const check = (what: string, path: string, parse: () => unknown): void => {
    try {
      parse();
    } catch {
      throw new ConfigError(`${what} ${path} does not hold a PEM ${what.replace(/^TLS /, '')}`);
    }
  };
  check('TLS certificate', paths.cert, () => new X509Certificate(cert));
  check('TLS key', paths.key, () => createPrivateKey(key));
  check('TLS CA', paths.ca, () => new X509Certificate(ca));
  try {
    createSecureContext({ cert, key, ca });
  } catch (err) {
    const why = /key values mismatch/i.test((err as Error).message) ? 'does not match' : 'cannot be used with';
    throw new ConfigError(`TLS key ${paths.key} ${why} certificate ${paths.cert}`);
  }
  return { cert, key, ca, paths };
}

/** Everything from argv, env and file, merged and validated. Throws ConfigError. */
export function loadConfig(
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
  defaultConfigFile: string = DEFAULT_CONFIG_FILE,
): Config {
  const cli = parseArgs(argv).values;
  const envValues = fromEnv(env);
  const explicitFile = (cli.get('config') as string | undefined) ?? env[envName('config')];
  let configFile: string | null = null;
  let fileValues: Raw = new Map();
  if (explicitFile !== undefined && explicitFile !== '') {
    configFile = explicitFile;
    fileValues = fromFile(explicitFile);
  } else if (existsSync(defaultConfigFile)) {
    configFile = defaultConfigFile;
    fileValues = fromFile(defaultConfigFile);
  }
  const get = (flag: string): unknown => {
    if (cli.has(flag)) return cli.get(flag);
    if (envValues.has(flag)) return envValues.get(flag);
    if (fileValues.has(flag)) return fileValues.get(flag);
    return BY_FLAG.get(flag)!.default;
  };

  const listen = parseListen(get('listen') as string);
  const insecure = get('insecure') as boolean;

  const certPath = get('tls-cert') as string | null;
  const keyPath = get('tls-key') as string | null;
  const caPath = get('tls-ca') as string | null;
  let tls: TlsFiles | null = null;
  const given = [certPath, keyPath, caPath].filter((p) => p !== null && p !== '').length;
  if (given > 0 && given < 3) throw new ConfigError('--tls-cert, --tls-key and --tls-ca must be given together');
  if (given === 3) tls = loadTls({ cert: certPath!, key: keyPath!, ca: caPath! });
  if (!tls && !insecure && !isLoopbackHost(listen.host)) {
    throw new ConfigError(
      `refusing plain ws:// on non-loopback address ${listen.host}: give --tls-cert/--tls-key/--tls-ca, or --insecure`,
    );
  }

  // Every number within its option's range, whichever source gave it.
  for (const opt of OPTIONS) if (opt.kind === 'int' || opt.kind === 'number') checkRange(opt, get(opt.flag) as number);
  const num = (flag: string): number => get(flag) as number;
  const seconds = (flag: string): number => Math.round(num(flag) * 1000);
  const qgaVia = get('qga-via') as string;
  if (qgaVia !== 'auto' && qgaVia !== 'direct' && qgaVia !== 'libvirt') {
    throw new ConfigError(`--qga-via: expected auto, direct or libvirt, got '${qgaVia}'`);
  }
  const routeLookup = get('route-lookup') as string;
  if (routeLookup !== 'netlink' && routeLookup !== 'ip') {
    throw new ConfigError(`--route-lookup: expected netlink or ip, got '${routeLookup}'`);
  }
  const logLevel = get('log-level') as string;
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new ConfigError(`--log-level: expected one of ${LOG_LEVELS.join(', ')}, got '${logLevel}'`);
  }
  const logFormat = get('log-format') as string;
  if (logFormat !== 'json' && logFormat !== 'text' && logFormat !== 'auto') {
    throw new ConfigError(`--log-format: expected json, text or auto, got '${logFormat}'`);
  }
  const channelsDir = get('channels-dir') as string;
  if (channelsDir === '') throw new ConfigError('--channels-dir: must not be empty');

  return {
    listen,
    channelsDir,
    configFile,
    tls,
    insecure,
    qgaPollIntervalMs: seconds('qga-poll-interval'),
    qgaTimeoutMs: seconds('qga-timeout'),
    agentSilenceTimeoutMs: seconds('agent-silence-timeout'),
    qgaVia,
    libvirtUri: get('libvirt-uri') as string,
    routeLookup,
    logLevel: logLevel as LogLevel,
    logFormat,
    maxFrameBytes: num('max-frame-bytes'),
    maxBatch: num('max-batch'),
    maxInFlight: num('max-in-flight'),
    maxConnections: num('max-connections'),
    allowedOrigins: get('allowed-origins') as string[],
    maxSubscriberBufferBytes: num('max-subscriber-buffer-bytes'),
    maxEventsBufferBytes: num('max-events-buffer-bytes'),
    subscriberDrainTimeoutMs: seconds('subscriber-drain-timeout'),
    shutdownTimeoutMs: seconds('shutdown-timeout'),
    handshakeTimeoutMs: seconds('handshake-timeout'),
    routeTimeoutMs: seconds('route-timeout'),
  };
}

function defaultText(o: OptionDef): string | null {
  if (o.default === null) return null;
  if (Array.isArray(o.default)) return o.default.join(',') || 'none';
  return String(o.default);
}

export function usage(): string {
  const lines = [
    'usage: vdsm-agentd [--flag value ...]',
    '',
    'Each flag is also an environment variable (VDSM_AGENTD_<FLAG>) and a config-file key.',
    'Precedence: flag > environment > config file > default.',
    '',
  ];
  const flagText = (o: OptionDef): string => `  --${o.flag}${o.kind === 'boolean' ? '' : ' VALUE'}`;
  const width = Math.max(...OPTIONS.map((o) => flagText(o).length)) + 2;
  for (const o of OPTIONS) {
    const def = defaultText(o);
    const range = rangeText(o);
    const notes = [def === null ? null : `default: ${def}`, range === null ? null : `range: ${range}`].filter(
      (n) => n !== null,
    );
    lines.push(flagText(o).padEnd(width) + o.help + (notes.length ? ` (${notes.join('; ')})` : ''));
  }
  lines.push('', '  --help, --version, --help-markdown (the table above as Markdown, for the README)');
  return lines.join('\n');
}

const KIND_TEXT: Record<Kind, string> = {
  string: 'string',
  boolean: 'boolean',
  int: 'integer',
  number: 'number',
  list: 'list of strings',
};

/** The flags table of the README, generated from OPTIONS so the two cannot drift apart. */
export function optionsMarkdown(): string {
  const rows = ['| flag | environment | config key (type) | default | meaning |', '|---|---|---|---|---|'];
  for (const o of OPTIONS) {
    const def = defaultText(o);
    const key = o.flag === 'config' ? '(flag or env only)' : `\`${o.flag}\` (${KIND_TEXT[o.kind]})`;
    const cell = (t: string): string => t.replace(/\|/g, '\\|');
    const range = rangeText(o);
    rows.push(
      `| \`--${o.flag}${o.kind === 'boolean' ? '' : ' VALUE'}\` | \`${envName(o.flag)}\` | ${key} | ${def === null ? '' : `\`${def}\``} | ${cell(o.help)}${range === null ? '' : ` (range ${range})`} |`,
    );
  }
  return rows.join('\n');
}

/** Each Config field under the flag an administrator knows it by (for reload messages). */
const FIELD_FLAGS: Record<keyof Config, string> = {
  listen: 'listen',
  channelsDir: 'channels-dir',
  configFile: 'config',
  tls: 'tls-cert/tls-key/tls-ca',
  insecure: 'insecure',
  qgaPollIntervalMs: 'qga-poll-interval',
  qgaTimeoutMs: 'qga-timeout',
  agentSilenceTimeoutMs: 'agent-silence-timeout',
  qgaVia: 'qga-via',
  libvirtUri: 'libvirt-uri',
  routeLookup: 'route-lookup',
  routeTimeoutMs: 'route-timeout',
  handshakeTimeoutMs: 'handshake-timeout',
  logLevel: 'log-level',
  logFormat: 'log-format',
  maxFrameBytes: 'max-frame-bytes',
  maxBatch: 'max-batch',
  maxInFlight: 'max-in-flight',
  maxConnections: 'max-connections',
  allowedOrigins: 'allowed-origins',
  maxSubscriberBufferBytes: 'max-subscriber-buffer-bytes',
  maxEventsBufferBytes: 'max-events-buffer-bytes',
  subscriberDrainTimeoutMs: 'subscriber-drain-timeout',
  shutdownTimeoutMs: 'shutdown-timeout',
};

export interface ReloadPlan {
  /** The new level, when it changed. */
  logLevel: LogLevel | null;
  /** New TLS files (same or other paths, new contents) for connections from now on. */
  tls: TlsFiles | null;
  /** Flags whose new value only a restart can apply. */
  restart: string[];
}

function sameTls(a: TlsFiles, b: TlsFiles): boolean {
  return (
    a.cert.equals(b.cert) &&
    a.key.equals(b.key) &&
    a.ca.equals(b.ca) &&
    JSON.stringify(a.paths) === JSON.stringify(b.paths)
  );
}

/**
 * What a SIGHUP can change in place: the log level, and the TLS files while TLS stays on (an
 * engine re-enrolling the host's certificate). Everything else (the port, TLS switched on or
 * off, the channels directory, limits) is reported as needing a restart.
 */
export function planReload(running: Config, next: Config): ReloadPlan {
  const plan: ReloadPlan = { logLevel: null, tls: null, restart: [] };
  for (const field of Object.keys(FIELD_FLAGS) as (keyof Config)[]) {
    if (field === 'logLevel') {
      if (next.logLevel !== running.logLevel) plan.logLevel = next.logLevel;
    } else if (field === 'tls') {
      if (running.tls && next.tls) {
        if (!sameTls(running.tls, next.tls)) plan.tls = next.tls;
      } else if (running.tls !== next.tls) plan.restart.push(FIELD_FLAGS.tls);
    } else if (JSON.stringify(running[field]) !== JSON.stringify(next[field])) {
      plan.restart.push(FIELD_FLAGS[field]);
    }
  }
  return plan;
}
