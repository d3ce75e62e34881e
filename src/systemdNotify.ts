// Readiness for systemd's Type=notify. Node cannot send on an AF_UNIX datagram socket, so the
// notification goes through systemd-notify(1); the unit therefore sets NotifyAccess=all.
// systemd-notify waits (a barrier) until the manager has read the message, so the message is
// attributed to the unit even though the helper process exits right after.
import { execFile } from 'node:child_process';

function notifySocket(env: NodeJS.ProcessEnv = process.env): string | null {
  const socket = env.NOTIFY_SOCKET;
  return socket ? socket : null;
}

/** Sends READY=1 and STATUS= when started by systemd (NOTIFY_SOCKET set); otherwise does nothing. */
export function notifyReady(status: string): Promise<{ sent: boolean; error?: string }> {
  if (notifySocket() === null) return Promise.resolve({ sent: false });
  return new Promise((resolve) => {
    execFile('systemd-notify', ['--ready', `--status=${status}`], { timeout: 10_000 }, (err, _stdout, stderr) =>
      resolve(err ? { sent: false, error: (stderr || err.message).trim() } : { sent: true }),
    );
  });
}
