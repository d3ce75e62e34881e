// The simulated qemu-ga's answers, pure: one parsed request in, the reply the real agent
// (7.2, checked against it by test/sim-qga-drift.test.ts) would write out. Covers the commands
// vdsm-agentd sends plus guest-ping/guest-info/guest-sync; anything else is CommandNotFound.
import { isPlainObject } from '../guest/sanitize.js';
import { spacedJson } from './spacedJson.js';
import { qgaInterfaces, type SimGuest } from './guest.js';

const QGA_VERSION = '7.2.22';

export interface QgaReply {
  /** guest-sync-delimited: the reply is preceded by a 0xFF byte. */
  delimited: boolean;
  /** The reply line, newline included. */
  line: string;
}

type Outcome = { return: unknown } | { error: { class: string; desc: string } };

const genericError = (desc: string): Outcome => ({ error: { class: 'GenericError', desc } });

interface Command {
  /** Argument names and whether each is required (all are integers here). */
  args: Record<string, boolean>;
  run: (args: Record<string, unknown>, guest: SimGuest, counters: number) => unknown;
}

const COMMANDS: Record<string, Command> = {
  'guest-sync-delimited': { args: { id: true }, run: (a) => a.id },
  'guest-sync': { args: { id: true }, run: (a) => a.id },
  'guest-ping': { args: {}, run: () => ({}) },
  'guest-info': {
    args: {},
    run: () => ({
      version: QGA_VERSION,
      supported_commands: Object.keys(COMMANDS).map((name) => ({ enabled: true, name, 'success-response': true })),
    }),
  },
  'guest-network-get-interfaces': { args: {}, run: (_a, guest, counters) => qgaInterfaces(guest, counters) },
  'guest-get-host-name': { args: {}, run: (_a, guest) => ({ 'host-name': guest.hostName }) },
  'guest-get-osinfo': { args: {}, run: (_a, guest) => ({ ...guest.osInfo }) },
};

export const SIMULATED_COMMANDS: readonly string[] = Object.keys(COMMANDS);

function outcome(request: unknown, guest: SimGuest, counters: number): Outcome {
  if (!isPlainObject(request)) return genericError('QMP input must be a JSON object');
  for (const key of Object.keys(request)) {
    if (key !== 'execute' && key !== 'arguments' && key !== 'id')
      return genericError(`QMP input member '${key}' is unexpected`);
  }
  const name = request.execute;
  if (name === undefined) return genericError("QMP input lacks member 'execute'");
  if (typeof name !== 'string') return genericError("QMP input member 'execute' must be a string");
  const args = request.arguments ?? {};
  if (!isPlainObject(args)) return genericError("QMP input member 'arguments' must be an object");
  const cmd = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!cmd) return { error: { class: 'CommandNotFound', desc: `The command ${name} has not been found` } };
  for (const key of Object.keys(args)) {
    if (!Object.hasOwn(cmd.args, key)) return genericError(`Parameter '${key}' is unexpected`);
  }
  for (const [key, required] of Object.entries(cmd.args)) {
    const v = args[key];
    if (v === undefined) {
      if (required) return genericError(`Parameter '${key}' is missing`);
    } else if (typeof v !== 'number' || !Number.isInteger(v)) {
      return genericError(`Invalid parameter type for '${key}', expected: integer`);
    }
  }
  return { return: cmd.run(args, guest, counters) };
}

/** The reply to one request. `counters` advances the interface statistics, as time does. */
export function answerQga(request: unknown, guest: SimGuest, counters: number): QgaReply {
  const out = outcome(request, guest, counters);
  // The real agent echoes a request's `id`: after a result, before an error.
  const id = isPlainObject(request) ? request.id : undefined;
  const result = id === undefined ? out : 'return' in out ? { ...out, id } : { id, ...out };
  const delimited = isPlainObject(request) && request.execute === 'guest-sync-delimited' && 'return' in out;
  return { delimited, line: spacedJson(result, 'upper') + '\n' };
}

/** A parse error from the reader, as the real agent reports it. */
export function qgaParseError(desc: string): QgaReply {
  return { delimited: false, line: spacedJson(genericError(desc), 'upper') + '\n' };
}
