// The lean Xen backend: PV domains built in-process by libsfxen (native/lib/sfxen) from a pool of
// pre-built shells, vifs wired by XenStore writes and bridge ioctls, destroy without processes.
//
// What it does itself: createPaused (pv guests), destroy, and for PV domains save, restore, the
// migration stream and suspend-cancel (save-restore.ts: libxenguest in-process, vifs wired as at
// creation). Everything else goes through the libxl backend on the same node, which sees a
// lean-built domain as any other: its name and console are in XenStore where libxl looks for them.
// PVH guests are built, saved and restored by libxl (the shell builder is PV only), with no nic:
// their vifs are wired in-process too, while libxl builds them (libxl-vifs.ts); see docs/cri.md.
import { randomUUID } from "node:crypto";
import { logger } from "../../../../lib/log.js";
import { unguardDomainVifs } from "../../network/antispoof.js";
import {
  type LibxlBuildOptions,
  checkKernelFiles,
  checkNameFree,
  validateDomainSpec,
} from "../domain-config.js";
import { checkGuestDomid } from "../domain-state.js";
import type { XenLibxl } from "../xen-libxl.js";
import { XenStore } from "../xenstore.js";
import {
  type DomainInfo,
  type DomainSpec,
  type DomainStats,
  type HostInfo,
  type Hypervisor,
  HypervisorError,
  type RestoreOptions,
  type VifSpec,
} from "../types.js";
import { buildWithLeanVifs, type LibxlVifDeps } from "./libxl-vifs.js";
import { LeanMetrics } from "./metrics.js";
import { type Shape, ShellPool } from "./pool.js";
import { RemnantSweeper } from "./remnants.js";
import { SfxenStream } from "./save-restore.js";
import { SHELL_UUID_PREFIX, Sfxen } from "./sfxen-ffi.js";
import { LeanVifs } from "./lean-vifs.js";
import { bridgeExists, unattachedVifs, type VifAttacher } from "./vif-attach.js";
import type { WirePhases } from "./vif-wire.js";

const log = logger("xen-lean");

export interface XenLeanOptions {
  /** Shells per shape (0: no pool, every create is cold). */
  poolDepth: number;
  /** Memory all shells together may hold. */
  poolMaxMiB: number;
  poolShapes?: Shape[];
  metrics?: LeanMetrics;
  /** Destroy shells a previous process left and sweep what gone domains left in XenStore
   *  (default). Off for a tool running beside a shim. */
  reapStaleShells?: boolean;
}

export function isShell(d: Pick<DomainInfo, "name" | "uuid">): boolean {
  return d.uuid.startsWith(SHELL_UUID_PREFIX) && (d.name === "" || d.name.startsWith("sf-shell-"));
}

export class XenLean implements Hypervisor {
  readonly name = "xen-lean";
  readonly pool: ShellPool;
  readonly metrics: LeanMetrics;
  /** Removes what late writers put back after a destroy (remnants.ts). */
  readonly remnants: RemnantSweeper;
  private readonly vifs: VifAttacher;
  private readonly stream: SfxenStream;

  private readonly lean: LeanVifs;
  private readonly libxlVifDeps: LibxlVifDeps;
  /** The last in-process save's and restore's phases (selftests and benchmarks read them). */
  streamPhases(): Pick<SfxenStream, "lastSave" | "lastRestore"> & {
    lastWire?: WirePhases & { attachCallMs: number };
  } {
    const { lastWire: w, lastAttachCallMs } = this.lean;
    const lastWire = w && { ...w, attachCallMs: lastAttachCallMs };
    return { lastSave: this.stream.lastSave, lastRestore: this.stream.lastRestore, lastWire };
  }

