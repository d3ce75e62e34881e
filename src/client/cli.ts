#!/usr/bin/env node
// vdsm-agent-client: views for people (vms, nics, events, route) and, in the manner of VDSM's
// vdsm-client, any method by NAMESPACE METHOD name=value. `--help` lists views, options, TLS
// defaults and exit codes; `Host -h` and `Host getRoute -h` read the daemon's method table.
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import type { Route } from '../wire.js';
import { ConnectError, DEFAULT_PKI_DIR, UsageError, connectClient } from './connect.js';
import { followEvents } from './follow.js';
import { EXIT, VIEWS, knownNamespaces, methodHelp, namespaceHelp, usage, viewHelp } from './help.js';
import { RpcCallError, type RpcClient } from './rpcClient.js';
import { eventLine, nicsTable, routeText, vmsTable, type VmStatsView } from './views.js';

const NAME = 'vdsm-agent-client';

function fail(code: number, message: string): never {
  process.stderr.write(`${NAME}: ${message}\n`);
  process.exit(code);
}

function parseValue(text: string): unknown {
  if (/^[[{]/.test(text) || /^-?\d+(\.\d+)?$/.test(text) || text === 'true' || text === 'false' || text === 'null') {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      /* keep it a string */
    }
  }
  return text;
}

function parseCommandLine(argv: string[]): ReturnType<typeof parse> {
  try {
    return parse(argv);
  } catch (err) {
    // util.parseArgs' messages name the option; the hint says where the list is.
    fail(EXIT.usage, `${(err as Error).message.split(/\.( |$)/)[0] ?? ''} (see ${NAME} --help)`);
  }
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      url: { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'tls-ca': { type: 'string' },
      timeout: { type: 'string' },
      json: { type: 'boolean' },
      table: { type: 'boolean' },
      prefix: { type: 'string', multiple: true },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean', short: 'V' },
    },
  });
}

interface Run {
  url: string;
  timeoutMs: number;
  json: boolean;
  connect: () => Promise<RpcClient>;
}

async function main(): Promise<void> {
  const { values, positionals } = parseCommandLine(process.argv.slice(2));
  if (values.version) {
    const pkg = createRequire(import.meta.url)('../../package.json') as { version: string };
    process.stdout.write(`${NAME} ${pkg.version}\n`);
    return;
  }
  const [first, second] = positionals;
  if (values.help) {
    process.stdout.write(helpFor(first, second));
    return;
  }
  if (first === undefined)
    fail(EXIT.usage, `expected a view (${Object.keys(VIEWS).join(', ')}) or NAMESPACE METHOD (see ${NAME} --help)`);
  if (values.json && values.table) fail(EXIT.usage, '--json and --table exclude each other');
  const timeoutSeconds = values.timeout === undefined ? 60 : Number(values.timeout);
  if (!(timeoutSeconds > 0))
    fail(EXIT.usage, `--timeout needs a number of seconds above 0, got '${values.timeout ?? ''}'`);
  const url = values.url ?? process.env.VDSM_AGENT_URL ?? 'ws://127.0.0.1:54325';
  const tls = { cert: values['tls-cert'], key: values['tls-key'], ca: values['tls-ca'] };
  const run: Run = {
    url,
    timeoutMs: timeoutSeconds * 1000,
    json: values.json ?? (values.table ? false : !process.stdout.isTTY),
    connect: () =>
      connectClient({
        url,
        tls,
        timeoutMs: Math.min(timeoutSeconds * 1000, 30_000),
        pkiDir: process.env.VDSM_AGENT_PKI_DIR ?? DEFAULT_PKI_DIR,
      }),
  };
  const rest = positionals.slice(1);
  if (values.prefix && first !== 'events') fail(EXIT.usage, '--prefix goes with the events view');
  switch (first) {
    case 'vms':
      return expectArgs(first, rest, 0, () =>
        callView(run, 'Host.getAllVmStats', {}, (r) => vmsTable(r as VmStatsView[])),
      );
    case 'nics':
      return expectArgs(first, rest, 1, () => nics(run, rest[0] ?? ''));
    case 'route':
      return expectArgs(first, rest, 1, () =>
        callView(run, 'Host.getRoute', { ip: rest[0] }, (r) => routeText(rest[0] ?? '', r as Route)),
      );
    case 'events':
      return expectArgs(first, rest, 0, () => events(run, values.prefix ?? null));
    default:
      break;
  }
  if (second === undefined) {
    const hint = knownNamespaces().includes(first)
      ? `${first} -h lists its methods`
      : `views are ${Object.keys(VIEWS).join(', ')}`;
    fail(EXIT.usage, `expected NAMESPACE METHOD after '${first}' (${hint})`);
  }
  const params: Record<string, unknown> = {};
  for (const p of positionals.slice(2)) {
    const eq = p.indexOf('=');
    if (eq <= 0) fail(EXIT.usage, `param '${p}' must be name=value (see ${NAME} ${first} ${second} -h)`);
    params[p.slice(0, eq)] = parseValue(p.slice(eq + 1));
  }
  // Raw calls print JSON always: that is what scripts parse.
  await callView(run, `${first}.${second}`, params, (r) => JSON.stringify(r, null, 4) + '\n', true);
}

