// Guest console output for the CRI log. xenconsoled (started with --log=guest) appends every
// domain's console to <dir>/guest-<name>.log, buffered by the daemon even when no one reads, so a
// tail of that file loses nothing between create and the first read; reading the pty instead would
// race with xenconsoled and drop whatever the guest printed before we opened it.
import { EventEmitter } from "node:events";
import { type FSWatcher, watch } from "node:fs";
import { open, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { StringDecoder } from "node:string_decoder";

export const XEN_CONSOLE_LOG_DIR = "/var/log/xen/console";
/**
 * The longest piece of a line held back while waiting for its newline (the CRI log's line limit,
 * as containerd's): a guest that never prints a newline costs this much memory, not its output.
 */
export const MAX_CONSOLE_LINE = 16 * 1024;
/** Bytes read from the log per read: a guest printing fast costs one buffer of this size at a time. */
const READ_BYTES = 256 * 1024;

export function guestConsoleLogPath(domainName: string, dir = XEN_CONSOLE_LOG_DIR): string {
  return join(dir, `guest-${domainName}.log`);
}

export interface ConsoleTailOptions {
  /** Start at the current end of the file instead of its beginning (skip a previous domain's output). */
  fromEnd?: boolean;
  /**
   * How often to look at the file when its directory cannot be watched: polling works on every
   * filesystem dom0 may use (tmpfs, overlay on 9p) where inotify may not. Default 100 ms.
   */
  pollMs?: number;
  /**
   * Read on the directory's change events (one inotify watch per directory, shared by all its
   * tails) and poll only every `watchedPollMs` in case an event was lost. Default true: a poll per
   * tail every 100 ms was 10 stat calls a second per running guest, 10,000 a second at 1,000 guests.
   */
  watch?: boolean;
  /**
   * The safety poll of a watched tail (default 2 min): a line an event missed shows at the latest
   * then. At 550 guests a 30 s poll was 18 stat calls a second, 7 % of the shim's CPU in dom0.
   */
  watchedPollMs?: number;
}

/** One fs.watch per directory, shared by every tail of a file in it; calls the tails of a changed file. */
class DirectoryWatches {
  private readonly dirs = new Map<string, { watcher: FSWatcher; files: Map<string, Set<() => void>> }>();

  /** False when the directory cannot be watched (missing, no inotify): the caller polls instead. */
  add(path: string, changed: () => void): boolean {
    const dir = dirname(path);
    let d = this.dirs.get(dir);
    if (!d) {
      let watcher: FSWatcher;
      try {
        watcher = watch(dir, { persistent: false });
      } catch {
        return false;
      }
      const files = new Map<string, Set<() => void>>();
      watcher.on("change", (_event, name) => {
        const cbs = name === null ? undefined : files.get(String(name));
        if (cbs) for (const cb of cbs) cb();
      });
      // A watch that breaks (the directory removed) wakes its tails one last time; they keep their safety poll.
      watcher.on("error", () => {
        for (const cbs of files.values()) for (const cb of cbs) cb();
        watcher.close();
        if (this.dirs.get(dir)?.watcher === watcher) this.dirs.delete(dir);
      });
      d = { watcher, files };
      this.dirs.set(dir, d);
    }
    const name = basename(path);
    const cbs = d.files.get(name) ?? new Set();
    cbs.add(changed);
    d.files.set(name, cbs);
    return true;
  }

  remove(path: string, changed: () => void): void {
    const dir = dirname(path);
    const d = this.dirs.get(dir);
    const cbs = d?.files.get(basename(path));
    if (!d || !cbs) return;
    cbs.delete(changed);
    if (cbs.size === 0) d.files.delete(basename(path));
    if (d.files.size === 0) {
      d.watcher.close();
      this.dirs.delete(dir);
    }
  }

  /** Watched directories (for tests: none is left once every tail stopped). */
  get size(): number {
    return this.dirs.size;
  }
}

export const consoleDirectoryWatches = new DirectoryWatches();

/**
 * Emits "line" (text without the newline) for each complete line appended to a console log, and
 * "error" on read errors other than the file not existing yet. A truncated file is read from 0.
 * A line longer than MAX_CONSOLE_LINE comes out in pieces: "line" with `partial` true for each full
 * piece, then the rest with `partial` false when its newline arrives.
 */
export class ConsoleTail extends EventEmitter<{ line: [string, boolean]; error: [Error] }> {
  private offset = -1;
  private partial = "";
  private readonly decoder = new StringDecoder("utf8");
  private timer: NodeJS.Timeout | undefined;
  private reading = false;
  /** A change came while a read ran: read again after it. */
  private again = false;
  private readonly changed = () => void this.poll();
  private watched = false;
  private stopped = false;

  constructor(
    readonly path: string,
    private readonly opts: ConsoleTailOptions = {},
  ) {
    super();
  }

  async start(): Promise<this> {
    if (this.timer || this.stopped) return this;
    this.offset = this.opts.fromEnd
      ? await stat(this.path).then(
          (s) => s.size,
          () => 0,
        )
      : 0;
    // Stopped while sizing the file (a container stopped right after it started): start nothing,
    // or the watch and the timer would outlive the container.
    if (this.stopped) return this;
    this.watched = (this.opts.watch ?? true) && consoleDirectoryWatches.add(this.path, this.changed);
    const every = this.watched ? (this.opts.watchedPollMs ?? 120_000) : (this.opts.pollMs ?? 100);
    this.timer = setInterval(() => void this.poll(), every);
    await this.poll();
    return this;
  }

  /** Whether the tail reads on change events (else it polls every pollMs). */
  get watching(): boolean {
    return this.watched;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.watched) consoleDirectoryWatches.remove(this.path, this.changed);
    this.watched = false;
  }

  /** Resolves with the first line (from now on) matching `pattern`; rejects after `timeoutMs`. */
  waitFor(pattern: RegExp, timeoutMs: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const onLine = (line: string): void => {
        if (!pattern.test(line)) return;
        cleanup();
        resolve(line);
      };
      const timeout = setTimeout(() => {
        cleanup();
        reject(new Error(`no console line matching ${pattern} in ${this.path} within ${timeoutMs} ms`));
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timeout);
        this.off("line", onLine);
      };
      this.on("line", onLine);
    });
  }

  private async poll(): Promise<void> {
    if (!this.timer) return;
    if (this.reading) {
      this.again = true;
      return;
    }
    this.reading = true;
    this.again = false;
    try {
      const size = await stat(this.path).then(
        (s) => s.size,
        (err: NodeJS.ErrnoException) => (err.code === "ENOENT" ? -1 : Promise.reject(err)),
      );
      if (size < 0) return;
      if (size < this.offset) {
        this.offset = 0;
        this.partial = "";
      }
      if (size === this.offset) return;
      const fh = await open(this.path, "r");
      try {
        const buf = Buffer.alloc(Math.min(size - this.offset, READ_BYTES));
        while (this.offset < size && this.timer) {
          const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, size - this.offset), this.offset);
          if (bytesRead === 0) break;
          this.offset += bytesRead;
          this.emitText(this.decoder.write(buf.subarray(0, bytesRead)));
        }
      } finally {
        await fh.close();
      }
    } catch (err) {
      // An EventEmitter throws on an unheard "error"; a tail nobody watches for errors just retries.
      if (this.listenerCount("error") > 0)
        this.emit("error", err instanceof Error ? err : new Error(String(err)));
    } finally {
      this.reading = false;
    }
    if (this.again) await this.poll();
  }

  private emitText(text: string): void {
    const lines = (this.partial + text).split("\n");
    this.partial = lines.pop() ?? "";
    for (const line of lines) this.emit("line", line.replace(/\r$/, ""), false);
    while (this.partial.length > MAX_CONSOLE_LINE) {
      this.emit("line", this.partial.slice(0, MAX_CONSOLE_LINE), true);
      this.partial = this.partial.slice(MAX_CONSOLE_LINE);
    }
  }
}
