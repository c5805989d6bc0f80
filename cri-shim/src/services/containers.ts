// Containers: one unikernel domain each. CreateContainer builds the domain paused (kernel + command
// line), StartContainer only unpauses it, StopContainer asks for poweroff and destroys after the
// grace period. A sandbox holds one live container: the VM is the pod's one process.
import { randomBytes } from "node:crypto";
import { rm } from "node:fs/promises";
import { logger } from "../../../lib/log.js";
import { CriError, invalid, notFound } from "../errors.js";
import { ConsolePump, type ConsoleSource } from "../logs/cri-log.js";
import { guestConsoleLogPath } from "../hypervisor/console.js";
import { nowNs, type ContainerConfig, type ContainerState, type LinuxContainerResources } from "../proto.js";
import type { Entry } from "../store/store.js";
import type { RuntimeContext } from "./context.js";
import { criContainerState, exitFromShutdown } from "./container-state.js";
import { xenBootModesOfFile } from "./elf-notes.js";
import { guestDomainSpec, resizeFromResources } from "./guest-config.js";
import { checkSandboxTakes, planContainer } from "./container-plan.js";
import { CallTimer } from "./call-timer.js";
import { cachedImageKernels, collectKernelCache } from "./kernel-cache.js";
import type { ContainerMeta, ContainerStatusRecord } from "./model.js";
import { checkMetadata, checkName, checkRelativeLogPath, matchesLabels } from "./validate.js";

const log = logger("cri-container");
export type ContainerEntry = Entry<ContainerMeta, ContainerStatusRecord>;
const STOP_POLL_MS = 200;

export class ContainerService {
  constructor(private readonly rt: RuntimeContext) {}

  mustGet(id: string): ContainerEntry {
    checkName("container_id", id);
    const c = this.rt.containers.resolve(id);
    if (!c) throw notFound("container", id);
    return c;
  }

  /** True while the sandbox's domain exists (then its memory is taken, not merely promised). */
  hasLiveDomain(sandboxId: string): boolean {
    return this.sandboxesWithLiveDomain().has(sandboxId);
  }

  /** The sandboxes whose domain exists, in one pass over the containers (not one pass per sandbox). */
  sandboxesWithLiveDomain(): Set<string> {
    // A container still receiving its domain by migration has none yet: its memory stays promised.
    const out = new Set<string>();
    for (const c of this.rt.containers.list())
      if ((c.status.state === "created" || c.status.state === "running") && !c.status.incoming)
        out.add(c.meta.sandboxId);
    return out;
  }

