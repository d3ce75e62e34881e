// The daemon's Prometheus metrics: one prom-client Registry and small typed recorders that the
// stages call with one line each (`metrics.channelReconnect(path)`). Values that the daemon
// already keeps (VMs, subscribers, events published) are read when scraped, not copied on every
// change. Label values come from fixed sets (method table, issue codes, channel names), never
// from guest or client input, so a hostile peer cannot grow the series without bound.
// prom-client (with @opentelemetry/api, ~40 ms of evaluation on Node 20) is not on the start
// path: the daemon calls load() once the start-up connections are open, and a scrape before then
// waits for it. Until it loads, the recorders count into plain maps (./early.ts) whose totals
// it takes over, so what was counted at start-up is on the first scrape.
import type { Gauge, Histogram, Registry } from 'prom-client';
import {
  EarlyCounter,
  EarlyGauge,
  EarlyHistogram,
  type CounterRecorder,
  type GaugeRecorder,
  type HistogramRecorder,
} from './early.js';
import { BucketCounts } from './bucketCounts.js';
import { GuestIssue, type IssueCounts } from '../guest/issues.js';
import { CHANNEL_NAMES, ErrorCode, type VmStats } from '../wire.js';

export type DaemonState = 'starting' | 'serving' | 'stopping';
export type ConnectionTransport = 'websocket' | 'stomp' | 'stomp-websocket';
export type RouteLookupOutcome = 'ok' | 'no_route' | 'refused' | 'unknown_zone' | 'failed';

/** What the daemon's parts expose for scrape-time gauges. */
export interface MetricSources {
  vms: () => readonly VmStats[];
  eventsPublished: () => number;
  eventSubscribers: () => number;
}

/** A known VM is Up (its socket exists); one whose sockets are gone is forgotten, not Down. */
const VM_STATUSES = ['Up', 'Paused', 'Powering down'] as const;
const AGENT_STATUSES = ['responsive', 'unresponsive', 'unknown'] as const;
const TRANSPORTS: readonly ConnectionTransport[] = ['websocket', 'stomp', 'stomp-websocket'];
const ROUTE_PATHS = ['netlink', 'ip'] as const;

/** JSON-RPC error codes as outcome labels; anything else is `error`. */
const OUTCOME_OF_CODE: ReadonlyMap<number, string> = new Map([
  [ErrorCode.noSuchVm, 'no_such_vm'],
  [ErrorCode.noRoute, 'no_route'],
  [ErrorCode.invalidRequest, 'invalid_request'],
  [ErrorCode.methodNotFound, 'method_not_found'],
  [ErrorCode.invalidParams, 'invalid_params'],
  [ErrorCode.internalError, 'internal_error'],
  [ErrorCode.serverBusy, 'server_busy'],
]);

/** Latency buckets (seconds) for work that is local and normally fast. */
const LOCAL_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Event-loop lag sampling period (prom-client nodejs_eventloop_lag_*). */
const EVENT_LOOP_SAMPLE_MS = 100;

export class DaemonMetrics {
  private prom: typeof import('prom-client') | null = null;
  private registry: Registry | null = null;
  private loading: Promise<Registry> | null = null;
  private state: DaemonState = 'starting';
  private readonly startedAt = Date.now();
  private sources: MetricSources | null = null;
  private knownMethods: ReadonlySet<string> = new Set();
  private readonly openConnections = new WeakMap<object, ConnectionTransport>();
  private readonly openByTransport = new Map<ConnectionTransport, number>();
  private defaultsOn = false;