  private constructor(
    private readonly sfx: Sfxen,
    private readonly libxl: XenLibxl,
    private readonly xs: XenStore,
    opts: XenLeanOptions,
  ) {
    this.stream = SfxenStream.open();
    this.metrics = opts.metrics ?? new LeanMetrics();
    this.remnants = new RemnantSweeper({
      xs,
      domains: async () => (await sfx.listDomains()).map(({ domid, dying }) => ({ domid, dying })),
      count: (outcome, n) => this.metrics.remnants.inc({ outcome }, n),
    });
    this.lean = new LeanVifs(sfx, xs, (domid) => this.remnants.watch(domid));
    this.vifs = this.lean.attacher;
    this.libxlVifDeps = {
      domids: async () => (await sfx.listDomains()).map((d) => d.domid),
      nameOf: (domid) => xs.read(`/local/domain/${domid}/name`),
      wire: (domid, spec) => this.lean.wire(domid, spec),
      unwire: (domid) => this.lean.unwire(domid),
      destroy: (domid) => this.destroy(domid),
    };
    this.pool = new ShellPool(
      {
        prepare: (name, s) => sfx.prepare(name, s.memoryMiB, s.maxMemoryMiB, s.vcpus, s.maxVcpus),
        destroy: (domid) => sfx.destroy(domid),
        freeKiB: () => sfx.freeKiB(),
      },
      {
        depth: opts.poolDepth,
        maxMiB: opts.poolMaxMiB,
        shapes: opts.poolShapes,
        onChange: (d) => this.metrics.setDepths(d),
      },
    );
  }

  /**
   * Opens libsfxen beside `libxl`, destroys shells a previous process left (their builder state
   * died with it, so they cannot be adopted), then starts filling the pool.
   */
  static async open(libxl: XenLibxl, opts: XenLeanOptions): Promise<XenLean> {
    const sfx = await Sfxen.open();
    const lean = new XenLean(sfx, libxl, XenStore.open(), opts);
    const stale = opts.reapStaleShells === false ? [] : (await libxl.list()).filter(isShell);
    for (const d of stale) {
      log.info("destroying a shell left by a previous shim", { domid: d.domid, name: d.name });
      await sfx.destroy(d.domid).catch((err: unknown) => log.warn("shell destroy", { err: String(err) }));
    }
    if (opts.reapStaleShells !== false) {
      const orphans = await lean.remnants.adoptOrphans();
      if (orphans.length > 0) log.info("sweeping XenStore nodes of gone domains", { domids: orphans });
    }
    lean.pool.kick();
    return lean;
  }

  host(): Promise<HostInfo> {
    return this.libxl.host();
  }
  /** Every domain but the pool's shells: one hypercall (libxl's list makes one per domain), cached names. */
  async list(): Promise<DomainInfo[]> {
    return (await this.allDomains()).filter((d) => !isShell(d));
  }
  info(domid: number): Promise<DomainInfo | undefined> {
    return this.libxl.info(domid);
  }
  async findByName(name: string): Promise<DomainInfo | undefined> {
    if (typeof name !== "string" || name.length === 0 || name.includes("\0")) return undefined;
    return (await this.allDomains()).find((d) => d.name === name);
  }
  private async allDomains(): Promise<DomainInfo[]> {
    return this.libxl.named(await this.sfx.listDomains());
  }

  async createPaused(spec: DomainSpec): Promise<number> {
    validateDomainSpec(spec);
    if (spec.guestType !== "pv")
      return this.vifsInProcess(spec, (build) => this.libxl.createPaused(spec, build));
    const checking = performance.now();
    await checkKernelFiles(spec);
    await this.checkPvName(spec.name);
    const shape: Shape = {
      memoryMiB: spec.memoryMiB,
      maxMemoryMiB: spec.maxMemoryMiB ?? spec.memoryMiB,
      vcpus: spec.vcpus,
      maxVcpus: spec.maxVcpus ?? spec.vcpus,
    };
    try {
      return await this.build(spec, shape, Math.round(performance.now() - checking));
    } finally {
      this.pool.kick();
    }
  }

  /** A PV domain's name: not the pool's prefix, and free. */
  private async checkPvName(name: string): Promise<void> {
    if (name.startsWith("sf-shell-"))
      throw new HypervisorError(`domain name prefix sf-shell- is reserved: ${name}`, "InvalidArgument");
    await checkNameFree((n) => this.findByName(n), name);
  }

