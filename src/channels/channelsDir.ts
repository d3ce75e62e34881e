// Discovery: the channels directory is watched with inotify (fs.watch). A UNIX socket named
// <uuid>.<channel> is reported as added the moment it is seen, as removed when it goes, and as
// replaced when a new socket took the same name (QEMU restarted). Everything else in the
// directory is ignored, and costs nothing while idle: every 2 s only the directory itself is
// stat()ed (a replaced or vanished directory); the whole listing is read again only when the
// watch is (re)made, and every minute if the directory's mtime moved since the last listing
// (events inotify may have dropped: Node does not report an inotify queue overflow).
// A missing, unreadable or unwatchable directory is said once per cause at warning level, with
// the path and errno, and its recovery once at info.
// Names are checked with a synchronous lstat: the directory is local (/var/lib/libvirt/qemu/channels,
// or libvirt's channel/target), where one takes a few microseconds, less than a thread-pool round
// trip (~36 µs); 1,000 sockets at start-up are then checked in one go.
import { lstatSync, watch, type FSWatcher } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
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

interface Known extends ChannelSocket {
  /** Which file this is: ext4 hands a freed inode number straight to the next file, so the birth time too. */
  identity: string;
}

export class ChannelsDirWatcher {
  private readonly known = new Map<string, Known>();
  private watcher: FSWatcher | null = null;
  /** inode and birth time of the watched directory: a recreated one may reuse the inode number. */
  private watchedId: string | null = null;
  /** The problem last reported (`<errno>`), so each cause is said once; null while all is well. */
  private problem: string | null = null;
  /** The directory's mtime at the last full listing, and when that was. */
  private listedMtimeMs = -1;
  private listedAt = 0;
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
    private readonly relistMs = 60_000,
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

  /** Directory present -> watched and listed; missing or unreadable -> every socket removed, said once. */
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
      this.trouble(err);
      this.closeWatcher();
      this.schedule(null);
      return;
    }
    if (this.watcher && this.watchedId === id) {
      // Idle: inotify reports changes. A long-interval listing catches dropped events, and only
      // when the directory changed since the last one.
      if (Date.now() - this.listedAt >= this.relistMs && mtimeMs !== this.listedMtimeMs) this.schedule(null);
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
      this.trouble(err); // EACCES: a directory we may not read cannot be watched either
      this.schedule(null);
      return;
    }
    this.schedule(null);
    await this.running;
  }

  /** Says what is wrong with the directory, once per cause (errno). */
  private trouble(err: unknown): void {
    const e = err as NodeJS.ErrnoException;
    const errno = e.code ?? 'EUNKNOWN';
    if (this.problem === errno) {
      this.log.debug({ dir: this.dir, errno }, 'channels directory still unavailable');
      return;
    }
    this.problem = errno;
    if (errno === 'ENOENT' || errno === 'ENOTDIR') {
      this.log.warn({ dir: this.dir, errno }, 'channels directory is missing; waiting for it to appear');
    } else {
      this.log.warn(
        { dir: this.dir, errno, err: e.message },
        `cannot read channels directory ${this.dir} (${errno}); no VMs are found until it can be read`,
      );
    }
  }

  /** The directory was listed: a problem said before is over. */
  private recovered(): void {
    if (this.problem === null) return;
    const was = this.problem;
    this.problem = null;
    this.log.info(
      { dir: this.dir, was },
      was === 'ENOENT' || was === 'ENOTDIR' ? 'channels directory appeared' : 'channels directory can be read again',
    );
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
      for (const n of names) this.check(n);
    }
  }

  private async list(): Promise<string[]> {
    try {
      const mtimeMs = (await stat(this.dir)).mtimeMs;
      const names = await readdir(this.dir);
      this.listedMtimeMs = mtimeMs;
      this.listedAt = Date.now();
      if (this.watcher) this.recovered();
      return names.filter((n) => parseChannelFileName(n) !== null);
    } catch (err) {
      this.trouble(err);
      return []; // gone or unreadable: every known socket is forgotten by the caller
    }
  }

  private check(name: string): void {
    const parsed = parseChannelFileName(name);
    if (!parsed) {
      if (name === path.basename(this.dir)) void this.checkDir(); // the directory itself changed
      return;
    }
    const full = path.join(this.dir, name);
    let identity: string | null = null;
    try {
      const st = lstatSync(full);
      if (st.isSocket()) identity = `${st.ino}/${st.birthtimeMs || st.ctimeMs}`;
    } catch (err) {
      // Gone; or the directory lost its search permission while watched: say so, once.
      if ((err as NodeJS.ErrnoException).code === 'EACCES') this.trouble(err);
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
