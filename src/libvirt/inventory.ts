// The VM list and status from libvirt (`--qga-via auto|libvirt` when libvirtd answers): the active
// domains listed once per connection, then kept current by libvirt's own domain events (no state
// polling); host-side vNIC counters refreshed on the guest-data schedule with one bulk call for
// all domains; a domain's XML read when it starts and when a device comes or goes. Everything
// that changes the registry runs one step at a time, in the order libvirt said it.
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { VmNetworkStats } from '../wire.js';
import type { VmRegistry } from '../vms/registry.js';
import { prepareNetworkJson } from '../vms/statsJson.js';
import type { LibvirtClient } from './client.js';
import {
  EXIT_GONE_WHILE_AWAY,
  countersFromBulk,
  lifecycleChange,
  networkStats,
  sameNetwork,
  statusOfState,
} from './domainStatus.js';
import { domainNics, type DomainNic } from './domainXml.js';
import {
  StatsType,
  uuidText,
  type DomainEvent,
  type DomainRef,
  type DomainStatsRecord,
  type InterfaceCounters,
} from './wire.js';

/** VMs of a counter sample decoded and turned into bytes per event-loop turn (~0.5 ms of work). */
const SAMPLE_SLICE = 32;

/**
 * Samples are serialised ahead only while someone asks for stats: the engine's full poll comes
 * every 15 s, so a minute covers it with room to spare. With nobody asking, the first call after
 * a quiet spell serialises what changed itself, and no CPU goes on bytes nobody reads.
 */
export const SERIALISE_AHEAD_WHILE_ASKED_MS = 60_000;

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function* countersByDomain(
  records: Iterable<DomainStatsRecord>,
): Generator<[string, Map<string, Partial<InterfaceCounters>>], void, undefined> {
  for (const rec of records) yield [uuidText(rec.dom.uuid), countersFromBulk(rec.params)];
}

interface KnownDomain {
  ref: DomainRef;
  nics: DomainNic[];
  network: Record<string, VmNetworkStats>;
}

export interface LibvirtInventoryOptions {
  client: LibvirtClient;
  registry: VmRegistry;
  log: Logger;
  /** How often vNIC counters are sampled (the guest-data poll interval). */
  intervalMs: number;
  /** Monotonic ms (the registry's clock). */
  clock: () => number;
  /**
   * When the domain's QEMU process started, on `clock`, or null when it cannot be told (the
   * inventory then counts from when it first saw the domain).
   */
  startedAt?: (dom: DomainRef) => number | null;
  /** `one-per-domain`: one DOMAIN_INTERFACE_STATS per vNIC instead of the bulk call (bench only). */
  counters?: 'bulk' | 'one-per-domain';
  /** A listing that failed while libvirtd stayed connected (it stalled) is tried again after this. */
  retryMs?: number;
}

export class LibvirtInventory {
  private readonly known = new Map<string, KnownDomain>();
  /** Each known domain's start on the registry's clock. */
  private readonly starts = new Map<string, number>();
  private chain: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private retry: NodeJS.Timeout | null = null;
  /** When the counter sample now queued or running was queued (performance.now()), null when none is. */
  private sampleQueuedAt: number | null = null;
  private readonly onState = (s: string): void => {
    if (s === 'up') this.enqueueResync();
  };
  private readonly onEvent = (ev: DomainEvent): void => {
    this.enqueue('event', () => this.apply(ev));
  };

  constructor(private readonly opts: LibvirtInventoryOptions) {}