  async create(sandboxId: string, config: ContainerConfig | null): Promise<string> {
    checkName("pod_sandbox_id", sandboxId);
    if (!config) throw invalid("config is required");
    if (!config.metadata) throw invalid("config.metadata is required");
    checkName("metadata.name", config.metadata.name);
    const imageRef = checkName("image.image", config.image?.image);
    const logRel = checkRelativeLogPath(config.log_path);
    checkMetadata(config.labels, config.annotations);
    const sb = this.rt.sandboxes.resolve(sandboxId);
    if (!sb) throw notFound("pod sandbox", sandboxId);

    const t = new CallTimer(); // where the call's time goes, logged with "container created"
    return this.rt.locks.run(sb.meta.id, async () => {
      t.mark("lockWait");
      const current = this.rt.sandboxes.get(sb.meta.id);
      if (current?.status.state !== "ready" || !current.status.network)
        throw new CriError("FailedPrecondition", `pod sandbox ${sb.meta.id} is not ready`);
      const md = config.metadata!;
      checkSandboxTakes(
        sb.meta.id,
        md,
        this.rt.containers
          .list()
          .filter((c) => c.meta.sandboxId === sb.meta.id)
          .map((c) => ({ id: c.meta.id, ...c.meta.metadata, exited: c.status.state === "exited" })),
      );
      const image = await this.rt.images.get(imageRef);
      if (!image)
        throw new CriError(
          "NotFound",
          `image ${JSON.stringify(imageRef.slice(0, 200))} is not present on this node; pull it first`,
        );
      t.mark("image");
      // Kernels are copied once per image into the tmpfs cache: the domain builder reads from RAM.
      const kernels = await cachedImageKernels(this.rt.options.kernelCacheDir, image);
      t.mark("kernels");
      const net = current.status.network;
      const { meta, status } = planContainer({
        id: randomBytes(32).toString("hex"),
        createdAt: nowNs(),
        sandbox: sb.meta,
        network: net,
        config: { ...config, metadata: md },
        imageRef,
        image,
        kernels,
        bootModes: xenBootModesOfFile(kernels.kernelPath),
        logRel,
        defaults: { memoryMiB: this.rt.options.defaultMemoryMiB, vcpus: this.rt.options.defaultVcpus },
      });
      const { id } = meta;
      const { memoryMiB, vcpus } = status;
      // A migration's target pod: the domain comes over the wire (the node agent receives it), not from the kernel.
      const migration = sb.meta.config.migrationTarget;
      if (migration && !sb.status.received) {
        await this.rt.containers.create(meta, { ...status, state: "created", incoming: { migration } });
        log.info("container created to receive a migration", {
          id,
          sandbox: sb.meta.id,
          migration,
          memoryMiB,
        });
        return id;
      }
      // A re-created container in a migrated-in pod boots with this sandbox's own address: the 1:1 NAT
      // to the address the received guest had brought from the source node must go first.
      if (sb.status.received) await this.rt.network.dropReaddressing(sb.meta.id);
      await this.rt.containers.create(meta, status);
      t.mark("record");
      try {
        const domid = await this.rt.hypervisor.createPaused(
          guestDomainSpec(meta, { memoryMiB, vcpus }, net, this.rt.options.vifAntiSpoof ?? false),
        );
        t.mark("domain");
        await this.rt.containers.update(id, (s) => ({ ...s, state: "created", domid }));
        t.mark("createdWrite");
        log.info("container created", {
          id,
          sandbox: sb.meta.id,
          domid,
          memoryMiB,
          image: imageRef,
          ...t.fields(),
        });
        return id;
      } catch (err) {
        const leftover = await this.rt.hypervisor.findByName(meta.domainName).catch(() => undefined);
        if (leftover) await this.rt.hypervisor.destroy(leftover.domid).catch(() => undefined);
        await this.rt.containers.delete(id);
        throw err;
      }
    });
  }

  async start(id: string): Promise<void> {
    const c = this.mustGet(id);
    const t = new CallTimer(); // where the call's time goes, logged with "container started"
    await this.rt.locks.run(c.meta.sandboxId, async () => {
      t.mark("lockWait");
      const cur = this.mustGet(c.meta.id);
      if (cur.status.state === "created" && cur.status.incoming) {
        // Running for the kubelet while the node agent receives the domain; no domain to unpause yet.
        // xenconsoled's log is read from its first byte once the restore creates it, so what the guest
        // prints right after its unpause (the ring it brought along) reaches the CRI log too.
        if (cur.meta.logPath && this.rt.options.consoleLogDir)
          await this.attachConsole(cur.meta.id, -1, cur.meta.domainName, cur.meta.logPath);
        await this.rt.containers.update(cur.meta.id, (s) => ({ ...s, state: "running", startedAt: nowNs() }));
        log.info("container started, waiting for its migration", {
          id: cur.meta.id,
          migration: cur.status.incoming.migration,
        });
        return;
      }
      if (cur.status.state !== "created" || cur.status.domid === undefined)
        throw new CriError(
          "FailedPrecondition",
          `container ${c.meta.id} is ${cur.status.state}, only a created container can start`,
        );
      const domid = cur.status.domid;
      if (cur.meta.logPath)
        await this.attachConsole(cur.meta.id, domid, cur.meta.domainName, cur.meta.logPath);
      t.mark("console");
      // runPolicy Paused: the domain is built and stays paused until the node agent resumes it.
      const sb = this.rt.sandboxes.get(cur.meta.sandboxId);
      if (sb?.meta.config.runPolicy !== "Paused") await this.rt.hypervisor.unpause(domid);
      t.mark("unpause"); // the lean backend's unpause waits for the guest's vifs on their bridge
      await this.rt.containers.update(cur.meta.id, (s) => ({ ...s, state: "running", startedAt: nowNs() }));
      t.mark("runningWrite");
      log.info("container started", { id: cur.meta.id, domid, ...t.fields() });
    });
  }