  /** `checksMs`: the caller's checks before it (files readable, name unused), for the log. */
  private async build(spec: DomainSpec, shape: Shape, checksMs: number): Promise<number> {
    const started = performance.now();
    let domid = this.pool.take(shape);
    const path = domid === undefined ? "cold" : "warm";
    if (domid === undefined) {
      this.metrics.coldBuilds.inc();
      domid = await this.prepareCold(spec.name, shape);
    }
    const prepared = performance.now();
    const shell = domid;
    await this.sfx
      .execute(domid, {
        kernel: spec.kernelPath,
        initrd: spec.initrdPath,
        cmdline: spec.cmdline,
        name: spec.name,
        uuid: spec.uuid ?? randomUUID(),
      })
      .catch((err: unknown) => {
        this.remnants.watch(shell); // libsfxen destroyed it
        throw err;
      });
    const executed = performance.now();
    await this.lean.wireShell(domid, spec);
    const seconds = (performance.now() - started) / 1000;
    this.metrics.createSeconds.observe({ path }, seconds);
    log.info("create done", {
      name: spec.name,
      domid,
      path,
      ms: Math.round(seconds * 1000),
      checksMs,
      shellMs: Math.round(prepared - started),
      executeMs: Math.round(executed - prepared),
      vifWritesMs: Math.round(performance.now() - executed),
    });
    return domid;
  }

  /** A domain libxl builds (PVH): made with no nic, its vifs wired in-process meanwhile (libxl-vifs.ts). */
  private vifsInProcess(
    spec: DomainSpec,
    build: (opts: LibxlBuildOptions) => Promise<number>,
    onWired?: () => void,
  ): Promise<number> {
    // Xen's script would have failed the build on a missing bridge.
    for (const vif of spec.vifs)
      if (!bridgeExists(vif.bridge))
        throw new HypervisorError(`bridge ${vif.bridge} does not exist in dom0`, "NotFound");
    return buildWithLeanVifs(this.libxlVifDeps, spec, build, { avoid: this.remnants.recent(), onWired });
  }

  /**
   * A domain an earlier process built: its vifs whose backend has no hotplug-status "connected"
   * (the process died before netback's interface joined the bridge) are attached again, and
   * unpause() waits for them as after a create. XenStore is the record; vifs libxl's hotplug script
   * wires and vifs already attached are left alone.
   */
  async adopt(domid: number, vifs: VifSpec[]): Promise<void> {
    checkGuestDomid(domid, "adopt");
    if (this.vifs.has(domid)) return;
    const pending = await unattachedVifs(this.xs, domid, vifs, await this.libxlMade(domid));
    if (pending.length === 0) return;
    log.info("attaching vifs an earlier process left unattached", {
      domid,
      devids: pending.map((p) => p.devid),
    });
    this.vifs.attach(domid, pending);
  }

  /** A shell built on the request path; short of memory, the pool gives back shells of other shapes first. */
  private async prepareCold(name: string, shape: Shape): Promise<number> {
    const shellName = `sf-shell-cold-${name}`.slice(0, 64);
    try {
      return await this.sfx.prepare(
        shellName,
        shape.memoryMiB,
        shape.maxMemoryMiB,
        shape.vcpus,
        shape.maxVcpus,
      );
    } catch (err) {
      if (!(err instanceof HypervisorError) || err.code !== "OutOfMemory" || this.pool.heldMiB() === 0)
        throw err;
      await this.pool.release(shape.memoryMiB);
      return this.sfx.prepare(shellName, shape.memoryMiB, shape.maxMemoryMiB, shape.vcpus, shape.maxVcpus);
    }
  }

  /** Resolves when the domain's vifs are on their bridges (at once for a domain not built here). */
  vifsAttached(domid: number): Promise<void> {
    return this.vifs.attached(domid);
  }

  async unpause(domid: number): Promise<void> {
    await this.vifsAttached(domid);
    return this.libxl.unpause(domid);
  }
  pause(domid: number): Promise<void> {
    return this.libxl.pause(domid);
  }
  shutdown(domid: number, reason: "poweroff" | "reboot"): Promise<void> {
    return this.libxl.shutdown(domid, reason);
  }

