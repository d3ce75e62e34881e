// Writes the man pages vdsm-agentd(8) and vdsm-agent-client(1) into the directory given: the
// daemon's options from the same table as --help (src/config.ts OPTIONS), the client's from its
// own --help text, so neither page can say something the program does not do.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_CONFIG_FILE, envName, OPTIONS } from '../src/config.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
const out = process.argv[2];
if (!out) throw new Error('usage: man.ts OUTPUT_DIR [COMPILED_DIST_DIR]');
const dist = process.argv[3] ?? path.join(ROOT, 'dist');

/** roff-safe text: backslashes, leading dots and quotes, hyphens in words. */
const esc = (t: string): string =>
  t
    .replace(/\\/g, '\\e')
    .replace(/-/g, '\\-')
    .replace(/^([.'])/gm, '\\&$1');
const header = (name: string, section: number): string =>
  `.TH ${name.toUpperCase()} ${section} "" "vdsm-agentd ${pkg.version}" "vdsm-agentd"\n`;

function daemonPage(): string {
  const lines = [
    header('vdsm-agentd', 8),
    '.SH NAME',
    "vdsm\\-agentd \\- VDSM's JSON\\-RPC verbs over WebSocket: guest network interfaces and route lookups",
    '.SH SYNOPSIS',
    '.B vdsm\\-agentd',
    '[\\fB\\-\\-flag\\fR \\fIVALUE\\fR ...]',
    '.SH DESCRIPTION',
    esc(
      "A host daemon, one per hypervisor host. It reads what the guest agents inside the VMs (the oVirt guest agent, qemu-ga) report over their virtio-serial channel sockets, and answers VDSM's Host.getAllVmStats, VM.getStats and Host.getRoute verbs as JSON-RPC 2.0 over WebSocket, and STOMP 1.2 on the same port, for an unmodified oVirt engine.",
    ),
    '.PP',
    esc(
      `Each flag is also an environment variable (VDSM_AGENTD_<FLAG>) and a key of the JSON config file (${DEFAULT_CONFIG_FILE} when present). Precedence: flag, then environment, then config file, then default.`,
    ),
    '.SH OPTIONS',
  ];
  for (const o of OPTIONS) {
    const def =
      o.default === null ? null : Array.isArray(o.default) ? o.default.join(',') || 'none' : String(o.default);
    lines.push('.TP', `.B \\-\\-${esc(o.flag)}${o.kind === 'boolean' ? '' : ' \\fIVALUE\\fR'}`);
    lines.push(esc(o.help) + (def === null ? '' : esc(` (default: ${def})`)));
    lines.push(
      '.br',
      `Environment: \\fB${esc(envName(o.flag))}\\fR${o.flag === 'config' ? '' : `; config key: \\fB${esc(o.flag)}\\fR`}`,
    );
  }
  lines.push(
    '.TP',
    '.B \\-\\-help, \\-\\-version',
    'Print the usage or the version and exit.',
    '.SH SIGNALS',
    '.TP',
    '.B SIGTERM, SIGINT',
    esc('Stop accepting, answer requests in flight (up to --shutdown-timeout), close the channels, exit 0.'),
    '.TP',
    '.B SIGHUP',
    esc(
      'Read the config file and environment again. The log level and the TLS certificate, key and CA take effect at once (TLS for new connections; connections made stay as they are). A changed setting that needs a restart is logged as such. A reload that fails keeps the running settings and logs why.',
    ),
    '.TP',
    '.B SIGUSR1, SIGUSR2 and others',
    esc("Logged and ignored: no signal opens Node's inspector or any other port."),
    '.SH EXIT STATUS',
    esc(
      '0 after SIGTERM or SIGINT; 2 on a start-up error (bad flag or config, unreadable TLS file, port in use), printed as one line on standard error.',
    ),
    '.SH FILES',
    '.TP',
    `.I ${esc(DEFAULT_CONFIG_FILE)}`,
    'The config file (JSON, every key a flag).',
    '.TP',
    '.I /usr/lib/systemd/system/vdsm\\-agentd.service',
    'The systemd unit (hardened; runs as the user vdsm\\-agentd).',
    '.TP',
    '.I /usr/lib/sysctl.d/zz\\-vdsm\\-agentd.conf',
    'Reserves port 54325 in net.ipv4.ip_local_reserved_ports.',
    '.TP',
    '.I /usr/lib/sysusers.d/vdsm\\-agentd.conf',
    'The service user and the group of the channel sockets.',
    '.SH SEE ALSO',
    '.BR vdsm\\-agent\\-client (1),',
    '.BR systemctl (1),',
    '.BR journalctl (1)',
  );
  return lines.join('\n') + '\n';
}

function clientPage(): string {
  const help = execFileSync(process.execPath, [path.join(dist, 'client/cli.js'), '--help'], {
    encoding: 'utf8',
  }).trimEnd();
  // The help's "Exit status:" block becomes the page's EXIT STATUS section (one .TP per code).
  const exitAt = help.indexOf('\nExit status:');
  const body = exitAt < 0 ? help : help.slice(0, exitAt);
  const exitCodes = exitAt < 0 ? [] : [...help.slice(exitAt).matchAll(/^ {2}(\d) {2}(.+(?:\n {5}.+)*)$/gm)];
  const [synopsis, ...rest] = body.split('\n');
  return (
    [
      header('vdsm-agent-client', 1),
      '.SH NAME',
      'vdsm\\-agent\\-client \\- views and JSON\\-RPC calls for vdsm\\-agentd, in the manner of vdsm\\-client',
      '.SH SYNOPSIS',
      esc((synopsis ?? '').replace(/^usage: /, '')),
      '.SH DESCRIPTION',
      esc(
        'Shows the VMs, their interfaces and events as tables for people, or calls NAMESPACE.METHOD with the name=value parameters and prints the result as JSON.',
      ),
      '.SH OPTIONS',
      '.nf',
      ...rest.map(esc),
      '.fi',
      '.SH EXIT STATUS',
      ...exitCodes.flatMap((m) => ['.TP', `.B ${m[1] ?? ''}`, esc((m[2] ?? '').replace(/\s+/g, ' '))]),
      '.SH EXAMPLES',
      '.nf',
      'vdsm\\-agent\\-client Host ping2',
      'vdsm\\-agent\\-client Host getAllVmStats',
      'vdsm\\-agent\\-client VM getStats vmID=UUID',
      'vdsm\\-agent\\-client Host getRoute ip=192.0.2.1',
      '.fi',
      '.SH SEE ALSO',
      '.BR vdsm\\-agentd (8)',
    ].join('\n') + '\n'
  );
}

writeFileSync(path.join(out, 'vdsm-agentd.8'), daemonPage());
writeFileSync(path.join(out, 'vdsm-agent-client.1'), clientPage());
