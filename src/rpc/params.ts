// Declared params and their pure checks. A method declares its params by name and position;
// `bindParams` accepts either JSON-RPC form (object by name, array by position) and throws
// -32602 naming the param and the reason.
import { isUuid } from '../wire.js';
import { invalidParams } from './errors.js';

/** Checks one value; returns it (possibly normalised) or throws a plain message via `fail`. */
export type Check<T> = (value: unknown, name: string) => T;

export interface ParamDecl<T = unknown> {
  name: string;
  required: boolean;
  check: Check<T>;
}

export const fail = (name: string, reason: string): never => {
  throw invalidParams(`'${name}' ${reason}`);
};

export const uuid: Check<string> = (value, name) => {
  if (typeof value !== 'string') return fail(name, `must be a UUID string, got ${describe(value)}`);
  if (!isUuid(value)) return fail(name, `is not a UUID: ${JSON.stringify(value.slice(0, 80))}`);
  return value.toLowerCase();
};

export const string: Check<string> = (value, name) =>
  typeof value === 'string' ? value : fail(name, `must be a string, got ${describe(value)}`);

export const stringArray: Check<string[]> = (value, name) => {
  if (!Array.isArray(value)) return fail(name, `must be an array of strings, got ${describe(value)}`);
  value.forEach((v, i) => {
    if (typeof v !== 'string') fail(`${name}[${i}]`, `must be a string, got ${describe(v)}`);
  });
  return value as string[];
};

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : typeof value;
}

/** Binds JSON-RPC params to the declaration: returns values by name, in declaration order. */
export function bindParams(params: unknown, decls: readonly ParamDecl[]): Record<string, unknown> {
  const out = Object.create(null) as Record<string, unknown>;
  if (params === undefined || params === null) params = decls.length === 0 ? [] : {};
  if (Array.isArray(params)) {
    if (params.length > decls.length) {
      throw invalidParams(`expected at most ${decls.length} positional param(s), got ${params.length}`);
    }
    decls.forEach((d, i) => {
      if (i < params.length) out[d.name] = d.check(params[i], d.name);
      else if (d.required) fail(d.name, 'is missing');
    });
    return out;
  }
  if (typeof params !== 'object') throw invalidParams(`params must be an object or an array, got ${describe(params)}`);
  const given = params as Record<string, unknown>;
  for (const key of Object.keys(given)) {
    if (!decls.some((d) => d.name === key)) {
      const known = decls.length
        ? `; expected ${decls.map((d) => `'${d.name}'`).join(', ')}`
        : '; this method takes none';
      throw invalidParams(`unknown param '${key.slice(0, 80)}'${known}`);
    }
  }
  for (const d of decls) {
    if (Object.prototype.hasOwnProperty.call(given, d.name)) out[d.name] = d.check(given[d.name], d.name);
    else if (d.required) fail(d.name, 'is missing');
  }
  return out;
}
