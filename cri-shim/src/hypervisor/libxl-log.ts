// libxl reports the reason for a failure only through its xentoollog logger; the return code is
// just ERROR_FAIL most of the time. So the logger writes into a pipe that we drain ourselves: each
// line goes to our winston log, and the lines written during a failed call go into the error
// message the caller sees ("kernel file not found", "not enough memory" ...).
import { closeSync, readSync } from "node:fs";
import koffi from "koffi";
import type { Logger } from "../../../lib/log.js";
import {
  type CPointer,
  type LibxlBindings,
  XTL_LEVELS,
  XTL_STDIOSTREAM_HIDE_PROGRESS,
  type XtlLevel,
} from "./libxl-ffi.js";

const O_NONBLOCK = 0o4000;
/** ioctl: bytes waiting in a pipe. */
const FIONREAD = 0x541b;
const O_CLOEXEC = 0o2000000;
const IOLBF = 1;
/** Lines kept for attaching to errors; a failing call rarely logs more than a handful. */
const KEEP_LINES = 200;

/** A libc function bound by its C declaration. */
const libcFunc = <F>(declaration: string): F => koffi.load("libc.so.6").func(declaration) as unknown as F;

interface LogLine {
  seq: number;
  text: string;
}

export class LibxlLogCapture {
  private partial = "";
  private seq = 0;
  private readonly recent: LogLine[] = [];
  private readonly drainTimer: NodeJS.Timeout;
  private closed = false;
  /** One read buffer for every drain, and the count FIONREAD answers into. */
  private readonly buf = Buffer.allocUnsafe(65536);
  private readonly waiting = new Int32Array(1);

  private constructor(
    private readonly lib: LibxlBindings,
    private readonly log: Logger,
    private readonly readFd: number,
    private readonly stream: CPointer,
    /** The xentoollog_logger* to hand to libxl_ctx_alloc. */
    readonly xtlLogger: CPointer,
    private readonly pending: (fd: number, out: Int32Array) => number,
  ) {
    // libxl may log from worker threads while JS is idle; drain often, so the pipe never fills and
    // a line's timestamp is within 50 ms of when libxl wrote it (the phases of a restore read from it)
    // (both ends are non-blocking: a full pipe drops libxl's log lines instead of stalling libxl).
    this.drainTimer = setInterval(() => this.drain(), 50);
    this.drainTimer.unref();
  }

  static open(lib: LibxlBindings, log: Logger, level: XtlLevel): LibxlLogCapture {
    const fds = new Int32Array(2);
    const pipe2 = libcFunc<(fds: Int32Array, flags: number) => number>(
      "int pipe2(_Out_ int *fds, int flags)",
    );
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) !== 0) throw new Error(`pipe2 failed: errno ${koffi.errno()}`);
    const [readFd, writeFd] = [fds[0] ?? -1, fds[1] ?? -1];
    const stream = lib.fdopen.sync(writeFd, "w");
    if (stream === null) {
      closeSync(readFd);
      closeSync(writeFd);
      throw new Error("fdopen of the libxl log pipe failed");
    }
    const setvbuf = libcFunc<(f: CPointer, buf: null, mode: number, size: number) => number>(
      "int setvbuf(void *f, void *buf, int mode, size_t size)",
    );
    setvbuf(stream, null, IOLBF, 0);
    const xtl = lib.xtlCreateStdioLogger.sync(stream, XTL_LEVELS[level], XTL_STDIOSTREAM_HIDE_PROGRESS);
    if (xtl === null) {
      lib.fclose.sync(stream);
      closeSync(readFd);
      throw new Error("xtl_createlogger_stdiostream failed");
    }
    const ioctl = libcFunc<(fd: number, request: number, count: Int32Array) => number>(
      "int ioctl(int fd, unsigned long request, _Out_ int *count)",
    );
    return new LibxlLogCapture(lib, log, readFd, stream, xtl, (fd, out) => ioctl(fd, FIONREAD, out));
  }

  /** A marker: lines logged after it are "since" it. */
  mark(): number {
    this.drain();
    return this.seq;
  }

  /** Lines logged since `mark`, oldest first. */
  since(mark: number): string[] {
    this.drain();
    return this.recent.filter((l) => l.seq > mark).map((l) => l.text);
  }

  /**
   * Reads whatever libxl wrote so far. Asks the pipe how much waits first: it runs every 50 ms and
   * around every libxl call, and an empty pipe's read is an EAGAIN error Node builds (with its stack)
   * each time, which with a fresh 64 KiB buffer per call was ~2 % of a busy shim's event loop.
   */
  drain(): void {
    if (this.closed) return;
    for (;;) {
      if (this.pending(this.readFd, this.waiting) !== 0 || this.waiting[0]! <= 0) return;
      let n: number;
      try {
        n = readSync(this.readFd, this.buf, 0, Math.min(this.buf.length, this.waiting[0]!), null);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "EAGAIN") return;
        throw err;
      }
      if (n === 0) return;
      this.partial += this.buf.toString("utf8", 0, n);
      const lines = this.partial.split("\n");
      this.partial = lines.pop() ?? "";
      for (const text of lines) if (text.trim()) this.push(text);
    }
  }

  private push(text: string): void {
    this.recent.push({ seq: ++this.seq, text });
    if (this.recent.length > KEEP_LINES) this.recent.shift();
    if (/: (error|critical):/.test(text)) this.log.error(text);
    else if (/: warning:/.test(text)) this.log.warn(text);
    else this.log.debug(text);
  }

  /** Call after libxl_ctx_free: the logger must outlive the ctx. */
  close(): void {
    if (this.closed) return;
    this.drain();
    this.closed = true;
    clearInterval(this.drainTimer);
    this.lib.xtlLoggerDestroy.sync(this.xtlLogger);
    this.lib.fclose.sync(this.stream);
    closeSync(this.readFd);
  }
}
