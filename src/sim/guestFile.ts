// Simulated guests described in JSON files (fixtures/demo/*.json): one guest per file, in the
// shape of SimGuest. A file that is not a usable guest is rejected with a message naming the
// file and the field, so a broken fixture is fixed, not silently skipped.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { isUuid } from '../wire.js';
import type { SimAddress, SimGuest, SimInterface } from './guest.js';

class GuestFileError extends Error {
  override name = 'GuestFileError';
}

function str(o: Record<string, unknown>, key: string, where: string): string {
  const v = o[key];
  if (typeof v !== 'string') throw new GuestFileError(`${where}: '${key}' must be a string`);
  return v;
}

function obj(v: unknown, where: string): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new GuestFileError(`${where}: must be an object`);
  return v as Record<string, unknown>;
}

function list(v: unknown, where: string): unknown[] {
  if (!Array.isArray(v)) throw new GuestFileError(`${where}: must be an array`);
  return v;
}

function address(v: unknown, where: string): SimAddress {
  const o = obj(v, where);
  const type = o.type;
  if (type !== 'ipv4' && type !== 'ipv6') throw new GuestFileError(`${where}: 'type' must be "ipv4" or "ipv6"`);
  if (typeof o.prefix !== 'number') throw new GuestFileError(`${where}: 'prefix' must be a number`);
  return { type, address: str(o, 'address', where), prefix: o.prefix };
}

function nic(v: unknown, where: string): SimInterface {
  const o = obj(v, where);
  const out: SimInterface = {
    name: str(o, 'name', where),
    addresses: list(o.addresses ?? [], `${where}.addresses`).map((a, i) => address(a, `${where}.addresses[${i}]`)),
  };
  if (o.ovirtName !== undefined) out.ovirtName = str(o, 'ovirtName', where);
  if (o.hw !== undefined) out.hw = str(o, 'hw', where);
  if (o.up !== undefined) {
    if (typeof o.up !== 'boolean') throw new GuestFileError(`${where}: 'up' must be true or false`);
    out.up = o.up;
  }
  return out;
}

function parseGuest(json: unknown, where: string): SimGuest {
  const o = obj(json, where);
  const vmId = str(o, 'vmId', where);
  if (!isUuid(vmId)) throw new GuestFileError(`${where}: 'vmId' must be a UUID`);
  const agents = list(o.agents, `${where}.agents`);
  if (agents.length === 0 || !agents.every((a) => a === 'ovirt' || a === 'qemu')) {
    throw new GuestFileError(`${where}: 'agents' must list "ovirt" and/or "qemu"`);
  }
  const osInfo = obj(o.osInfo ?? {}, `${where}.osInfo`);
  for (const [k, v] of Object.entries(osInfo))
    if (typeof v !== 'string') throw new GuestFileError(`${where}.osInfo: '${k}' must be a string`);
  const guest: SimGuest = {
    vmId,
    agents,
    hostName: str(o, 'hostName', where),
    fqdn: str(o, 'fqdn', where),
    osVersion: str(o, 'osVersion', where),
    osInfo: osInfo as Record<string, string>,
    interfaces: list(o.interfaces, `${where}.interfaces`).map((n, i) => nic(n, `${where}.interfaces[${i}]`)),
  };
  if (o.ovirtChannel !== undefined) {
    if (o.ovirtChannel !== 'ovirt-guest-agent.0' && o.ovirtChannel !== 'com.redhat.rhevm.vdsm') {
      throw new GuestFileError(`${where}: 'ovirtChannel' must be "ovirt-guest-agent.0" or "com.redhat.rhevm.vdsm"`);
    }
    guest.ovirtChannel = o.ovirtChannel;
  }
  if (o.changeEverySeconds !== undefined) {
    if (typeof o.changeEverySeconds !== 'number' || !(o.changeEverySeconds > 0)) {
      throw new GuestFileError(`${where}: 'changeEverySeconds' must be a positive number`);
    }
    guest.changeEveryMs = o.changeEverySeconds * 1000;
  }
  return guest;
}

/** Every `*.json` guest in `dir`, sorted by file name. */
export function loadGuestDir(dir: string): SimGuest[] {
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort();
  return files.map((f) => {
    const file = path.join(dir, f);
    let json: unknown;
    try {
      json = JSON.parse(readFileSync(file, 'utf8'));
    } catch (err) {
      throw new GuestFileError(`${file}: ${(err as Error).message}`);
    }
    return parseGuest(json, file);
  });
}
