// One libxl ctx and what must live and die with it: the log pipe, the child-process mode, and the
// gate that lets close() wait for worker-thread calls still using the ctx.
//
// Child processes: libxl forks hotplug scripts (vif-bridge) and libxl-save-helper. Its default
// SIGCHLD mode installs a handler that would fight libuv's, so the ctx runs in
// libxl_sigchld_owner_mainloop mode: Node's own SIGCHLD listener tells libxl "a child exited" and
// libxl reaps only its own children; Node keeps reaping the shim's (CNI plugins ...).
import koffi from "koffi";
import type { Logger } from "../../../lib/log.js";
import {
  type CPointer,
  LIBXL_SIGCHLD_OWNER_MAINLOOP,
  type LibxlBindings,
  type XtlLevel,
  cAlloc,
  cFree,
  decode,
  encode,
  gatedBindings,
  libxlBindings,
  libxlErrorName,
} from "./libxl-ffi.js";
import { ChildprocHooksType } from "./libxl-structs.js";
import { LibxlLogCapture } from "./libxl-log.js";
import { HypervisorError } from "./types.js";
import { DomainNameCache } from "./domain-names.js";

export class LibxlContext {
  /** Bindings whose worker-thread calls are refused once close() has begun. */
  readonly lib: LibxlBindings;
  /** Domain names read from XenStore, by domid and uuid (libxl-queries.ts). */
  readonly names = new DomainNameCache({ maxAgeMs: 300_000, concurrency: 8 });
  private closing = false;
  private inflight = 0;
  private drained: (() => void) | undefined;
  private readonly onSigchld = (): void => {
    // A worker thread, because libxl may hold its ctx lock for a while inside a domain build. The
    // ungated binding: a save in flight during close() still needs its helper's exit delivered.
    void this.rawLib.childprocSigchldOccurred
      .async(this.ctx)
      .catch((err: unknown) => this.log.error("sigchld dispatch failed", { err: String(err) }));
  };

  private constructor(
    private readonly rawLib: LibxlBindings,
    readonly ctx: CPointer,
    private readonly hooks: CPointer,
    readonly libxlLog: LibxlLogCapture,
    private readonly log: Logger,
  ) {
    this.lib = gatedBindings(rawLib, {
      enter: () => {
        this.assertOpen();
        this.inflight++;
      },
      leave: () => {
        if (--this.inflight === 0) this.drained?.();
      },
    });
    process.on("SIGCHLD", this.onSigchld);
  }

  /** Opens a libxl ctx; fails with a clear error outside dom0 (no /dev/xen/privcmd). */
  static open(log: Logger, level: XtlLevel): LibxlContext {
    const lib = libxlBindings();
    const libxlLog = LibxlLogCapture.open(lib, log, level);
    const mark = libxlLog.mark();
    const ctxOut = cAlloc(8);
    try {
      const rc = lib.ctxAlloc.sync(ctxOut, 0, 0, libxlLog.xtlLogger);
      const ctx = decode<CPointer | null>(ctxOut, "void *");
      if (rc !== 0 || ctx === null) {
        const why = libxlLog.since(mark).join("; ");
        libxlLog.close();
        throw new HypervisorError(
          `cannot open libxl (is this dom0 with xenstored running?): ${libxlErrorName(rc)}${why ? `: ${why}` : ""}`,
        );
      }
      // libxl keeps a pointer to the hooks: they must outlive the ctx (freed in close()).
      const hooks = cAlloc(koffi.sizeof(ChildprocHooksType));
      encode(hooks, ChildprocHooksType, {
        chldowner: LIBXL_SIGCHLD_OWNER_MAINLOOP,
        fork_replacement: null,
        reaped_callback: null,
      });
      lib.childprocSetmode.sync(ctx, hooks, null);
      return new LibxlContext(lib, ctx, hooks, libxlLog, log);
    } finally {
      cFree(ctxOut);
    }
  }

  get closed(): boolean {
    return this.closing;
  }

  assertOpen(): void {
    if (this.closing) throw new HypervisorError("hypervisor connection is closed");
  }

  /** Refuses new calls, waits for those in flight, then frees the ctx. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    if (this.inflight > 0) await new Promise<void>((resolve) => (this.drained = resolve));
    process.off("SIGCHLD", this.onSigchld);
    await this.rawLib.ctxFree.async(this.ctx);
    cFree(this.hooks);
    this.libxlLog.close();
  }
}
