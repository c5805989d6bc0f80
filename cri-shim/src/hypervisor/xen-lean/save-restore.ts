// The lean backend's save, restore and migration stream, in-process through libsfxen (save.c,
// restore.c over libxenguest): no save helper process, no hotplug script, the stream written to and
// read from the caller's fd (a checkpoint file, or the migration's socket) by libxenguest itself.
// The stream is libxl's v2 format, so a stream either backend wrote restores in the other.
// PV domains only: PVH and HVM domains (built by libxl) keep libxl's path.
import { randomUUID } from "node:crypto";
import { logger } from "../../../../lib/log.js";
import { checkGuestDomid } from "../domain-state.js";
import { type DomainSpec, HypervisorError } from "../types.js";
import { type AsyncFn, call, loadLibrary, SFXEN_LIB_PATH } from "./sfxen-ffi.js";

const log = logger("xen-lean");
/** How long a guest gets to answer a suspend request (a loaded, emulated dom0 is slow). */
export const SUSPEND_TIMEOUT_MS = 30_000;
const KIND_PV = 1;
const SAVE_LIVE = 1;
const SAVE_ALL_PAGES = 2;
/** libsfxen's SFX_RESTORE_STATS. */
const RESTORE_STATS = 4;
/** Test-only: "1" sends all-zero pages with their data too (a stream as long as the guest's
 *  memory, for tests that cut a migration mid-stream). */
export const SAVE_ALL_PAGES_ENV = "SUPERFLUID_SAVE_ZERO_PAGES";

function bind(path: string) {
  const lib = loadLibrary(path);
  return {
    save: lib.func(
      "int sfx_save(int domid, int fd, int flags, int timeout_ms, void *stats, void *err, int errlen)",
    ) as unknown as AsyncFn<[number, number, number, number, Buffer, Buffer, number]>,
    resume: lib.func("int sfx_resume(int domid, void *err, int errlen)") as unknown as AsyncFn<
      [number, Buffer, number]
    >,
    restoreBegin: lib.func(
      "int sfx_restore_begin(const char *name, const char *uuid, int mem, int maxmem, int vcpus, int maxvcpus, void *ports, void *err, int errlen)",
    ) as unknown as AsyncFn<[string, string, number, number, number, number, Buffer, Buffer, number]>,
    restoreFill: lib.func(
      "int sfx_restore_fill(int domid, int fd, unsigned int store_port, unsigned int console_port, void *stats, void *err, int errlen)",
    ) as unknown as AsyncFn<[number, number, number, number, Buffer, Buffer, number]>,
    kind: lib.func("int sfx_domain_kind(int domid)") as unknown as AsyncFn<[number]>,
  };
}

/** Where a save's time and bytes went (libsfxen's SFX_SAVE_* slots). */
export interface SaveStats {
  ms: number;
  /** suspend request -> the domain shut down for suspend */ suspendMs: number;
  /** call start -> suspended */ suspendedAtMs: number;
  pages: number;
  /** all-zero pages sent without their data */ zeroPages: number;
  /** libxc's stream as libxenguest wrote it, and what reached fd */ bytesIn: number;
  bytesOut: number;
  /** CPU time of the zero-page filter */ filterCpuMs: number;
}

/** Where a restore's time went (ms; libsfxen's SFX_RESTORE_* slots and the steps around them). */
export interface RestorePhases {
  ms: number;
  /** the bare domain made and named */ beginMs: number;
  /** the caller's step between (vifs written and guarded), before the fill */ betweenMs: number;
  /** the fill as the caller saw it (start -> its call returned) */ filledMs: number;
  /** fill start -> the stream's header read (a migration waits for the source here) */ waitMs: number;
  /** libxenguest's restore, reading the stream included */ fillXcMs: number;
  /** CPU time of the filter between fd and libxenguest */ filterCpuMs: number;
  /** console nodes and the XenStore introduction */ fillXsMs: number;
}

function saveStats(b: Buffer): Omit<SaveStats, "ms"> {
  const at = (i: number) => Number(b.readBigInt64LE(i * 8));
  return {
    suspendMs: at(0),
    suspendedAtMs: at(1),
    pages: at(3),
    zeroPages: at(4),
    bytesIn: at(5),
    bytesOut: at(6),
    filterCpuMs: at(7),
  };
}