  // Until prom-client has loaded, the recorders are these plain counts; its metrics take them over.
  private readonly early = {
    guestInput: new EarlyCounter(),
    channelReconnects: new EarlyCounter(),
    rpcRequests: new EarlyCounter(),
    rpcDuration: new EarlyHistogram(LOCAL_BUCKETS),
    connections: new EarlyGauge(),
    connectionsOpened: new EarlyCounter(),
    subscribersCutOff: new EarlyCounter(),
    routeLookups: new EarlyCounter(),
  };
  private guestInput: CounterRecorder = this.early.guestInput;
  private channelReconnects: CounterRecorder = this.early.channelReconnects;
  /** Counted here for the daemon's life (not only until prom-client loads): see bucketCounts.ts. */
  private readonly qgaCommands = new BucketCounts(LOCAL_BUCKETS, ['command', 'outcome'] as const);
  private rpcRequests: CounterRecorder = this.early.rpcRequests;
  private rpcDuration: HistogramRecorder = this.early.rpcDuration;
  private connections: GaugeRecorder = this.early.connections;
  private connectionsOpened: CounterRecorder = this.early.connectionsOpened;
  private subscribersCutOff: CounterRecorder = this.early.subscribersCutOff;
  private routeLookups: CounterRecorder = this.early.routeLookups;
  /** Absent with --qga-via direct: registered on the first libvirtState(). */
  private libvirtUp: Gauge | null = null;
  private libvirtSeen: 'up' | 'down' | null = null;

  constructor() {
    for (const cause of Object.values(GuestIssue)) this.guestInput.inc({ cause }, 0);
    for (const channel of CHANNEL_NAMES) this.channelReconnects.inc({ channel }, 0);
    for (const transport of TRANSPORTS) {
      this.connections.set({ transport }, 0);
      this.connectionsOpened.inc({ transport }, 0);
    }
    for (const path of ROUTE_PATHS) this.routeLookups.inc({ path, outcome: 'ok' }, 0);
  }

  /** Loads prom-client once and hands it what was counted so far; the daemon calls it after start-up. */
  load(): Promise<Registry> {
    this.loading ??= import('prom-client').then((prom) => this.install(prom));
    return this.loading;
  }

  /** The Prometheus text format; loads prom-client first when nothing has yet. */
  async scrape(): Promise<{ contentType: string; text: string }> {
    const registry = await this.load();
    return { contentType: registry.contentType, text: await registry.metrics() };
  }

