// Guest console -> the kubelet's CRI log file. Each console line becomes
// `<RFC3339Nano> stdout F <line>` (P for a piece of an over-long line), which is what `crictl logs`
// and `kubectl logs` parse. The console is read either from xenconsoled's per-guest log (the default
// in dom0) or from the pty in raw mode through libuv's tty handle (no thread-pool thread per domain).
import {
  closeSync,
  createReadStream,
  createWriteStream,
  fstatSync,
  mkdirSync,
  openSync,
  constants,
  type WriteStream,
} from "node:fs";
import { dirname } from "node:path";
import { StringDecoder } from "node:string_decoder";
import { isatty, ReadStream as TtyReadStream } from "node:tty";
import { Socket } from "node:net";
import type { Readable } from "node:stream";
import { logger } from "../../../lib/log.js";
import { ConsoleTail, MAX_CONSOLE_LINE } from "../hypervisor/console.js";

const log = logger("cri-log");
/** Lines longer than this are split into P records, as containerd does (16 KiB). */
const MAX_LINE = MAX_CONSOLE_LINE;

/** RFC3339 with nanoseconds; JS time has milliseconds, the rest of the digits come from hrtime. */
export function rfc3339Nano(date = new Date()): string {
  const sub = (process.hrtime.bigint() % 1_000_000n).toString().padStart(6, "0");
  return date.toISOString().replace(/\.(\d{3})Z$/, `.$1${sub}Z`);
}

export function formatCriLogLine(line: string, partial: boolean, time = rfc3339Nano()): string {
  return `${time} stdout ${partial ? "P" : "F"} ${line}\n`;
}

export class CriLogWriter {
  private out: WriteStream | undefined;
  private pending = "";
  /** Keeps a UTF-8 character whole when the console hands it over in two chunks. */
  private readonly decoder = new StringDecoder("utf8");

  constructor(readonly path: string) {
    this.open();
  }

  private open(): void {
    mkdirSync(dirname(this.path), { recursive: true });
    // Opened synchronously: the file exists when the call that created the writer returns.
    this.out = createWriteStream("", { fd: openSync(this.path, "a", 0o640) });
    this.out.on("error", (err) => log.warn("log file write failed", { path: this.path, err: String(err) }));
  }

  /** Console bytes in; complete lines out. Carriage returns of the Xen console are dropped. */
  write(chunk: Buffer | string): void {
    this.pending += (typeof chunk === "string" ? chunk : this.decoder.write(chunk)).replace(/\r/g, "");
    let nl: number;
    while ((nl = this.pending.indexOf("\n")) >= 0) {
      this.emit(this.pending.slice(0, nl), false);
      this.pending = this.pending.slice(nl + 1);
    }
    while (this.pending.length >= MAX_LINE) {
      this.emit(this.pending.slice(0, MAX_LINE), true);
      this.pending = this.pending.slice(MAX_LINE);
    }
  }

  private emit(line: string, partial: boolean): void {
    this.out?.write(formatCriLogLine(line, partial));
  }

  /** After the kubelet rotated the file: close and open it again by path. */
  async reopen(): Promise<void> {
    await this.endStream();
    this.open();
  }

  async close(): Promise<void> {
    if (this.pending) this.emit(this.pending, false);
    this.pending = "";
    await this.endStream();
  }

  private endStream(): Promise<void> {
    const out = this.out;
    this.out = undefined;
    return new Promise((resolve) => (out ? out.end(() => resolve()) : resolve()));
  }
}

/** Opens a console for reading: a pty in raw mode, a FIFO as a socket, a regular file as a stream. */
export function openConsole(path: string): Readable {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOCTTY | constants.O_NONBLOCK);
  try {
    if (isatty(fd)) {
      const tty = new TtyReadStream(fd);
      tty.setRawMode(true); // no echo back into the guest, no line editing
      return tty;
    }
    if (fstatSync(fd).isFIFO()) return new Socket({ fd, readable: true, writable: false });
    closeSync(fd);
    return createReadStream(path);
  } catch (err) {
    try {
      closeSync(fd);
    } catch {
      /* already owned by a stream */
    }
    throw err;
  }
}

/** Where a domain's console output is read from. */
export type ConsoleSource =
  /** The console pty (libxl_console_get_tty), read in raw mode. */
  | { kind: "pty"; path: string }
  /** xenconsoled's per-guest log (--log=guest), tailed from its current end: it buffers what the
   * guest prints even while nobody reads, so nothing is lost before the first read. */
  | { kind: "xenconsoled-log"; path: string };

/** Copies one domain's console into its container's CRI log until stopped. */
export class ConsolePump {
  private source: Readable | undefined;
  private tail: ConsoleTail | undefined;
  readonly writer: CriLogWriter;

  constructor(console: ConsoleSource, logPath: string) {
    this.writer = new CriLogWriter(logPath);
    if (console.kind === "xenconsoled-log") {
      this.tail = new ConsoleTail(console.path, { fromEnd: true, pollMs: 100 });
      // A piece of an over-long line goes on without a newline: the writer makes it a P record.
      this.tail.on("line", (line, partial) => this.writer.write(partial ? line : `${line}\n`));
      this.tail.on("error", (err) =>
        log.debug("console log read failed", { path: console.path, err: String(err) }),
      );
      void this.tail
        .start()
        .catch((err: unknown) =>
          log.warn("cannot tail console log", { path: console.path, err: String(err) }),
        );
      return;
    }
    try {
      this.source = openConsole(console.path);
      this.source.on("data", (d: Buffer) => this.writer.write(d));
      // A pty reports EIO once the domain is gone: that is the end of the console, not a failure.
      this.source.on("error", (err) => log.debug("console closed", { path: console.path, err: String(err) }));
    } catch (err) {
      log.warn("cannot open console; the log stays empty", { path: console.path, err: String(err) });
    }
  }

  async stop(): Promise<void> {
    this.tail?.stop();
    this.source?.destroy();
    this.source = undefined;
    await this.writer.close();
  }
}