  start(): void {
    const { client } = this.opts;
    client.on('state', this.onState);
    client.on('domainEvent', this.onEvent);
    if (client.state === 'up') this.onState('up');
    this.timer = setInterval(() => {
      if (client.state !== 'up' || this.known.size === 0) return;
      // One sample at a time: a tick that finds the last one still queued or waiting for
      // libvirtd (at most the client's call timeout) is skipped, so a slow libvirtd costs samples,
      // not a growing queue of them that every later event would wait behind.
      if (this.sampleQueuedAt !== null) {
        this.opts.log.debug(
          { waitingMs: Math.round(performance.now() - this.sampleQueuedAt) },
          'vNIC counter sample skipped: the last one is not done',
        );
        return;
      }
      const queuedAt = (this.sampleQueuedAt = performance.now());
      this.enqueue('counters', () => this.refreshCounters(undefined, queuedAt));
      void this.chain.then(() => (this.sampleQueuedAt = null));
    }, this.opts.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    this.opts.client.off('state', this.onState);
    this.opts.client.off('domainEvent', this.onEvent);
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Resolves when every step queued so far has run (tests and the start-up hold wait on it). */
  settled(): Promise<void> {
    return this.chain;
  }

  /** Whether libvirt runs a domain with this UUID (as far as the last listing and events say). */
  has(vmId: string): boolean {
    return this.known.has(vmId.toLowerCase());
  }

  private enqueueResync(): void {
    if (this.retry) clearTimeout(this.retry);
    this.retry = null;
    this.enqueue(
      'resync',
      () => this.resync(),
      () => {
        // libvirtd still connected but the listing failed (stalled, bad answer): list again later.
        if (this.stopped || this.opts.client.state !== 'up' || this.retry) return;
        this.retry = setTimeout(() => {
          this.retry = null;
          if (this.opts.client.state === 'up') this.enqueueResync();
        }, this.opts.retryMs ?? 2000);
        this.retry.unref();
      },
    );
  }

  private enqueue(what: string, step: () => Promise<void>, failed?: () => void): void {
    this.chain = this.chain.then(async () => {
      if (this.stopped) return;
      try {
        await step();
      } catch (err) {
        // libvirtd gone mid-step, or an answer that did not decode: the next resync corrects.
        this.opts.log.debug({ err, step: what }, 'libvirt inventory step failed');
        failed?.();
      }
    });
  }

  private startOf(ref: DomainRef): number {
    return this.opts.startedAt?.(ref) ?? this.opts.clock();
  }

  /** After each (re)connection: the active domains now; the ones gone meanwhile stopped while libvirtd was away. */
  private async resync(): Promise<void> {
    const { client, registry } = this.opts;
    const doms = await client.listActiveDomains();
    const states = new Map<string, { state: number }>();
    const counters = new Map<string, Map<string, Partial<InterfaceCounters>>>();
    // One bulk call for every domain's state and counters; per-domain XML below.
    for (const rec of await client.allDomainStats(StatsType.state | StatsType.interface)) {
      const id = uuidText(rec.dom.uuid);
      states.set(id, { state: Number(rec.params.get('state.state') ?? 1) });
      counters.set(id, countersFromBulk(rec.params));
    }
    const seen = new Set<string>();
    await Promise.all(
      doms.map(async (ref) => {
        const id = uuidText(ref.uuid);
        const status = statusOfState(states.get(id)?.state ?? (await client.domainState(ref)).state);
        if (status === null) return;
        seen.add(id);
        const nics = domainNics(await client.domainXml(ref));
        const network = networkStats(nics, counters.get(id) ?? new Map(), this.opts.clock() / 1000);
        this.known.set(id, { ref, nics, network });
        const startMs = this.startFor(ref);
        registry.hypervisorSet(id, { status, startMs, network });
      }),
    );
    for (const id of [...this.known.keys(), ...registry.hypervisorVmIds()]) {
      if (seen.has(id)) continue;
      this.known.delete(id);
      this.starts.delete(id);
      registry.hypervisorStopped(id, EXIT_GONE_WHILE_AWAY);
    }
    this.opts.log.info({ domains: seen.size }, 'VMs from libvirt');
  }

  /** A domain's start, read once: a VM known before a reconnection keeps it. */
  private startFor(ref: DomainRef): number {
    const id = uuidText(ref.uuid);
    let t = this.starts.get(id);
    if (t === undefined) {
      t = this.startOf(ref);
      this.starts.set(id, t);
    }
    return t;
  }

  private async apply(ev: DomainEvent): Promise<void> {
    const { client, registry } = this.opts;
    const id = uuidText(ev.dom.uuid);
    if (ev.kind !== 'lifecycle') {
      // A vNIC hot-plugged or unplugged (or any other device): read the devices again.
      const k = this.known.get(id);
      if (!k) return;
      k.nics = domainNics(await client.domainXml(k.ref));
      await this.refreshCounters([k.ref]);
      return;
    }
    const change = lifecycleChange(ev.event, ev.detail);
    const k = this.known.get(id);
    switch (change.kind) {
      case 'none':
        return;
      case 'stopped':
        this.known.delete(id);
        this.starts.delete(id);
        registry.hypervisorStopped(id, change.exit);
        return;
      case 'started': {
        const nics = domainNics(await client.domainXml(ev.dom));
        const network = networkStats(nics, new Map(), this.opts.clock() / 1000);
        this.known.set(id, { ref: ev.dom, nics, network });
        const startMs = this.opts.clock();
        this.starts.set(id, startMs);
        registry.hypervisorSet(id, { status: 'Up', startMs, network });
        return;
      }
      case 'status': {
        if (!k) {
          // A change to a domain this daemon has not seen start (it started during a listing).
          const nics = domainNics(await client.domainXml(ev.dom));
          const network = networkStats(nics, new Map(), this.opts.clock() / 1000);
          this.known.set(id, { ref: ev.dom, nics, network });
          registry.hypervisorSet(id, { status: change.status, startMs: this.startFor(ev.dom), network });
          return;
        }
        registry.hypervisorSet(id, { status: change.status, startMs: this.startFor(k.ref), network: k.network });
        return;
      }
    }
  }

  /** vNIC counters for the given domains (all known when none given), then the registry told of changes. */
  private async refreshCounters(only?: DomainRef[], queuedAt?: number): Promise<void> {
    const { client, registry } = this.opts;
    const began = performance.now();
    let sample: Iterable<[string, Map<string, Partial<InterfaceCounters>>]>;
    if (this.opts.counters === 'one-per-domain') {
      const byId = new Map<string, Map<string, Partial<InterfaceCounters>>>();
      sample = byId;
      const targets = only ?? [...this.known.values()].map((k) => k.ref);
      await Promise.all(
        targets.map(async (ref) => {
          const id = uuidText(ref.uuid);
          const m = new Map<string, Partial<InterfaceCounters>>();
          for (const n of this.known.get(id)?.nics ?? []) {
            if (n.device) m.set(n.device, await client.interfaceStats(ref, n.device).catch(() => ({})));
          }
          byId.set(id, m);
        }),
      );
    } else {
      // Decoded record by record in the slices below, not all at once.
      sample = countersByDomain(await client.allDomainStatsRecords(StatsType.interface, only ?? []));
    }
    const answered = performance.now();
    // The sample lands in two steps. First, a slice of VMs per event-loop turn, each VM's record
    // is decoded and each changed VM's `network` map built and serialised into its new bytes
    // (nothing visible changes yet; calls are answered between slices). Then every VM takes its
    // new map at once, so a call sees this sample for all VMs or for none, and the cached reply is
    // brought up to date from the bytes made ready, so no call rebuilds it. All that only while
    // someone asks for stats (SERIALISE_AHEAD_WHILE_ASKED_MS).
    const now = this.opts.clock() / 1000;
    const ahead = registry.statsAskedWithin(SERIALISE_AHEAD_WHILE_ASKED_MS);
    const changed: [KnownDomain, string, Record<string, VmNetworkStats>][] = [];
    let slice = 0;
    for (const [id, counters] of sample) {
      if (++slice === SAMPLE_SLICE) {
        slice = 0;
        await nextTurn();
      }
      const k = this.known.get(id);
      if (!k) continue;
      const network = networkStats(k.nics, counters, now);
      if (sameNetwork(k.network, network)) continue;
      if (ahead) prepareNetworkJson(id, network);
      changed.push([k, id, network]);
    }
    for (const [k, id, network] of changed) {
      k.network = network;
      registry.hypervisorNetwork(id, network);
    }
    if (ahead && changed.length > 0) registry.warmJson();
    this.opts.log.debug(
      {
        changed: changed.length,
        queuedMs: queuedAt === undefined ? undefined : Math.round(began - queuedAt),
        libvirtMs: Math.round(answered - began),
        landedMs: Math.round(performance.now() - answered),
      },
      'vNIC counters sampled',
    );
  }
}

/**
 * When a QEMU domain's process started, from libvirt's pid file and /proc (elapsedTime counts from
 * the domain's start, as VDSM's does): null for other drivers or when the files are not there.
 */
export function qemuStartedAt(runDir: string, clock: () => number): (dom: DomainRef) => number | null {
  return (dom) => {
    try {
      const pid = Number(readFileSync(`${runDir}/${dom.name}.pid`, 'utf8').trim());
      if (!Number.isInteger(pid) || pid <= 0) return null;
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // Field 22 (starttime, clock ticks after boot) counts from after the command's ") ".
      const startTicks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
      const uptimeSec = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
      if (!Number.isFinite(startTicks) || !Number.isFinite(uptimeSec)) return null;
      const ageMs = Math.max(0, uptimeSec * 1000 - startTicks * 10); // USER_HZ 100 on Linux
      return clock() - ageMs;
    } catch {
      return null;
    }
  };
}
