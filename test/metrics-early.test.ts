// prom-client loads after start-up (src/metrics/metrics.ts): what the daemon counts before then
// (requests, connections, guest faults, qemu-ga polls, route lookups, libvirt's state) is on
// the first scrape with the same values, buckets and sums as if it had been loaded all along, and
// counting goes on from there.
import { describe, expect, it } from 'vitest';
import { DaemonMetrics } from '../src/metrics/metrics.js';
import { GuestIssue } from '../src/guest/issues.js';
import type { VmStats } from '../src/wire.js';

/** The Prometheus text format's samples: `name{labels}` as written -> value. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^(\S+(?:\{.*\})?) (\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    out.set(m[1]!, Number(m[2]));
  }
  return out;
}

describe('metrics counted before prom-client loads', () => {
  it('are on the first scrape, and later counts add to them', async () => {
    const m = new DaemonMetrics();
    // As the daemon does when it is built, before anything is counted.
    const vm = { status: 'Up', guestAgentStatus: 'responsive' } as VmStats;
    m.attach({ vms: () => [vm], eventsPublished: () => 5, eventSubscribers: () => 1 }, [
      'Host.getAllVmStats',
      'VM.getStats',
    ]);

    const [a, b] = [{}, {}];
    m.connectionOpened(a, 'websocket');
    m.connectionOpened(b, 'stomp');
    m.connectionClosed(a);
    for (let i = 0; i < 3; i++) m.rpcRequest('Host.getAllVmStats', null, 0.002);
    m.rpcRequest('VM.getStats', -32602, 0.0004);
    m.rpcRequest('No.suchMethod', -32601, 0.0001);
    m.guestIssues(
      new Map([
        [GuestIssue.badJson, 2],
        [GuestIssue.lineTooLong, 1],
      ]),
    );
    m.channelReconnect('/run/x/0b5a1c3e-0000-4000-8000-000000000001.org.qemu.guest_agent.0');
    m.qgaCommand('guest-network-get-interfaces', 'ok', 0.0007);
    m.qgaCommand('guest-network-get-interfaces', 'ok', 0.0009);
    m.qgaCommand('guest-network-get-interfaces', 'ok', 0.001); // on a bucket bound: le="0.001"
    m.qgaCommand('guest-network-get-interfaces', 'error', 20); // above every bound: +Inf only
    m.subscriberCutOff();
    m.routeLookup('ip', 'no_route');
    m.libvirtState('down');
    m.libvirtState('up');
    const { contentType, text } = await m.scrape();
    expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    const s = samples(text);
    const want: [string, number][] = [
      ['vdsm_agentd_connections{transport="websocket"}', 0],
      ['vdsm_agentd_connections{transport="stomp"}', 1],
      ['vdsm_agentd_connections{transport="stomp-websocket"}', 0],
      ['vdsm_agentd_connections_opened_total{transport="websocket"}', 1],
      ['vdsm_agentd_connections_opened_total{transport="stomp"}', 1],
      ['vdsm_agentd_connections_opened_total{transport="stomp-websocket"}', 0],
      ['vdsm_agentd_rpc_requests_total{method="Host.getAllVmStats",outcome="ok"}', 3],
      ['vdsm_agentd_rpc_requests_total{method="VM.getStats",outcome="invalid_params"}', 1],
      ['vdsm_agentd_rpc_requests_total{method="unknown",outcome="method_not_found"}', 1],
      ['vdsm_agentd_rpc_request_duration_seconds_bucket{le="0.001",method="Host.getAllVmStats"}', 0],
      ['vdsm_agentd_rpc_request_duration_seconds_bucket{le="0.0025",method="Host.getAllVmStats"}', 3],
      ['vdsm_agentd_rpc_request_duration_seconds_count{method="Host.getAllVmStats"}', 3],
      [`vdsm_agentd_guest_input_issues_total{cause="${GuestIssue.badJson}"}`, 2],
      [`vdsm_agentd_guest_input_issues_total{cause="${GuestIssue.lineTooLong}"}`, 1],
      [`vdsm_agentd_guest_input_issues_total{cause="${GuestIssue.notObject}"}`, 0],
      ['vdsm_agentd_channel_reconnects_total{channel="org.qemu.guest_agent.0"}', 1],
      ['vdsm_agentd_channel_reconnects_total{channel="ovirt-guest-agent.0"}', 0],
      [
        'vdsm_agentd_qga_command_duration_seconds_bucket{le="0.0005",command="guest-network-get-interfaces",outcome="ok"}',
        0,
      ],
      [
        'vdsm_agentd_qga_command_duration_seconds_bucket{le="0.001",command="guest-network-get-interfaces",outcome="ok"}',
        3,
      ],
      [
        'vdsm_agentd_qga_command_duration_seconds_bucket{le="10",command="guest-network-get-interfaces",outcome="error"}',
        0,
      ],
      [
        'vdsm_agentd_qga_command_duration_seconds_bucket{le="+Inf",command="guest-network-get-interfaces",outcome="error"}',
        1,
      ],
      ['vdsm_agentd_event_subscribers_cut_off_total', 1],
      ['vdsm_agentd_route_lookups_total{path="ip",outcome="no_route"}', 1],
      ['vdsm_agentd_route_lookups_total{path="netlink",outcome="ok"}', 0],
      ['vdsm_agentd_libvirt_up', 1],
      ['vdsm_agentd_vms{status="Up"}', 1],
      ['vdsm_agentd_events_published_total', 5],
    ];
    for (const [name, value] of want) expect([name, s.get(name)]).toEqual([name, value]);
    expect(s.get('vdsm_agentd_rpc_request_duration_seconds_sum{method="Host.getAllVmStats"}')).toBeCloseTo(0.006, 9);
    expect(
      s.get('vdsm_agentd_qga_command_duration_seconds_sum{command="guest-network-get-interfaces",outcome="ok"}'),
    ).toBeCloseTo(0.0026, 9);
    // prom-client's own process metrics are on as soon as it loads.
    expect(s.has('process_start_time_seconds')).toBe(true);

    m.rpcRequest('Host.getAllVmStats', null, 0.002);
    m.connectionClosed(b);
    m.libvirtState('down');
    const later = samples((await m.scrape()).text);
    expect(later.get('vdsm_agentd_rpc_requests_total{method="Host.getAllVmStats",outcome="ok"}')).toBe(4);
    expect(later.get('vdsm_agentd_connections{transport="stomp"}')).toBe(0);
    expect(later.get('vdsm_agentd_libvirt_up')).toBe(0);
  });

  it('leaves vdsm_agentd_libvirt_up out when libvirt is not used', async () => {
    const m = new DaemonMetrics();
    expect((await m.scrape()).text).not.toContain('vdsm_agentd_libvirt_up');
  });
});
