// The Xen backend of the Hypervisor interface: libxenlight in-process through koffi (no `xl`).
// Every blocking libxl call runs on a koffi worker thread, so the shim's event loop stays free
// while a domain builds or saves. One libxl ctx serves all threads (libxl locks internally).
//
// The ctx, its log pipe and child-process handling live in libxl-context.ts; the C functions in
// libxl-ffi.ts and the structs in libxl-structs.ts; the domain config JSON in domain-config.ts; the
// read-only queries (host, list, info, findByName) and the mapping of a failed call to an error in
// libxl-queries.ts, as functions over the bindings and the ctx. What is left here is the class that
// owns the ctx and changes domains: build, pause, shutdown, destroy, resize, save and restore.
//
// Guest shutdown: xl's on_poweroff/on_crash handling lives in the xl process, not in libxl, so a
// domain that powers off or crashes stays in the list with its shutdown reason until destroy():
// that is what lets the CRI report exit codes.
import koffi from "koffi";
import { logger } from "../../../lib/log.js";
import { guardDomainVifs, unguardDomainVifs } from "../network/antispoof.js";
import {
  type LibxlBuildOptions,
  checkKernelFiles,
  checkNameFree,
  domainConfigJSON,
  validateDomainSpec,
} from "./domain-config.js";
import {
  type CPointer,
  DOMAIN_CONFIG_BUFFER_BYTES,
  LIBXL_CONSOLE_TYPE_PV,
  LIBXL_STREAM_VERSION,
  LIBXL_SUSPEND_LIVE,
  type LibxlBindings,
  type XtlLevel,
  allocFirstBitsMap,
  cAlloc,
  cFree,
  decode,
  encode,
  takeCString,
} from "./libxl-ffi.js";
import { type Dominfo, RestoreParamsType } from "./libxl-structs.js";
import { LibxlContext } from "./libxl-context.js";
import {
  domainInfo,
  findDomainByName,
  hostInfo,
  libxlFailure,
  listDomains,
  namedList,
} from "./libxl-queries.js";
import type { LibxlLogCapture } from "./libxl-log.js";
import { XenStat } from "./xenstat.js";
import { checkDomid, checkGuestDomid } from "./domain-state.js";
import {
  type DomainInfo,
  type DomainSpec,
  type DomainStats,
  type HostInfo,
  type Hypervisor,
  HypervisorError,
  type RestoreOptions,
} from "./types.js";

const log = logger("xen-libxl");
export interface XenLibxlOptions {
  /** libxl's own log level (its lines go to our logger); default from LIBXL_LOG_LEVEL or "warn". */
  libxlLogLevel?: XtlLevel;
}

export class XenLibxl implements Hypervisor {
  readonly name = "xen-libxl";
  private xenstat: XenStat | undefined;
  private readonly lib: LibxlBindings;
  private readonly ctx: CPointer;
  private readonly libxlLog: LibxlLogCapture;

  private constructor(private readonly context: LibxlContext) {
    this.lib = context.lib;
    this.ctx = context.ctx;
    this.libxlLog = context.libxlLog;
  }

  /** Opens a libxl ctx; fails with a clear error outside dom0 (no /dev/xen/privcmd). */
  static open(opts: XenLibxlOptions = {}): XenLibxl {
    const level = opts.libxlLogLevel ?? ((process.env.LIBXL_LOG_LEVEL as XtlLevel | undefined) || "warn");
    return new XenLibxl(LibxlContext.open(log, level));
  }

  /** Runs a libxl call that returns an rc; turns failures into HypervisorErrors with libxl's reason. */
  private async rc(op: string, domid: number | undefined, call: () => Promise<number>): Promise<void> {
    this.assertOpen();
    const mark = this.libxlLog.mark();
    const rc = await call();
    if (rc === 0) return;
    throw await this.failure(op, domid, rc, mark);
  }

  private failure(op: string, domid: number | undefined, rc: number, mark: number): Promise<HypervisorError> {
    return libxlFailure(this.context, op, domid, rc, mark);
  }

  private assertOpen(): void {
    this.context.assertOpen();
  }

  async host(): Promise<HostInfo> {
    this.assertOpen();
    return hostInfo(this.context);
  }

