// Guest console output for the CRI log. xenconsoled (started with --log=guest) appends every
// domain's console to <dir>/guest-<name>.log, buffered by the daemon even when no one reads, so a
// tail of that file loses nothing between create and the first read; reading the pty instead would
// race with xenconsoled and drop whatever the guest printed before we opened it.
import { EventEmitter } from "node:events";
import { open, stat } from "node:fs/promises";
import { join } from "node:path";
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
  /** Polling works on every filesystem dom0 may use (tmpfs, overlay on 9p) where inotify may not. */
  pollMs?: number;
}

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

  constructor(
    readonly path: string,
    private readonly opts: ConsoleTailOptions = {},
  ) {
    super();
  }

  async start(): Promise<this> {
    if (this.timer) return this;
    this.offset = this.opts.fromEnd
      ? await stat(this.path).then(
          (s) => s.size,
          () => 0,
        )
      : 0;
    this.timer = setInterval(() => void this.poll(), this.opts.pollMs ?? 100);
    await this.poll();
    return this;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
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
    if (this.reading || !this.timer) return;
    this.reading = true;
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
