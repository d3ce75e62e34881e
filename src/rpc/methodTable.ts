// The method table as data, for help texts (vdsm-agent-client -h): names, aliases and params,
// built from the same factories the daemon registers, so help cannot drift from what is served.
// The factories only close over their dependencies, so none is needed to read their declarations.
import { hostMethods } from './methods/host.js';
import { LOG_LEVEL_NAMES, logLevel, logLevelMethods, rootLoggerName } from './methods/logLevel.js';
import { routeMethods, routeTarget } from './methods/route.js';
import { vmMethods } from './methods/vm.js';
import { string, stringArray, uuid, type Check } from './params.js';
import type { MethodDef } from './registry.js';

interface ParamInfo {
  name: string;
  required: boolean;
  /** What the value must be, in words. */
  type: string;
  /** A short stand-in for the value in a synopsis: UUID, ADDR, LEVEL, ... */
  placeholder: string;
}

export interface MethodInfo {
  name: string;
  aliases: readonly string[];
  params: readonly ParamInfo[];
  summary: string;
}

const TYPE_OF_CHECK = new Map<Check<unknown>, { type: string; placeholder: string }>([
  [uuid, { type: 'UUID', placeholder: 'UUID' }],
  [string, { type: 'string', placeholder: 'TEXT' }],
  [stringArray, { type: 'list of strings, e.g. ["|virt|"]', placeholder: 'LIST' }],
  [routeTarget, { type: 'IPv4 or IPv6 address (fe80::1%eth0 for a zone)', placeholder: 'ADDR' }],
  [logLevel, { type: LOG_LEVEL_NAMES, placeholder: 'LEVEL' }],
  [rootLoggerName, { type: "'' or 'root' (VDSM's logger name; the daemon has one logger)", placeholder: 'NAME' }],
]);

const SUMMARIES: Readonly<Record<string, string>> = {
  'Host.ping2': 'answers true: the daemon is up',
  'Host.subscribeEvents': 'sends events (|virt|VM_status|...) here; all of them without prefixes',
  'Host.unsubscribeEvents': 'stops the events of Host.subscribeEvents',
  'Host.setLogLevel': "changes the daemon's log level until it restarts",
  'Host.getAllVmStats': 'stats of every known VM: status, guest agent status, interfaces, names',
  'VM.getStats': "one VM's stats (a list of one); error 1 when the VM is not known",
  'Host.getRoute': 'the host device, gateway and source the kernel routes an address through',
};

/** Every method the daemon serves, in registration order. */
function methodDefs(): MethodDef[] {
  const unused = undefined as never;
  return [...hostMethods(), ...logLevelMethods(unused), ...vmMethods(unused), ...routeMethods(unused, unused)];
}

export function methodTable(): MethodInfo[] {
  return methodDefs().map((d) => ({
    name: d.name,
    aliases: d.aliases ?? [],
    params: d.params.map((p) => ({
      name: p.name,
      required: p.required,
      ...(TYPE_OF_CHECK.get(p.check) ?? { type: 'JSON value', placeholder: 'VALUE' }),
    })),
    summary: SUMMARIES[d.name] ?? '',
  }));
}