  async list(): Promise<DomainInfo[]> {
    this.assertOpen();
    return listDomains(this.context);
  }

  /** Names for a whole list of domains made elsewhere (the lean backend's one-hypercall list). */
  async named(infos: Dominfo[]): Promise<DomainInfo[]> {
    this.assertOpen();
    return namedList(this.context, infos);
  }

  async info(domid: number): Promise<DomainInfo | undefined> {
    this.assertOpen();
    return domainInfo(this.context, domid);
  }

  async findByName(name: string): Promise<DomainInfo | undefined> {
    this.assertOpen();
    return findDomainByName(this.context, name);
  }

  /** Checks what libxl would only discover half-way through a build, with clearer errors. */
  private async precheck(spec: DomainSpec): Promise<void> {
    validateDomainSpec(spec);
    await checkKernelFiles(spec);
    await checkNameFree((n) => this.findByName(n), spec.name);
    const { freeMemoryKiB } = await this.host();
    const wantKiB = spec.memoryMiB * 1024;
    if (wantKiB > freeMemoryKiB) {
      throw new HypervisorError(
        `domain ${spec.name} needs ${spec.memoryMiB} MiB but Xen has ${Math.floor(freeMemoryKiB / 1024)} MiB free`,
        "OutOfMemory",
      );
    }
  }

  /** libxl tears down a domain whose build failed, but a half-made one must never outlive an error. */
  private async removeLeftover(name: string): Promise<void> {
    const leftover = await this.findByName(name).catch(() => undefined);
    if (leftover) {
      log.warn("destroying half-built domain", { name, domid: leftover.domid });
      await this.lib.domainDestroy.async(this.ctx, leftover.domid, null);
    }
  }

  /** Builds the config in C memory, runs `build` with it, and always disposes it. */
  private async withConfig<T>(
    spec: DomainSpec,
    opts: LibxlBuildOptions,
    build: (config: CPointer) => Promise<T>,
  ): Promise<T> {
    const json = domainConfigJSON(spec, opts);
    const config = cAlloc(DOMAIN_CONFIG_BUFFER_BYTES);
    try {
      this.lib.domainConfigInit.sync(config);
      try {
        const mark = this.libxlLog.mark();
        const rc = await this.lib.domainConfigFromJson.async(this.ctx, config, json);
        if (rc !== 0) throw await this.failure(`parse config of ${spec.name}`, undefined, rc, mark);
        return await build(config);
      } finally {
        this.lib.domainConfigDispose.sync(config);
      }
    } finally {
      cFree(config);
    }
  }

  private async buildDomain(
    op: string,
    spec: DomainSpec,
    opts: LibxlBuildOptions,
    create: (config: CPointer, domidOut: CPointer) => Promise<number>,
  ): Promise<number> {
    this.assertOpen();
    await this.precheck(spec);
    const domidOut = cAlloc(4);
    try {
      return await this.withConfig(spec, opts, async (config) => {
        const mark = this.libxlLog.mark();
        const started = performance.now();
        const rc = await create(config, domidOut);
        if (rc !== 0) {
          const err = await this.failure(`${op} ${spec.name}`, undefined, rc, mark);
          await this.removeLeftover(spec.name);
          const { freeMemoryKiB } = await this.host().catch(() => ({ freeMemoryKiB: Infinity }));
          throw spec.memoryMiB * 1024 > freeMemoryKiB ? new HypervisorError(err.message, "OutOfMemory") : err;
        }
        const domid = decode<number>(domidOut, "uint32");
        // Anti-spoofing before the guest can run (in-process nftables; vifs given an IP only),
        // unless the caller wires the vifs (and guards them) itself.
        if (!opts.vifsByCaller)
          await guardDomainVifs(domid, spec.vifs).catch(async (err: unknown) => {
            await this.lib.domainDestroy.async(this.ctx, domid, null);
            throw new HypervisorError(`${op} ${spec.name}: anti-spoofing for its vifs: ${String(err)}`);
          });
        log.info(`${op} done`, { name: spec.name, domid, ms: Math.round(performance.now() - started) });
        return domid;
      });
    } finally {
      cFree(domidOut);
    }
  }