function checkFd(fd: number): void {
  if (!Number.isInteger(fd) || fd < 0)
    throw new HypervisorError(`not a file descriptor: ${JSON.stringify(fd)}`, "InvalidArgument");
}

/** libsfxen's stream calls (the library must have been opened by Sfxen.open first). */
export class SfxenStream {
  /** The last save's and restore's figures (also logged), for selftests and benchmarks. */
  lastSave: SaveStats | undefined;
  lastRestore: RestorePhases | undefined;

  private constructor(private readonly l: ReturnType<typeof bind>) {}

  static open(path = SFXEN_LIB_PATH): SfxenStream {
    return new SfxenStream(bind(path));
  }

  /** True for a PV domain (what this path saves); false for PVH/HVM or a domain that is gone. */
  isPv(domid: number): Promise<boolean> {
    return new Promise((resolve, reject) =>
      this.l.kind.async(domid, (e: unknown, rc: number) =>
        e ? reject(e instanceof Error ? e : new Error(String(e))) : resolve(rc === KIND_PV),
      ),
    );
  }

  /** Suspends the domain and writes it to fd; the domain is left suspended, not destroyed. */
  async save(domid: number, fd: number, live: boolean): Promise<SaveStats> {
    checkGuestDomid(domid, "save");
    checkFd(fd);
    const started = performance.now();
    const stats = Buffer.alloc(8 * 8);
    const flags = (live ? SAVE_LIVE : 0) | (process.env[SAVE_ALL_PAGES_ENV] === "1" ? SAVE_ALL_PAGES : 0);
    await call(this.l.save, domid, fd, flags, SUSPEND_TIMEOUT_MS, stats);
    const result = { ms: Math.round(performance.now() - started), ...saveStats(stats) };
    this.lastSave = result;
    log.info("domain saved in-process", { domid, live, ...result });
    return result;
  }

  /** Cancels a suspend: the guest carries on as the same domain. No-op when not suspended. */
  async resume(domid: number): Promise<void> {
    checkGuestDomid(domid, "resume");
    await call(this.l.resume, domid);
  }

  /**
   * A new paused domain from the stream on fd, named and shaped by spec. `between` runs once the
   * domain exists and before its memory is read (the caller wires its vifs there; netback makes
   * them while the stream is read). On any failure the domain is handed to `discard`.
   */
  async restore(
    spec: DomainSpec,
    fd: number,
    between: (domid: number) => Promise<void>,
    discard: (domid: number) => Promise<void>,
  ): Promise<number> {
    checkFd(fd);
    const started = performance.now();
    const ports = Buffer.alloc(8);
    const domid = await call(
      this.l.restoreBegin,
      spec.name,
      spec.uuid ?? randomUUID(),
      spec.memoryMiB,
      spec.maxMemoryMiB ?? spec.memoryMiB,
      spec.vcpus,
      spec.maxVcpus ?? spec.vcpus,
      ports,
    );
    const begun = performance.now();
    const stats = Buffer.alloc(RESTORE_STATS * 8);
    // One after the other, not side by side: under emulation the fill's threads keep vCPUs busy,
    // and whatever else waits meanwhile (each XenStore round trip, the guard, the event loop's
    // turn to see a step end) waited for them; the wiring beside the fill took 2-3x the fill.
    let wired = begun;
    try {
      await between(domid);
      wired = performance.now();
      await call(this.l.restoreFill, domid, fd, ports.readUInt32LE(0), ports.readUInt32LE(4), stats);
    } catch (err) {
      await discard(domid).catch(() => undefined);
      if (!(err instanceof HypervisorError)) throw err;
      throw new HypervisorError(`restore ${spec.name}: ${err.message}`, err.code);
    }
    const filled = performance.now();
    const slot = (i: number) => Number(stats.readBigInt64LE(i * 8));
    const phases: RestorePhases = {
      ms: Math.round(performance.now() - started),
      beginMs: Math.round(begun - started),
      betweenMs: Math.round(wired - begun),
      filledMs: Math.round(filled - wired),
      waitMs: slot(2),
      fillXcMs: slot(0),
      filterCpuMs: slot(3),
      fillXsMs: slot(1),
    };
    this.lastRestore = phases;
    log.info("domain restored in-process", { name: spec.name, domid, ...phases });
    return domid;
  }
}
