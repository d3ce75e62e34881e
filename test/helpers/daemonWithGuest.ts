// A daemon with one scripted oVirt guest agent already reporting: its channels directory of its
// own (a QEMU channel serves one client, so two daemons never share a guest), the agent's
// host name and interfaces sent, and the daemon seen to serve them before the test starts.
import { RpcClient, type ClientTls } from '../../src/client/rpcClient.js';
import type { GuestNetworkDeviceInfo } from '../../src/wire.js';
import { startDaemon, type RunningDaemon } from './daemon.js';
import { channelPath, tempDir } from './channelsDir.js';
import { eventually, ScriptedGuest } from './scriptedGuest.js';

export interface DaemonWithGuest {
  daemon: RunningDaemon;
  guest: ScriptedGuest;
}

export async function startDaemonWithGuest(
  vmId: string,
  guest: { hostName: string; interfaces: GuestNetworkDeviceInfo[] },
  extraArgs: string[] = [],
  clientTls?: ClientTls,
): Promise<DaemonWithGuest> {
  const dir = tempDir('vat-dg-');
  const agent = await ScriptedGuest.listen(channelPath(dir, vmId, 'ovirt-guest-agent.0'));
  const daemon = await startDaemon(['--listen', '127.0.0.1:0', '--channels-dir', dir, ...extraArgs]);
  await agent.connected();
  await agent.send('heartbeat', { 'free-ram': 1024, apiVersion: 3 });
  await agent.send('host-name', { name: guest.hostName });
  await agent.send('network-interfaces', { interfaces: guest.interfaces });
  const ws = await RpcClient.connect(daemon.url, { tls: clientTls });
  await eventually(
    () => ws.call('VM.getStats', { vmID: vmId }),
    (r) => (r as { netIfaces: unknown[] }[])[0]!.netIfaces.length === guest.interfaces.length,
  );
  await ws.close();
  return { daemon, guest: agent };
}