  private install(prom: typeof import('prom-client')): Registry {
    const registry = new prom.Registry();
    const registers = [registry];
    // collect() runs with the metric as `this`; the sources are reached through this closure.
    const sources = (): MetricSources | null => this.sources;
    const early = this.early;
    // The two VM gauges are read only through their registry (collect() fills them per scrape).
    new prom.Gauge({
      name: 'vdsm_agentd_vms',
      help: 'VMs known to the daemon (active in libvirt, or with a channel socket), by VDSM status',
      labelNames: ['status'],
      registers,
      collect() {
        const counts = new Map<string, number>(VM_STATUSES.map((s) => [s, 0]));
        for (const vm of sources()?.vms() ?? []) counts.set(vm.status, (counts.get(vm.status) ?? 0) + 1);
        this.reset();
        for (const [status, n] of counts) this.set({ status }, n);
      },
    });
    new prom.Gauge({
      name: 'vdsm_agentd_vms_by_agent_status',
      help: 'VMs known to the daemon, by guestAgentStatus',
      labelNames: ['agent_status'],
      registers,
      collect() {
        const all = sources()?.vms() ?? [];
        for (const s of AGENT_STATUSES)
          this.set({ agent_status: s }, all.filter((v) => v.guestAgentStatus === s).length);
      },
    });
    this.guestInput = early.guestInput.moveTo(
      new prom.Counter({
        name: 'vdsm_agentd_guest_input_issues_total',
        help: 'Guest input dropped, replaced or cut, by cause (the stable GUEST_ERR_* code)',
        labelNames: ['cause'],
        registers,
      }),
    );
    this.channelReconnects = early.channelReconnects.moveTo(
      new prom.Counter({
        name: 'vdsm_agentd_channel_reconnects_total',
        help: 'Connected guest-agent channels that were lost and are being reconnected, by channel name',
        labelNames: ['channel'],
        registers,
      }),
    );
    const qgaCommands = this.qgaCommands;
    const qgaName = 'vdsm_agentd_qga_command_duration_seconds';
    const qgaHelp =
      'Time from sending a qemu-ga command to its answer; outcome error: agent error, timeout or link lost';
    type QgaGet = ReturnType<Histogram<'command' | 'outcome'>['get']>;
    // Its samples come from the counts above; prom-client's registry only reads them.
    class QgaCommandHistogram extends prom.Histogram<'command' | 'outcome'> {
      override get(): QgaGet {
        const values = qgaCommands.values(qgaName);
        return Promise.resolve({
          name: qgaName,
          help: qgaHelp,
          type: 'histogram',
          aggregator: 'sum',
          values,
        } as unknown as Awaited<QgaGet>); // the typings list a `collect` that get() never returns
      }
      /** What the registry reads when it prints (prom-client's Histogram has it too). */
      getForPromString(): QgaGet {
        return this.get();
      }
    }
    new QgaCommandHistogram({
      name: qgaName,
      help: qgaHelp,
      labelNames: ['command', 'outcome'],
      buckets: LOCAL_BUCKETS,
      registers,
    });
    this.rpcRequests = early.rpcRequests.moveTo(
      new prom.Counter({
        name: 'vdsm_agentd_rpc_requests_total',
        help: 'JSON-RPC requests dispatched (WebSocket and STOMP), by method and outcome (ok or the error kind)',
        labelNames: ['method', 'outcome'],
        registers,
      }),
    );
    this.rpcDuration = early.rpcDuration.moveTo(
      new prom.Histogram({
        name: 'vdsm_agentd_rpc_request_duration_seconds',
        help: 'Time to answer a JSON-RPC request, by method',
        labelNames: ['method'],
        buckets: LOCAL_BUCKETS,
        registers,
      }),
    );
    this.connections = early.connections.moveTo(
      new prom.Gauge({
        name: 'vdsm_agentd_connections',
        help: 'Open client connections, by transport (websocket: JSON-RPC over WebSocket; stomp: over TCP/TLS; stomp-websocket)',
        labelNames: ['transport'],
        registers,
      }),
    );
    this.connectionsOpened = early.connectionsOpened.moveTo(
      new prom.Counter({
        name: 'vdsm_agentd_connections_opened_total',
        help: 'Client connections accepted, by transport',
        labelNames: ['transport'],
        registers,
      }),
    );
    new prom.Counter({
      name: 'vdsm_agentd_events_published_total',
      help: 'Events published to the event hub (each counted once, whatever the number of subscribers)',
      registers,
      collect() {
        this.reset();
        this.inc(sources()?.eventsPublished() ?? 0);
      },
    });
    new prom.Gauge({
      name: 'vdsm_agentd_event_subscribers',
      help: 'Connections subscribed to events',
      registers,
      collect() {
        this.set(sources()?.eventSubscribers() ?? 0);
      },
    });
    this.subscribersCutOff = early.subscribersCutOff.moveTo(
      new prom.Counter({
        name: 'vdsm_agentd_event_subscribers_cut_off_total',
        help: 'Event subscribers disconnected because their unsent output passed --max-subscriber-buffer-bytes',
        registers,
      }),
    );
    this.routeLookups = early.routeLookups.moveTo(
      new prom.Counter({
        name: 'vdsm_agentd_route_lookups_total',
        help: 'Route lookups by path (netlink, ip) and outcome (ok, no_route, refused, unknown_zone, failed: the path could not answer)',
        labelNames: ['path', 'outcome'],
        registers,
      }),
    );
    this.libvirtUp = new prom.Gauge({
      name: 'vdsm_agentd_libvirt_up',
      help: '1 while libvirtd is connected, 0 while not (absent with --qga-via direct)',
      registers: [],
    });
    this.prom = prom;
    this.registry = registry;
    if (this.libvirtSeen) this.libvirtState(this.libvirtSeen);
    this.defaultMetrics();
    return registry;
  }