  async attachConsole(id: string, domid: number, domainName: string, logPath: string): Promise<void> {
    if (this.rt.pumps.has(id)) return;
    const dir = this.rt.options.consoleLogDir;
    const source: ConsoleSource = dir
      ? { kind: "xenconsoled-log", path: guestConsoleLogPath(domainName, dir) }
      : { kind: "pty", path: await this.rt.hypervisor.consolePath(domid) };
    this.rt.pumps.set(id, new ConsolePump(source, logPath));
    log.debug("console attached", { id, domid, source, logPath });
  }

  private async detachConsole(id: string): Promise<void> {
    const pump = this.rt.pumps.get(id);
    this.rt.pumps.delete(id);
    await pump?.stop();
  }

  /** Poweroff, wait up to timeoutSec for the guest, then destroy. Stopping a stopped container is a no-op. */
  async stop(id: string, timeoutSec: number): Promise<void> {
    checkName("container_id", id);
    let c = this.rt.containers.resolve(id);
    if (!c || c.status.state === "exited") return; // CRI: stopping a gone or stopped container is not an error
    if (c.status.outgoing) {
      // A migration's send owns the domain and holds the sandbox's lock until it settles it (destroyed
      // once the target runs, or resumed): stop after it, from the record it leaves.
      await this.rt.locks.run(c.meta.sandboxId, async () => undefined);
      c = this.rt.containers.get(c.meta.id);
      if (!c || c.status.state === "exited") return;
    }
    this.rt.stopping.add(c.meta.id);
    try {
      await this.stopDomain(c, timeoutSec);
    } finally {
      this.rt.stopping.delete(c.meta.id);
    }
  }

