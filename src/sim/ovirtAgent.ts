// The simulated oVirt guest agent's messages, pure: what the real agent pushes (one JSON object
// per line, Python's json.dumps layout) and how it reads the host's commands.
import { spacedJson } from './spacedJson.js';
import { ovirtInterfaces, type SimGuest } from './guest.js';

/** The highest API version the agent speaks; the agreed one is min(host's, this). */
export const OVIRT_MAX_API_VERSION = 3;

function line(name: string, body: Record<string, unknown>): string {
  return spacedJson({ __name__: name, ...body }, 'lower') + '\n';
}

export function heartbeatLine(apiVersion: number, freeRamMiB: number): string {
  return line('heartbeat', {
    'free-ram': String(freeRamMiB),
    'memory-stat': {
      mem_total: 4026512,
      mem_unused: freeRamMiB * 1024,
      mem_buffers: 41984,
      mem_cached: 812236,
      swap_in: 0,
      swap_out: 0,
      majflt: 0,
      minflt: 1523,
      pageflt: 1523,
      swap_total: 0,
      swap_usage: 0,
    },
    apiVersion,
  });
}

export function networkInterfacesLine(guest: SimGuest): string {
  return line('network-interfaces', { interfaces: ovirtInterfaces(guest) });
}

/** Everything the agent sends at start-up and on `refresh`, as one write. */
export function fullSet(guest: SimGuest): string {
  const os = guest.osInfo;
  return [
    line('host-name', { name: guest.hostName }),
    line('os-version', { version: guest.osVersion }),
    line('os-info', {
      version: os['version-id'] ?? '',
      distribution: os.name ?? '',
      codename: '',
      arch: os.machine ?? 'x86_64',
      type: os.id === 'mswindows' ? 'windows' : 'linux',
      kernel: os['kernel-release'] ?? '',
    }),
    line('timezone', { zone: 'Etc/UTC', offset: 0 }),
    line('network-interfaces', { interfaces: ovirtInterfaces(guest) }),
    line('fqdn', { fqdn: guest.fqdn }),
    line('active-user', { name: 'None' }),
    line('applications', {
      applications: ['ovirt-guest-agent-common-1.0.16', 'kernel-' + (os['kernel-release'] ?? '')],
    }),
    line('number-of-cpus', { count: 2 }),
  ].join('');
}

export type HostCommand = { name: 'refresh'; apiVersion: number } | { name: string };

/** One line from the host; null when it is not a command object (the real agent logs and skips it). */
export function parseHostLine(text: string): HostCommand | null {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return null;
  const o = v as Record<string, unknown>;
  if (typeof o.__name__ !== 'string') return null;
  if (o.__name__ === 'refresh') {
    const api =
      typeof o.apiVersion === 'number' && Number.isInteger(o.apiVersion) && o.apiVersion >= 0 ? o.apiVersion : 0;
    return { name: 'refresh', apiVersion: api };
  }
  return { name: o.__name__ };
}