  /** `build`: how libxl makes the devices (the lean backend wires the vifs itself). */
  createPaused(spec: DomainSpec, build: LibxlBuildOptions = {}): Promise<number> {
    return this.buildDomain("create", spec, build, (config, domidOut) =>
      this.lib.domainCreateNew.async(this.ctx, config, domidOut, null, null),
    );
  }

  /** libxl's vif hotplug finished before createPaused returned: nothing is left in flight. */
  async adopt(): Promise<void> {}

  async unpause(domid: number): Promise<void> {
    checkGuestDomid(domid, "unpause");
    await this.rc("unpause", domid, () => this.lib.domainUnpause.async(this.ctx, domid, null));
  }

  async pause(domid: number): Promise<void> {
    checkGuestDomid(domid, "pause");
    await this.rc("pause", domid, () => this.lib.domainPause.async(this.ctx, domid, null));
  }

  async shutdown(domid: number, reason: "poweroff" | "reboot"): Promise<void> {
    checkGuestDomid(domid, "shut down");
    if (reason === "reboot")
      await this.rc("reboot", domid, () => this.lib.domainReboot.async(this.ctx, domid, null));
    else if (reason === "poweroff")
      await this.rc("shutdown", domid, () => this.lib.domainShutdown.async(this.ctx, domid, null));
    else
      throw new HypervisorError(
        `shutdown reason must be "poweroff" or "reboot", got ${JSON.stringify(reason)}`,
        "InvalidArgument",
      );
  }

  async destroy(domid: number): Promise<void> {
    checkGuestDomid(domid, "destroy");
    await this.rc("destroy", domid, () => this.lib.domainDestroy.async(this.ctx, domid, null));
    await this.unguard(domid);
  }

  /** Drops the anti-spoofing rules of a destroyed domain's vifs (a failure only leaves stale rules). */
  private async unguard(domid: number): Promise<void> {
    await unguardDomainVifs(domid).catch((err: unknown) =>
      log.warn("anti-spoofing rules of a destroyed domain not removed", { domid, err: String(err) }),
    );
  }

  async setMemory(domid: number, memoryMiB: number): Promise<void> {
    checkGuestDomid(domid, "set memory of");
    if (!Number.isInteger(memoryMiB) || memoryMiB < 1)
      throw new HypervisorError(
        `memoryMiB must be a positive integer, got ${JSON.stringify(memoryMiB)}`,
        "InvalidArgument",
      );
    const d = await this.info(domid);
    if (!d) throw new HypervisorError(`no domain ${domid}`, "NotFound");
    if (memoryMiB * 1024 > d.maxMemoryKiB) {
      throw new HypervisorError(
        `domain ${domid}: ${memoryMiB} MiB is above its maximum of ${Math.floor(d.maxMemoryKiB / 1024)} MiB`,
        "InvalidArgument",
      );
    }
    // enforce=1: also lower Xen's allocation ceiling, so a guest without a balloon driver cannot
    // take memory back beyond the new target.
    await this.rc("set memory", domid, () =>
      this.lib.setMemoryTarget.async(this.ctx, domid, memoryMiB * 1024, 0, 1),
    );
  }

  async setVcpus(domid: number, vcpus: number): Promise<void> {
    checkGuestDomid(domid, "set vcpus of");
    if (!Number.isInteger(vcpus) || vcpus < 1)
      throw new HypervisorError(
        `vcpus must be a positive integer, got ${JSON.stringify(vcpus)}`,
        "InvalidArgument",
      );
    const d = await this.info(domid);
    if (!d) throw new HypervisorError(`no domain ${domid}`, "NotFound");
    if (d.maxVcpus !== undefined && vcpus > d.maxVcpus) {
      throw new HypervisorError(
        `domain ${domid}: ${vcpus} vcpus is above its maximum of ${d.maxVcpus} (set maxVcpus at create)`,
        "InvalidArgument",
      );
    }
    const bitmap = allocFirstBitsMap(vcpus);
    try {
      await this.rc("set vcpus", domid, () =>
        this.lib.setVcpuonline.async(this.ctx, domid, bitmap.pointer, null),
      );
    } finally {
      bitmap.free();
    }
  }