  private async stopDomain(c: ContainerEntry, timeoutSec: number): Promise<void> {
    const id = c.meta.id;
    const domid = c.status.domid;
    let ended: { exitCode: number; reason: string; message: string } = {
      exitCode: 0,
      reason: "Stopped",
      message: "stopped before it started",
    };
    // Suspended by the node agent: no domain to stop; the checkpoint is the VM's only state, dropped with it.
    if (c.status.suspended) {
      ended = { exitCode: 0, reason: "Stopped", message: "stopped while suspended to disk" };
      await rm(c.status.suspended.checkpoint, { force: true });
    }
    if (c.status.incoming) {
      ended = {
        exitCode: 0,
        reason: "Stopped",
        message: `stopped while receiving migration ${c.status.incoming.migration}`,
      };
      await this.cancelReceive(c);
    }
    // The domain runs on another node now: nothing here to stop, and nothing to destroy.
    if (c.status.migratedAway)
      ended = {
        exitCode: 0,
        reason: "MigratedAway",
        message: `the VM moved to another node (migration ${c.status.migratedAway.migration})`,
      };
    if (domid !== undefined) {
      let info = await this.rt.hypervisor.info(domid);
      if (
        info &&
        c.status.state === "running" &&
        timeoutSec > 0 &&
        info.state !== "shutdown" &&
        info.state !== "crashed"
      ) {
        await this.rt.hypervisor
          .shutdown(domid, "poweroff")
          .catch((err: unknown) => log.warn("shutdown request failed", { id, err: String(err) }));
        const deadline = Date.now() + timeoutSec * 1000;
        while (info && info.state !== "shutdown" && info.state !== "crashed" && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, STOP_POLL_MS));
          info = await this.rt.hypervisor.info(domid);
        }
      }
      if (c.status.state === "running")
        ended =
          info && (info.state === "shutdown" || info.state === "crashed")
            ? exitFromShutdown(info.shutdownReason, info.state)
            : info
              ? {
                  exitCode: 137,
                  reason: "Killed",
                  message: `the guest did not power off within ${timeoutSec}s; domain destroyed`,
                }
              : exitFromShutdown(undefined, "gone");
      await this.destroyDomain(domid, c.meta.domainName);
    }
    await this.markExited(c.meta.id, ended);
  }

  /** Aborts a receive in flight and destroys whatever domain it built (by name: it has no domid yet). */
  private async cancelReceive(c: ContainerEntry): Promise<void> {
    const receive = this.rt.receiving.get(c.meta.id);
    this.rt.receiving.delete(c.meta.id);
    await receive
      ?.cancel("the target pod's container was stopped")
      .catch((err: unknown) => log.warn("cancel of the receive failed", { id: c.meta.id, err: String(err) }));
    const leftover = await this.rt.hypervisor.findByName(c.meta.domainName).catch(() => undefined);
    if (leftover) await this.destroyDomain(leftover.domid, c.meta.domainName);
  }

  /** Records the exit, stops the console copy. Also used by the exit monitor and recovery. */
  async markExited(id: string, ended: { exitCode: number; reason: string; message: string }): Promise<void> {
    await this.detachConsole(id);
    let changed = false;
    await this.rt.containers.update(id, (s) => {
      if (s.state === "exited") return s; // the exit monitor got there first; its reason stands
      changed = true;
      return { ...s, state: "exited", finishedAt: nowNs(), domid: undefined, ...ended };
    });
    if (changed) log.info("container exited", { id, ...ended });
  }

  /** Destroys the domain if it is still there and still ours; a domain that vanished meanwhile is fine. */
  async destroyDomain(domid: number, name: string): Promise<void> {
    const info = await this.rt.hypervisor.info(domid);
    if (!info || info.name !== name) return;
    try {
      await this.rt.hypervisor.destroy(domid);
    } catch (err) {
      const after = await this.rt.hypervisor.info(domid).catch(() => info);
      if (after && after.name === name) throw err;
    }
  }

  async remove(id: string): Promise<void> {
    checkName("container_id", id);
    const c = this.rt.containers.resolve(id);
    if (!c) return; // CRI: idempotent
    await this.stop(c.meta.id, 0);
    if (c.meta.logPath) await rm(c.meta.logPath, { force: true });
    // xenconsoled's copy of this domain's console, unless a newer container of the sandbox uses it.
    const dir = this.rt.options.consoleLogDir;
    const sameDomainName = this.rt.containers
      .list()
      .some((o) => o.meta.id !== c.meta.id && o.meta.domainName === c.meta.domainName);
    if (dir && !sameDomainName) await rm(guestConsoleLogPath(c.meta.domainName, dir), { force: true });
    await this.rt.containers.delete(c.meta.id);
    log.info("container removed", { id: c.meta.id });
    // Its image may have gone while it was here: its kernel copy goes with the last user.
    await collectKernelCache(this.rt).catch((err: unknown) =>
      log.warn("kernel cache collection failed", { err: String(err) }),
    );
  }

  list(
    filter: {
      id: string;
      pod_sandbox_id: string;
      state: { state: ContainerState } | null;
      label_selector: Record<string, string>;
    } | null,
  ): ContainerEntry[] {
    return this.rt.containers.list().filter((c) => {
      if (c.status.state === "creating") return false;
      if (filter?.id && !c.meta.id.startsWith(filter.id)) return false;
      if (filter?.pod_sandbox_id && !c.meta.sandboxId.startsWith(filter.pod_sandbox_id)) return false;
      if (filter?.state && criContainerState(c.status) !== filter.state.state) return false;
      return matchesLabels(c.meta.labels, filter?.label_selector);
    });
  }

  /** memory_limit_in_bytes -> balloon target; cpu_quota/cpu_period -> online vcpus. */
  async updateResources(id: string, linux: LinuxContainerResources | null): Promise<void> {
    const c = this.mustGet(id);
    if (!linux) return;
    if (c.status.domid === undefined || (c.status.state !== "created" && c.status.state !== "running"))
      throw new CriError(
        "FailedPrecondition",
        `container ${c.meta.id} is ${c.status.state}; only a live domain can be resized`,
      );
    const domid = c.status.domid;
    const { memoryMiB, vcpus } = resizeFromResources(linux);
    if (memoryMiB !== undefined && memoryMiB !== c.status.memoryMiB)
      await this.rt.hypervisor.setMemory(domid, memoryMiB);
    if (vcpus !== undefined && vcpus !== c.status.vcpus) await this.rt.hypervisor.setVcpus(domid, vcpus);
    await this.rt.containers.update(c.meta.id, (s) => ({
      ...s,
      memoryMiB: memoryMiB ?? s.memoryMiB,
      vcpus: vcpus ?? s.vcpus,
    }));
  }

  async reopenLog(id: string): Promise<void> {
    const c = this.mustGet(id);
    if (c.status.state !== "running")
      throw new CriError("FailedPrecondition", `container ${c.meta.id} is not running`);
    const pump = this.rt.pumps.get(c.meta.id);
    if (!pump) throw new CriError("FailedPrecondition", `container ${c.meta.id} has no log file`);
    await pump.writer.reopen();
  }
}
