// Discovery: the channels directory is watched (inotify via fs.watch, plus a periodic listing
// that catches missed events and a replaced directory). A UNIX socket named <uuid>.<channel>
// is reported as added the moment it is seen, as removed when it goes, and as replaced when a
// new socket took the same name (QEMU restarted). Everything else in the directory is ignored.
// A missing directory is logged once and picked up when it appears.
import { watch, type FSWatcher } from 'node:fs';
import { lstat, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { CHANNEL_NAMES, UUID_PATTERN, type ChannelName } from '../wire.js';

export interface ChannelSocket {
  vmId: string;
  channel: ChannelName;
  path: string;
}

export interface ChannelsDirListener {
  added(socket: ChannelSocket): void;
  removed(socket: ChannelSocket): void;
  /** The socket file was replaced by a new one: reconnect now. */
  replaced(socket: ChannelSocket): void;
}

const NAME_RE = new RegExp(`^(${UUID_PATTERN})\\.(.+)$`, 'i');

/** `<uuid>.<channel>` -> its parts (vmId lower-cased), or null for any other name. */
function parseChannelFileName(name: string): { vmId: string; channel: ChannelName } | null {
  const m = NAME_RE.exec(name);
  if (!m) return null;
  const channel = m[2] as ChannelName;
  if (!(CHANNEL_NAMES as readonly string[]).includes(channel)) return null;
  return { vmId: m[1]!.toLowerCase(), channel };
}

/** Names checked (lstat) at once. */
const CHECK_BATCH = 64;

interface Known extends ChannelSocket {
  /** Which file this is: ext4 hands a freed inode number straight to the next file, so the birth time too. */
  identity: string;
}

export class ChannelsDirWatcher {
  private readonly known = new Map<string, Known>();
  private watcher: FSWatcher | null = null;
  /** inode and birth time of the watched directory: a recreated one may reuse the inode number. */
  private watchedId: string | null = null;
  private missingLogged = false;
  /** The directory's mtime when it was last listed, if it had settled by then. */
  private listedMtimeMs: number | null = null;
  private timer: NodeJS.Timeout | null = null;
  private pending = new Set<string>();
  private fullScan = false;
  private running: Promise<void> | null = null;
  private stopped = false;

  constructor(
    readonly dir: string,
    private readonly listener: ChannelsDirListener,
    private readonly log: Logger,
    private readonly rescanMs = 2000,
  ) {}

  /** Resolves after the first full listing has been reported. */
  async start(): Promise<void> {
    this.timer = setInterval(() => void this.checkDir(), this.rescanMs);
    this.timer.unref();
    await this.checkDir();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.closeWatcher();
  }

  /** Directory present -> watched and listed; missing -> every socket removed, said once. */
  private async checkDir(): Promise<void> {
    if (this.stopped) return;
    let id: string;
    let mtimeMs: number;
    try {
      const st = await stat(this.dir);
      if (!st.isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
      id = `${st.ino}/${st.birthtimeMs}`;
      mtimeMs = st.mtimeMs;
    } catch (err) {
      if (!this.missingLogged) {
        this.missingLogged = true;
        this.log.warn({ dir: this.dir, code: (err as NodeJS.ErrnoException).code }, 'channels directory is missing; waiting for it to appear');
      }
      this.closeWatcher();
      this.schedule(null);
      return;
    }
    if (this.watcher && this.watchedId === id) {
      // Periodic listing: catches events inotify dropped. Skipped while the directory's mtime is
      // the one a listing already saw settled (a second old: coarse timestamps cannot hide a
      // later change), which with 1,000 sockets was a third of the daemon's idle allocation.
      if (mtimeMs === this.listedMtimeMs) return;
      this.listedMtimeMs = Date.now() - mtimeMs > 1000 ? mtimeMs : null;
      this.schedule(null);
      return;
    }
    this.closeWatcher();
    try {
      this.watcher = watch(this.dir, { persistent: false }, (_event, filename) => this.schedule(filename || null));
      this.watcher.on('error', (err) => {
        this.log.debug({ err, dir: this.dir }, 'channels directory watch failed');
        this.closeWatcher();
        void this.checkDir();
      });
      this.watchedId = id;
    } catch (err) {
      this.log.debug({ err, dir: this.dir }, 'cannot watch channels directory yet');
      this.schedule(null);
      return;
    }
    if (this.missingLogged) this.log.info({ dir: this.dir }, 'channels directory appeared');
    this.missingLogged = false;
    this.schedule(null);
    await this.running;
  }

  private closeWatcher(): void {
    this.watcher?.close();
    this.watcher = null;
    this.watchedId = null;
  }

  /** Queues one name (or a full listing) and runs the queue unless it is running already. */
  private schedule(name: string | null): void {
    if (name === null) this.fullScan = true;
    else if (name === path.basename(this.dir) || parseChannelFileName(name)) this.pending.add(name);
    else return;
    this.running ??= this.drain().finally(() => (this.running = null));
  }

  private async drain(): Promise<void> {
    while (!this.stopped && (this.fullScan || this.pending.size)) {
      let names: string[];
      if (this.fullScan) {
        this.fullScan = false;
        this.pending.clear();
        names = await this.list();
        const present = new Set(names);
        for (const [name, k] of this.known) if (!present.has(name)) this.forget(name, k);
        // Known names are re-checked by their own events (a replaced socket also closes its connection).
        names = names.filter((n) => !this.known.has(n));
      } else {
        names = [...this.pending];
        this.pending.clear();
      }
      // lstat a batch at a time: one by one, 1,000 sockets at start-up took most of a second.
      for (let i = 0; i < names.length; i += CHECK_BATCH) await Promise.all(names.slice(i, i + CHECK_BATCH).map((n) => this.check(n)));
    }
  }

  private async list(): Promise<string[]> {
    try {
      return (await readdir(this.dir)).filter((n) => parseChannelFileName(n) !== null);
    } catch {
      return []; // gone: every known socket is forgotten by the caller
    }
  }

  private async check(name: string): Promise<void> {
    const parsed = parseChannelFileName(name);
    if (!parsed) {
      if (name === path.basename(this.dir)) void this.checkDir(); // the directory itself changed
      return;
    }
    const full = path.join(this.dir, name);
    let identity: string | null = null;
    try {
      const st = await lstat(full);
      if (st.isSocket()) identity = `${st.ino}/${st.birthtimeMs || st.ctimeMs}`;
    } catch {
      /* gone */
    }
    if (this.stopped) return;
    const k = this.known.get(name);
    if (identity === null) {
      if (k) this.forget(name, k);
      return;
    }
    if (!k) {
      const socket: Known = { ...parsed, path: full, identity };
      this.known.set(name, socket);
      this.listener.added(socket);
    } else if (k.identity !== identity) {
      k.identity = identity;
      this.listener.replaced(k);
    }
  }

  private forget(name: string, k: Known): void {
    this.known.delete(name);
    this.listener.removed(k);
  }
}
