// A stand-in for systemd's NOTIFY_SOCKET: an AF_UNIX datagram socket (which Node cannot open, so
// Debian's python3 holds it) that records every sd_notify message. Like systemd it receives and
// closes the file descriptor systemd-notify passes for its BARRIER=1 handshake.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export const PYTHON = '/usr/bin/python3';

const LISTENER = `
import json, os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o777)
print(json.dumps({"bound": True}), flush=True)
while True:
    data, anc, flags, addr = s.recvmsg(65536, socket.CMSG_SPACE(16 * 4))
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            for i in range(0, len(payload) - len(payload) % 4, 4):
                os.close(int.from_bytes(payload[i:i + 4], sys.byteorder))
    print(json.dumps({"message": data.decode("utf-8", "replace")}), flush=True)
`;

export interface NotifySocket {
  path: string;
  /** Every datagram so far, one string each ("READY=1\nSTATUS=..."). */
  messages: () => string[];
  waitFor: (pred: (m: string) => boolean, timeoutMs?: number) => Promise<string>;
  /** Stops the listener and removes the socket. */
  close: () => void;
}

/** Opens the socket; callers close it in a `finally` (hooks cannot be added from inside a test). */
export async function openNotifySocket(): Promise<NotifySocket> {
  const dir = mkdtempSync(path.join(tmpdir(), 'vdsm-agentd-notify-'));
  chmodSync(dir, 0o755);
  const socketPath = path.join(dir, 'notify');
  const proc = spawn(PYTHON, ['-c', LISTENER, socketPath], { stdio: ['ignore', 'pipe', 'inherit'] });
  const close = (): void => {
    proc.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  const messages: string[] = [];
  const waiters: (() => void)[] = [];
  let buf = '';
  let bound!: () => void;
  const isBound = new Promise<void>((r) => (bound = r));
  proc.stdout.on('data', (chunk: Buffer) => {
    buf += chunk.toString();
    let nl;
    while ((nl = buf.indexOf('\n')) !== -1) {
      const line = JSON.parse(buf.slice(0, nl)) as { bound?: boolean; message?: string };
      buf = buf.slice(nl + 1);
      if (line.bound) bound();
      if (line.message !== undefined) messages.push(line.message);
      for (const w of waiters.splice(0)) w();
    }
  });
  await isBound;
  const waitFor = (pred: (m: string) => boolean, timeoutMs = 10_000): Promise<string> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no matching notify message within ${timeoutMs} ms; got ${JSON.stringify(messages)}`)),
        timeoutMs,
      );
      const check = (): void => {
        const m = messages.find(pred);
        if (m !== undefined) {
          clearTimeout(timer);
          resolve(m);
        } else waiters.push(check);
      };
      check();
    });
  return { path: socketPath, messages: () => messages, waitFor, close };
}