  async save(domid: number, fd: number, opts: { live?: boolean } = {}): Promise<void> {
    await this.migrateOut(domid, fd, { live: opts.live ?? false });
    // The suspended domain stays as a shell in state "shutdown (suspend)"; its state lives in fd now.
    await this.rc("destroy after save", domid, () => this.lib.domainDestroy.async(this.ctx, domid, null));
    await this.unguard(domid);
  }

  async migrateOut(domid: number, fd: number, opts: { live: boolean }): Promise<void> {
    checkGuestDomid(domid, "save");
    if (!Number.isInteger(fd) || fd < 0)
      throw new HypervisorError(`not a file descriptor: ${JSON.stringify(fd)}`, "InvalidArgument");
    // libxl-save-helper gets the fd through fork+exec: libxl clears its CLOEXEC in the child
    // (dup_cloexec in libxl_save_callout.c), so our CLOEXEC socketpairs and files work.
    const flags = opts.live ? LIBXL_SUSPEND_LIVE : 0;
    await this.rc("save", domid, () => this.lib.domainSuspend.async(this.ctx, domid, fd, flags, null));
  }

  async resumeSuspended(domid: number): Promise<void> {
    checkGuestDomid(domid, "resume");
    const d = await this.info(domid);
    if (!d) throw new HypervisorError(`no domain ${domid}`, "NotFound");
    // A stream that failed during pre-copy never suspended the guest: nothing to undo. (Xen refuses
    // a suspend-cancel of a domain that is not shut down for suspend.)
    if (d.state !== "shutdown" || d.shutdownReason !== "suspend") return;
    await this.rc("resume", domid, () => this.lib.domainResume.async(this.ctx, domid, 1, null));
  }

  async restore(
    spec: DomainSpec,
    fd: number,
    opts: RestoreOptions & { build?: LibxlBuildOptions } = {},
  ): Promise<number> {
    if (!Number.isInteger(fd) || fd < 0)
      throw new HypervisorError(`not a file descriptor: ${JSON.stringify(fd)}`, "InvalidArgument");
    // libxl builds the domain and its devices inside one call that also reads the stream.
    opts.onPrepared?.();
    const params = cAlloc(koffi.sizeof(RestoreParamsType));
    try {
      this.lib.restoreParamsInit.sync(params);
      encode(params, "uint32", LIBXL_STREAM_VERSION, koffi.offsetof(RestoreParamsType, "stream_version"));
      const domid = await this.buildDomain("restore", spec, opts.build ?? {}, (config, domidOut) =>
        this.lib.domainCreateRestore.async(this.ctx, config, domidOut, fd, -1, params, null, null),
      );
      if (!opts.paused) {
        try {
          await this.unpause(domid);
        } catch (err) {
          await this.lib.domainDestroy.async(this.ctx, domid, null);
          throw err;
        }
      }
      return domid;
    } finally {
      this.lib.restoreParamsDispose.sync(params);
      cFree(params);
    }
  }

  async stats(domid: number): Promise<DomainStats | undefined> {
    this.assertOpen();
    checkDomid(domid);
    this.xenstat ??= XenStat.open();
    return this.xenstat.domain(domid);
  }

  async consolePath(domid: number): Promise<string> {
    checkDomid(domid);
    const out = cAlloc(8);
    try {
      await this.rc("get console tty", domid, () =>
        this.lib.consoleGetTty.async(this.ctx, domid, 0, LIBXL_CONSOLE_TYPE_PV, out),
      );
      const path = takeCString(this.lib, decode<CPointer | null>(out, "void *"));
      if (!path) throw new HypervisorError(`domain ${domid} has no console tty`, "NotFound");
      return path;
    } finally {
      cFree(out);
    }
  }

  /** Refuses new calls, waits for those in flight, then frees the ctx. */
  async close(): Promise<void> {
    if (this.context.closed) return;
    const closing = this.context.close();
    this.xenstat?.close();
    await closing;
  }
}

/** The Hypervisor for this node: libxl in dom0. */
export function openXenLibxl(opts: XenLibxlOptions = {}): Hypervisor {
  return XenLibxl.open(opts);
}