  /** Wires the scrape-time sources and the method table; turns on prom-client's process metrics. */
  attach(sources: MetricSources, methodNames: readonly string[]): void {
    this.sources = sources;
    this.knownMethods = new Set(methodNames);
    this.defaultMetrics();
  }

  /** prom-client's process metrics, once both it and the daemon's sources are there. */
  private defaultMetrics(): void {
    const { prom, registry } = this;
    if (this.defaultsOn || !prom || !registry || !this.sources) return;
    this.defaultsOn = true;
    // The event-loop lag histogram samples on a timer; prom-client's default 10 ms meant 100
    // wake-ups a second, most of an idle daemon's CPU. Every 100 ms still catches each stall
    // long enough to delay an answer (a request's budget is seconds) and some shorter ones.
    prom.collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
    // Gauges that prom-client names *_total, which the naming rules (and promtool) reserve
    // for counters; the same numbers are in nodejs_active_resources.
    for (const name of [
      'nodejs_active_handles_total',
      'nodejs_active_requests_total',
      'nodejs_active_resources_total',
    ]) {
      registry.removeSingleMetric(name);
    }
  }

  setState(state: DaemonState): void {
    this.state = state;
  }

  health(): { status: DaemonState; uptimeSeconds: number; vms: number; connections: number } {
    let connections = 0;
    for (const n of this.openByTransport.values()) connections += n;
    return {
      status: this.state,
      uptimeSeconds: Math.floor((Date.now() - this.startedAt) / 1000),
      vms: this.sources?.vms().length ?? 0,
      connections,
    };
  }

  guestIssues(issues: IssueCounts): void {
    for (const [cause, n] of issues) this.guestInput.inc({ cause }, n);
  }

  /** `path` is the channel socket: `<vmId>.<channel name>`. */
  channelReconnect(path: string): void {
    const name = CHANNEL_NAMES.find((c) => path.endsWith(`.${c}`));
    if (name) this.channelReconnects.inc({ channel: name });
  }

  /** One qemu-ga command's answer (or failure) after `seconds`. */
  qgaCommand(command: string, outcome: 'ok' | 'error', seconds: number): void {
    this.qgaCommands.observe(command, outcome, seconds);
  }

  /** One dispatched JSON-RPC request; `errorCode` null when it succeeded. */
  rpcRequest(method: string, errorCode: number | null, seconds: number): void {
    const m = this.knownMethods.has(method) ? method : 'unknown';
    const outcome = errorCode === null ? 'ok' : (OUTCOME_OF_CODE.get(errorCode) ?? 'error');
    this.rpcRequests.inc({ method: m, outcome });
    this.rpcDuration.observe({ method: m }, seconds);
  }

  connectionOpened(conn: object, transport: ConnectionTransport): void {
    this.openConnections.set(conn, transport);
    this.openByTransport.set(transport, (this.openByTransport.get(transport) ?? 0) + 1);
    this.connections.inc({ transport });
    this.connectionsOpened.inc({ transport });
  }

  connectionClosed(conn: object): void {
    const transport = this.openConnections.get(conn);
    if (!transport) return;
    this.openConnections.delete(conn);
    this.openByTransport.set(transport, (this.openByTransport.get(transport) ?? 1) - 1);
    this.connections.dec({ transport });
  }

  subscriberCutOff(): void {
    this.subscribersCutOff.inc({});
  }

  routeLookup(path: 'netlink' | 'ip', outcome: RouteLookupOutcome): void {
    this.routeLookups.inc({ path, outcome });
  }

  libvirtState(state: 'up' | 'down'): void {
    this.libvirtSeen = state;
    const { registry, libvirtUp } = this;
    if (!registry || !libvirtUp) return;
    if (!registry.getSingleMetric('vdsm_agentd_libvirt_up')) registry.registerMetric(libvirtUp);
    libvirtUp.set(state === 'up' ? 1 : 0);
  }
}

/** The daemon's one set of metrics (one daemon per process). */
export const metrics = new DaemonMetrics();
