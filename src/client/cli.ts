#!/usr/bin/env node
// vdsm-agent-client, in the manner of VDSM's vdsm-client:
//   vdsm-agent-client [--url URL] [--tls-cert F --tls-key F --tls-ca F] Host ping2
//   vdsm-agent-client VM getStats vmID=UUID
// Prints the result as indented JSON; exit 1 on a JSON-RPC error, 2 when it cannot connect.
import { RpcCallError, RpcClient, type ClientTls } from './rpcClient.js';

const USAGE = `usage: vdsm-agent-client [--url URL] [--tls-cert F --tls-key F --tls-ca F] [--timeout S] NAMESPACE METHOD [name=value ...]
  NAMESPACE METHOD    e.g. Host ping2, Host getAllVmStats, VM getStats vmID=UUID, Host getRoute ip=ADDR
  name=value          a named param; a value that parses as JSON (a list, a number) is passed as JSON
  --url URL           default ws://127.0.0.1:54325 (env VDSM_AGENT_URL)`;

function fail(code: number, message: string): never {
  process.stderr.write(`vdsm-agent-client: ${message}\n`);
  process.exit(code);
}

function parseValue(text: string): unknown {
  if (/^[[{]/.test(text) || /^-?\d+(\.\d+)?$/.test(text) || text === 'true' || text === 'false' || text === 'null') {
    try {
      return JSON.parse(text);
    } catch {
      /* keep it a string */
    }
  }
  return text;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  let url = process.env.VDSM_AGENT_URL ?? 'ws://127.0.0.1:54325';
  const tls: Partial<ClientTls> = {};
  let timeoutSeconds = 60;
  const positional: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const value = (): string => {
      const v = args[++i];
      if (v === undefined) fail(2, `${a} needs a value\n${USAGE}`);
      return v;
    };
    if (a === '--help' || a === '-h') {
      process.stdout.write(USAGE + '\n');
      return;
    } else if (a === '--url') url = value();
    else if (a === '--tls-cert') tls.cert = value();
    else if (a === '--tls-key') tls.key = value();
    else if (a === '--tls-ca') tls.ca = value();
    else if (a === '--timeout') {
      timeoutSeconds = Number(value());
      if (!(timeoutSeconds > 0)) fail(2, `--timeout needs a number of seconds above 0`);
    }
    else if (a.startsWith('--')) fail(2, `unknown option ${a}\n${USAGE}`);
    else positional.push(a);
  }
  if (positional.length < 2) fail(2, `expected NAMESPACE METHOD\n${USAGE}`);
  const [namespace, verb, ...rest] = positional as [string, string, ...string[]];
  const params: Record<string, unknown> = {};
  for (const p of rest) {
    const eq = p.indexOf('=');
    if (eq <= 0) fail(2, `param '${p}' must be name=value`);
    params[p.slice(0, eq)] = parseValue(p.slice(eq + 1));
  }
  const tlsGiven = Object.keys(tls).length;
  if (tlsGiven > 0 && tlsGiven < 3) fail(2, '--tls-cert, --tls-key and --tls-ca go together');

  let client: RpcClient;
  try {
    client = await RpcClient.connect(url, { tls: tlsGiven ? (tls as ClientTls) : undefined, timeoutMs: 5000 });
  } catch (err) {
    const why = (err as Error).message;
    // A daemon that refuses our certificate just drops the connection after the handshake.
    const hint = /^wss:/.test(url) && /socket hang up|ECONNRESET|certificate/i.test(why) ? ' (was the client certificate signed by the CA the daemon trusts?)' : '';
    fail(2, `cannot connect to ${url}: ${why}${hint}`);
  }
  const timer = setTimeout(() => fail(2, `no answer from ${url} within ${timeoutSeconds} s`), timeoutSeconds * 1000);
  try {
    const result = await client.call(`${namespace}.${verb}`, params);
    process.stdout.write(JSON.stringify(result, null, 4) + '\n');
    clearTimeout(timer);
    await client.close();
    process.exit(0);
  } catch (err) {
    clearTimeout(timer);
    if (err instanceof RpcCallError) {
      process.stderr.write(`vdsm-agent-client: error ${err.error.code}: ${err.error.message}\n`);
      if (err.error.data !== undefined) process.stderr.write(JSON.stringify(err.error.data) + '\n');
      await client.close();
      process.exit(1);
    }
    fail(2, `lost the connection to ${url}: ${(err as Error).message}`);
  }
}

void main();