function helpFor(first: string | undefined, second: string | undefined): string {
  if (first === undefined) return usage();
  if (Object.prototype.hasOwnProperty.call(VIEWS, first)) return viewHelp(first);
  if (second === undefined) {
    return (
      namespaceHelp(first) ??
      fail(
        EXIT.usage,
        `no view or namespace '${first}': views are ${Object.keys(VIEWS).join(', ')}; namespaces ${knownNamespaces().join(', ')}`,
      )
    );
  }
  return methodHelp(first, second) ?? fail(EXIT.usage, `no method ${first}.${second} (${first} -h lists them)`);
}

async function expectArgs(view: string, rest: string[], n: number, go: () => Promise<void>): Promise<void> {
  if (rest.length !== n)
    fail(
      EXIT.usage,
      `${view} takes ${n === 0 ? 'no arguments' : (VIEWS[view]?.args ?? '')}, got ${rest.length ? rest.map((a) => `'${a}'`).join(' ') : 'none'}`,
    );
  await go();
}

async function connectOrExit(run: Run): Promise<RpcClient> {
  try {
    return await run.connect();
  } catch (err) {
    if (err instanceof UsageError) fail(EXIT.usage, err.message);
    if (err instanceof ConnectError) fail(EXIT.unreachable, err.message);
    fail(EXIT.unreachable, `cannot connect to ${run.url}: ${(err as Error).message}`);
  }
}

async function call(run: Run, client: RpcClient, method: string, params: unknown): Promise<unknown> {
  const timer = setTimeout(
    () => fail(EXIT.unreachable, `no answer from ${run.url} within ${run.timeoutMs / 1000} s`),
    run.timeoutMs,
  );
  try {
    return await client.call(method, params);
  } catch (err) {
    if (err instanceof RpcCallError) {
      process.stderr.write(`${NAME}: error ${err.error.code}: ${err.error.message}\n`);
      if (err.error.data !== undefined) process.stderr.write(JSON.stringify(err.error.data) + '\n');
      await client.close();
      process.exit(EXIT.rpcError);
    }
    fail(EXIT.unreachable, `lost the connection to ${run.url}: ${(err as Error).message}`);
  } finally {
    clearTimeout(timer);
  }
}

async function callView(
  run: Run,
  method: string,
  params: unknown,
  render: (result: unknown) => string,
  alwaysJson = false,
): Promise<void> {
  const client = await connectOrExit(run);
  const result = await call(run, client, method, params);
  process.stdout.write(run.json || alwaysJson ? JSON.stringify(result, null, 4) + '\n' : render(result));
  await client.close();
  process.exit(EXIT.ok);
}

async function nics(run: Run, idOrPrefix: string): Promise<void> {
  const client = await connectOrExit(run);
  const all = (await call(run, client, 'Host.getAllVmStats', {})) as VmStatsView[];
  const wanted = idOrPrefix.toLowerCase();
  const matches = all.filter((v) => v.vmId.startsWith(wanted));
  if (matches.length !== 1) {
    await client.close();
    const why =
      matches.length === 0
        ? 'no VM known to the daemon'
        : `${matches.length} VMs (${matches.map((v) => v.vmId).join(', ')})`;
    fail(EXIT.rpcError, `'${idOrPrefix}' matches ${why}`);
  }
  const [stats] = matches as [VmStatsView];
  process.stdout.write(run.json ? JSON.stringify(stats, null, 4) + '\n' : nicsTable(stats));
  await client.close();
  process.exit(EXIT.ok);
}

async function events(run: Run, prefixes: string[] | null): Promise<never> {
  const stop = (): never => process.exit(EXIT.ok);
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  await followEvents({
    connect: run.connect,
    prefixes,
    onEvent: (method, params) => {
      process.stdout.write(
        run.json ? JSON.stringify({ method, params }) + '\n' : eventLine(method, params, new Date()),
      );
    },
    onStatus: (text) => process.stderr.write(`${NAME}: ${text}\n`),
    onFirstFailure: (err) => {
      if (err instanceof UsageError) fail(EXIT.usage, err.message);
      if (err instanceof RpcCallError) fail(EXIT.rpcError, `error ${err.error.code}: ${err.error.message}`);
      fail(EXIT.unreachable, err.message);
    },
  });
  return stop();
}

void main();
