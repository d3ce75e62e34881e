// Help texts: general usage, a namespace's methods, one method's params. Methods and params come
// from the daemon's own method table (src/rpc/methodTable.ts), so no daemon is needed to read them.
import { methodTable, type MethodInfo } from '../rpc/methodTable.js';
import { DEFAULT_PKI_DIR, DEFAULT_TLS_FILES } from './connect.js';

export const EXIT = {
  ok: 0,
  /** The daemon answered with a JSON-RPC error. */
  rpcError: 1,
  /** The command line is wrong. */
  usage: 2,
  /** No answer: cannot connect, TLS refused, connection lost, timeout. */
  unreachable: 3,
} as const;

export const VIEWS: Readonly<Record<string, { args: string; summary: string; detail: string }>> = {
  vms: {
    args: '',
    summary: 'one line per VM: id, name, status, guest agent status, IPv4 addresses',
    detail: `IDs are cut to 8 characters; \`nics\` takes any unique prefix. --json prints Host.getAllVmStats as is.`,
  },
  nics: {
    args: 'VMID',
    summary: "the guest's interfaces beside the host's vNICs, joined by MAC",
    detail: `VMID may be a unique prefix of the VM's id. Addresses are listed under each interface. A guest MAC
that matches no vNIC of the VM and a vNIC the guest does not report are marked with "!".
The host side comes from VmStats' "network" field; a daemon without it shows the guest side only.`,
  },
  events: {
    args: '[--prefix P]...',
    summary: 'follows events live, one line each, until Ctrl-C; reconnects',
    detail: `--prefix P   only events whose name starts with P (repeatable), e.g. --prefix '|virt|VM_status|'
With --json, one JSON object per line: {"method": ..., "params": ...}.
Connection changes are said on stderr; the exit status is 0 after Ctrl-C.`,
  },
  route: {
    args: 'ADDR',
    summary: 'which host device the kernel routes ADDR through (Host.getRoute)',
    detail: `Printed in the manner of \`ip route get\`; --json prints the daemon's answer as is.`,
  },
};

function namespaces(table: readonly MethodInfo[]): string[] {
  return [...new Set(table.map((m) => m.name.split('.')[0] ?? ''))];
}

function paramsSynopsis(m: MethodInfo): string {
  return m.params.map((p) => (p.required ? `${p.name}=${p.placeholder}` : `[${p.name}=${p.placeholder}]`)).join(' ');
}

export function usage(): string {
  const table = methodTable();
  const views = Object.entries(VIEWS)
    .map(([name, v]) => `  ${`${name} ${v.args}`.trimEnd()}\n      ${v.summary}`)
    .join('\n');
  return `usage: vdsm-agent-client [OPTIONS] VIEW [ARGS]
       vdsm-agent-client [OPTIONS] NAMESPACE METHOD [name=value ...]

Views (tables for people on a terminal; JSON when stdout is not a terminal):
${views}

Methods, as VDSM's vdsm-client (NAMESPACE: ${namespaces(table).join(' or ')}); prints JSON.
  A value that looks like JSON (a list, an object, a number, true) goes as JSON.
  vdsm-agent-client Host -h            the methods of Host
  vdsm-agent-client Host getRoute -h   one method's params

Options (--flag=value and --flag value alike):
  --url URL         the daemon, ws://HOST:PORT or wss://HOST:PORT
                    (default $VDSM_AGENT_URL, else ws://127.0.0.1:54325)
  --tls-cert FILE   client certificate (PEM) for wss://
  --tls-key FILE    its private key (PEM)
  --tls-ca FILE     CA that signed the daemon's certificate
  --timeout S       seconds to wait for the connection and each answer (60)
  --json            print JSON (the default when stdout is not a terminal)
  --table           print tables (the default on a terminal)
  -h, --help        this help; after a view, NAMESPACE or METHOD: its help
  -V, --version     the client's version

TLS files for wss:// that no flag gives are looked up under ${DEFAULT_PKI_DIR}
($VDSM_AGENT_PKI_DIR overrides): ${DEFAULT_TLS_FILES.cert[0]} and ${DEFAULT_TLS_FILES.key[0]}, else the
host's ${DEFAULT_TLS_FILES.cert[1]} and ${DEFAULT_TLS_FILES.key[1]}; CA ${DEFAULT_TLS_FILES.ca[0]}.

Exit status:
  ${EXIT.ok}  success
  ${EXIT.rpcError}  the daemon answered with an error ("error CODE: MESSAGE" on stderr),
     or nics: no single VM matches VMID
  ${EXIT.usage}  usage error (unknown option, missing argument, unreadable TLS file)
  ${EXIT.unreachable}  no answer: cannot connect, TLS refused, connection lost, --timeout passed
`;
}

export function viewHelp(name: string): string {
  const v = VIEWS[name];
  if (!v) return usage();
  return `usage: vdsm-agent-client [OPTIONS] ${`${name} ${v.args}`.trimEnd()}\n  ${v.summary}\n\n${v.detail}\n`;
}

/** Help for `NAMESPACE -h`, or null when the table has no such namespace. */
export function namespaceHelp(namespace: string): string | null {
  const methods = methodTable().filter((m) => m.name.startsWith(`${namespace}.`));
  if (methods.length === 0) return null;
  const lines = methods.map((m) => {
    const verb = m.name.slice(namespace.length + 1);
    return `  ${`${verb} ${paramsSynopsis(m)}`.trimEnd()}\n      ${m.summary}`;
  });
  return `usage: vdsm-agent-client [OPTIONS] ${namespace} METHOD [name=value ...]\n\nMethods of ${namespace}:\n${lines.join('\n')}\n`;
}

/** Help for `NAMESPACE METHOD -h`, or null when the table has no such method. */
export function methodHelp(namespace: string, verb: string): string | null {
  const m = methodTable().find((x) => x.name === `${namespace}.${verb}`);
  if (!m) return null;
  const params = m.params.length
    ? m.params
        .map((p) => wrap(`  ${p.name.padEnd(10)} ${p.required ? 'required' : 'optional'}  ${p.type}`, 23))
        .join('\n')
    : '  (none)';
  const aliases = m.aliases.length ? `\nAlso known to the daemon as: ${m.aliases.join(', ')}\n` : '';
  return `usage: vdsm-agent-client [OPTIONS] ${`${namespace} ${verb} ${paramsSynopsis(m)}`.trimEnd()}\n  ${m.summary}\n\nParams:\n${params}\n${aliases}`;
}

/** Wraps a line at spaces to 80 columns, continuation lines indented by `indent`. */
function wrap(line: string, indent: number): string {
  const out: string[] = [];
  let rest = line;
  while (rest.length > 80) {
    const at = rest.lastIndexOf(' ', 80);
    if (at <= indent) break;
    out.push(rest.slice(0, at));
    rest = ' '.repeat(indent) + rest.slice(at + 1);
  }
  out.push(rest);
  return out.join('\n');
}

export function knownNamespaces(): string[] {
  return namespaces(methodTable());
}
