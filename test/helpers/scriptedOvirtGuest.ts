// A scripted oVirt guest agent: listens on <channels>/<vmId>.ovirt-guest-agent.0 as QEMU
// does for a VM's channel and pushes the agent's newline-delimited JSON messages to whoever
// connects (the daemon). Closed when the test file ends.
import net from 'node:net';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { afterAll } from 'vitest';

export class ScriptedOvirtGuest {
  private peers = new Set<net.Socket>();
  private connectedWaiters: (() => void)[] = [];

  private constructor(
    readonly vmId: string,
    readonly socketPath: string,
    private readonly server: net.Server,
    private readonly script: object[],
  ) {
    server.on('connection', (s) => {
      this.peers.add(s);
      s.on('error', () => {});
      s.on('close', () => this.peers.delete(s));
      for (const m of this.script) s.write(JSON.stringify(m) + '\n');
      for (const w of this.connectedWaiters.splice(0)) w();
    });
  }

  /** Starts listening; `script` is sent to every host connection as it arrives. */
  static async start(channelsDir: string, vmId: string, script: object[]): Promise<ScriptedOvirtGuest> {
    const socketPath = path.join(channelsDir, `${vmId}.ovirt-guest-agent.0`);
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => resolve());
    });
    const guest = new ScriptedOvirtGuest(vmId, socketPath, server, script);
    afterAll(() => guest.close());
    return guest;
  }

  /** Resolves when the daemon has connected. */
  connected(): Promise<void> {
    if (this.peers.size) return Promise.resolve();
    return new Promise((resolve) => this.connectedWaiters.push(resolve));
  }

  /** Pushes one more agent message to the connected host(s). */
  send(message: object): void {
    for (const s of this.peers) s.write(JSON.stringify(message) + '\n');
  }

  close(): void {
    for (const s of this.peers) s.destroy();
    this.server.close();
    rmSync(this.socketPath, { force: true });
  }
}

export function networkInterfaces(interfaces: { name: string; hw: string; inet: string[]; inet6: string[] }[]): object {
  return { __name__: 'network-interfaces', interfaces };
}