  async destroy(domid: number): Promise<void> {
    checkGuestDomid(domid, "destroy");
    const started = performance.now();
    this.vifs.forget(domid);
    // The builder undoes its own records: a domain libxl made (a PVH guest, a restore, an incoming
    // migration) has libxl's XenStore directory, userdata file and hotplug-run vifs, which only
    // libxl's destroy removes. libxl's destroy drops the anti-spoofing rules too.
    const libxlMade = await this.libxlMade(domid);
    if (libxlMade) {
      await this.libxl.destroy(domid);
    } else {
      await this.sfx.destroy(domid);
      await unguardDomainVifs(domid).catch((err: unknown) =>
        log.warn("anti-spoofing rules of a destroyed domain not removed", { domid, err: String(err) }),
      );
    }
    await this.destroyed(domid, libxlMade);
    this.metrics.destroySeconds.observe((performance.now() - started) / 1000);
  }

  /** After a destroy (ours, or the one libxl's save does): the vifs wired in-process for a domain libxl
   *  made (a PVH domain) have backend entries libxl's destroy does not know; then the sweep. */
  private async destroyed(domid: number, libxlMade: boolean): Promise<void> {
    if (libxlMade) await this.lean.dropBackends(domid);
    this.remnants.watch(domid);
  }

  /** libxl records every domain it builds under /libxl/<domid>; libsfxen writes nothing there. */
  private async libxlMade(domid: number): Promise<boolean> {
    return (await this.xs.list(`/libxl/${domid}`)) !== undefined;
  }

  setMemory(domid: number, memoryMiB: number): Promise<void> {
    return this.libxl.setMemory(domid, memoryMiB);
  }
  setVcpus(domid: number, vcpus: number): Promise<void> {
    return this.libxl.setVcpus(domid, vcpus);
  }
  async save(domid: number, fd: number, opts: { live?: boolean } = {}): Promise<void> {
    if (!(await this.stream.isPv(domid))) {
      await this.libxl.save(domid, fd, opts);
      this.vifs.forget(domid);
      return this.destroyed(domid, true);
    }
    await this.stream.save(domid, fd, opts.live ?? false);
    // Its state lives in fd now; the suspended domain is an empty shell.
    await this.destroy(domid);
  }

  async migrateOut(domid: number, fd: number, opts: { live: boolean }): Promise<void> {
    if (!(await this.stream.isPv(domid))) return this.libxl.migrateOut(domid, fd, opts);
    await this.stream.save(domid, fd, opts.live);
  }

  async resumeSuspended(domid: number): Promise<void> {
    checkGuestDomid(domid, "resume");
    if (!(await this.stream.isPv(domid))) return this.libxl.resumeSuspended(domid);
    await this.stream.resume(domid);
  }

  async restore(spec: DomainSpec, fd: number, opts: RestoreOptions = {}): Promise<number> {
    validateDomainSpec(spec);
    let domid: number;
    if (spec.guestType !== "pv") {
      // Paused: unpause() here waits for the vifs joined in-process.
      // "Prepared" once the vifs are wired: the source stops its guest after that.
      domid = await this.vifsInProcess(
        spec,
        (build) => this.libxl.restore(spec, fd, { paused: true, build }),
        opts.onPrepared,
      );
    } else {
      await this.checkPvName(spec.name);
      // Vifs before the memory (written and guarded): netback makes their interfaces while the
      // stream is read.
      domid = await this.stream.restore(
        spec,
        fd,
        async (d) => {
          await this.lean.wireShell(d, spec);
          opts.onPrepared?.();
        },
        (d) => this.destroy(d),
      );
    }
    if (!opts.paused) {
      try {
        await this.unpause(domid);
      } catch (err) {
        await this.destroy(domid).catch(() => undefined);
        throw err;
      }
    }
    return domid;
  }
  /** @releaseDomain, from libsfxen's watch thread. */
  watchDomainEvents(onEvent: () => void, onEnd: (why: string) => void): Promise<() => void> {
    return this.sfx.releaseEvents(onEvent, onEnd);
  }
  stats(domid: number): Promise<DomainStats | undefined> {
    return this.libxl.stats(domid);
  }
  consolePath(domid: number): Promise<string> {
    return this.libxl.consolePath(domid);
  }

  async close(): Promise<void> {
    this.remnants.close();
    await this.pool.close();
    await this.libxl.close();
    this.xs.close();
  }
}
