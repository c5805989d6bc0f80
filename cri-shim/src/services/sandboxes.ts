// Pod sandboxes. RunPodSandbox builds no domain (the image may not be pulled yet): it validates the
// pod's superfluid annotations, holds back the guest's memory against the host's free memory, and
// leases the pod IP. The domain itself is built by CreateContainer (see hypervisor/types.ts).
import { randomBytes } from "node:crypto";
import { logger } from "../../../lib/log.js";
import { parseSandboxAnnotations, RUNTIME_CLASS } from "../../../api/annotations.js";
import { CriError, invalid, notFound } from "../errors.js";
import { nowNs, type PodSandboxConfig, type PodSandboxState } from "../proto.js";
import type { Entry } from "../store/store.js";
import type { RuntimeContext } from "./context.js";
import type { SandboxMeta, SandboxStatus } from "./model.js";
import type { ContainerService } from "./containers.js";
import { type Holder, MemoryAdmission } from "./memory-admission.js";
import { checkAbsoluteDir, checkHostname, checkMetadata, checkName, matchesLabels } from "./validate.js";

const log = logger("cri-sandbox");
export type SandboxEntry = Entry<SandboxMeta, SandboxStatus>;

export function criSandboxState(status: SandboxStatus): PodSandboxState {
  return status.state === "ready" ? "SANDBOX_READY" : "SANDBOX_NOTREADY";
}

export class SandboxService {
  /** Sandboxes admitted under the name lock whose record is still being written. */
  private readonly claims = new Map<string, SandboxMeta>();
  private readonly memory: MemoryAdmission;

  constructor(
    private readonly rt: RuntimeContext,
    private readonly containers: ContainerService,
  ) {
    this.memory = new MemoryAdmission({
      live: () => this.containers.sandboxesWithLiveDomain(),
      freeKiB: async () => (await this.rt.hypervisor.host()).freeMemoryKiB,
    });
  }

  /** Resolves an id (or unique prefix) to a sandbox, NotFound otherwise. */
  mustGet(id: string): SandboxEntry {
    checkName("pod_sandbox_id", id);
    const sb = this.rt.sandboxes.resolve(id);
    if (!sb) throw notFound("pod sandbox", id);
    return sb;
  }

  async run(config: PodSandboxConfig | null, runtimeHandler: string): Promise<string> {
    if (!config) throw invalid("config is required");
    const md = config.metadata;
    if (!md) throw invalid("config.metadata is required");
    checkName("metadata.name", md.name);
    checkName("metadata.namespace", md.namespace);
    checkName("metadata.uid", md.uid);
    checkHostname(config.hostname);
    checkAbsoluteDir("log_directory", config.log_directory);
    checkName("runtime_handler", runtimeHandler, false);
    if (runtimeHandler && !this.rt.options.runtimeHandlers.includes(runtimeHandler))
      throw invalid(
        `runtime handler ${JSON.stringify(runtimeHandler.slice(0, 80))} is not served here (known: ${[RUNTIME_CLASS, ...this.rt.options.runtimeHandlers].filter((v, i, a) => a.indexOf(v) === i).join(", ")})`,
      );
    checkMetadata(config.labels, config.annotations);
    const parsed = parseSandboxAnnotations(config.annotations);
    const nameKey = `${md.name}_${md.namespace}_${md.uid}_${md.attempt}`;

    // Only the name and the memory are claimed under the lock, in memory (the memory check from a
    // snapshot of Xen's free memory, memory-admission.ts); the record, the address and the ready
    // write come after it. A burst of sandboxes waited in one line for each other's records and
    // libxl calls: 50 at once took 20-30 s each in an emulated dom0.
    const t = { start: performance.now(), locked: 0, memory: 0, claimed: 0, leased: 0 };
    const meta = await this.rt.locks.run("sandbox-names", async () => {
      t.locked = performance.now();
      const dup =
        this.rt.sandboxes.list().find((s) => s.meta.nameKey === nameKey)?.meta ??
        [...this.claims.values()].find((m) => m.nameKey === nameKey);
      if (dup)
        throw new CriError("AlreadyExists", `sandbox name ${nameKey} is already used by sandbox ${dup.id}`);
      const reservedMiB = parsed.memoryMiB ?? this.rt.options.defaultMemoryMiB;
      await this.checkMemory(reservedMiB);
      t.memory = performance.now();
      const id = randomBytes(32).toString("hex");
      const meta: SandboxMeta = {
        id,
        metadata: { name: md.name, namespace: md.namespace, uid: md.uid, attempt: md.attempt },
        nameKey,
        labels: { ...config.labels },
        annotations: { ...config.annotations },
        runtimeHandler,
        hostname: config.hostname,
        logDirectory: config.log_directory,
        createdAt: nowNs(),
        config: parsed,
        domainName: `sf-${id.slice(0, 12)}`,
        reservedMiB,
      };
      this.claims.set(id, meta);
      return meta;
    });
    try {
      // Written first as "creating", so a crash before the end is cleaned up by recovery (CNI DEL).
      await this.rt.sandboxes.create(meta, { state: "creating" });
    } finally {
      this.claims.delete(meta.id);
    }
    t.claimed = performance.now();
    const { id } = meta;
    try {
      const network = await this.rt.network.setUp(id);
      t.leased = performance.now();
      await this.rt.sandboxes.update(id, () => ({ state: "ready", network }));
      const ms = (a: number, b: number) => Math.round(b - a);
      log.info("sandbox ready", {
        id,
        pod: `${md.namespace}/${md.name}`,
        ip: network.ip,
        reservedMiB: meta.reservedMiB,
        // Where the call's time went: waiting for the name lock, the memory check under it, the
        // record (after it), the address lease, the ready write.
        ms: ms(t.start, performance.now()),
        lockWaitMs: ms(t.start, t.locked),
        memoryMs: ms(t.locked, t.memory),
        recordMs: ms(t.memory, t.claimed),
        leaseMs: ms(t.claimed, t.leased),
        readyMs: ms(t.leased, performance.now()),
      });
      return id;
    } catch (err) {
      await this.rt.network
        .tearDown(id)
        .catch((e: unknown) => log.warn("CNI DEL after failed run", { id, err: String(e) }));
      await this.rt.sandboxes.delete(id);
      throw err;
    }
  }

  /** Memory not yet taken by a domain but promised to sandboxes, plus this one, must fit. */
  private async checkMemory(requestMiB: number): Promise<void> {
    const holders = (): Holder[] => [
      ...this.rt.sandboxes.list().map((s) => ({
        id: s.meta.id,
        reservedMiB: s.meta.reservedMiB,
        released: s.status.state === "notready",
      })),
      ...[...this.claims.values()].map((m) => ({ id: m.id, reservedMiB: m.reservedMiB, released: false })),
    ];
    const r = await this.memory.fits(requestMiB, holders);
    if (!r.ok)
      throw new CriError(
        "ResourceExhausted",
        `sandbox needs ${requestMiB} MiB of guest memory; the node has ${r.freeMiB} MiB free and ${r.promisedMiB} MiB of it promised to other sandboxes`,
      );
  }

  /** Stops every container (no grace: the kubelet stopped them already when it cared) and frees the IP. */
  async stop(id: string): Promise<void> {
    checkName("pod_sandbox_id", id);
    const sb = this.rt.sandboxes.resolve(id);
    if (!sb) return; // CRI: must not fail when everything is already reclaimed
    await this.rt.locks.run(sb.meta.id, async () => {
      for (const c of this.rt.containers.list().filter((c) => c.meta.sandboxId === sb.meta.id))
        await this.containers.stop(c.meta.id, 0);
      await this.rt.network.tearDown(sb.meta.id);
      await this.rt.sandboxes.update(sb.meta.id, () => ({ state: "notready" }));
    });
    log.info("sandbox stopped", { id: sb.meta.id });
  }

  async remove(id: string): Promise<void> {
    checkName("pod_sandbox_id", id);
    const sb = this.rt.sandboxes.resolve(id);
    if (!sb) return; // CRI: removing a removed sandbox is not an error
    await this.stop(sb.meta.id);
    await this.rt.locks.run(sb.meta.id, async () => {
      for (const c of this.rt.containers.list().filter((c) => c.meta.sandboxId === sb.meta.id))
        await this.containers.remove(c.meta.id);
      await this.rt.sandboxes.delete(sb.meta.id);
    });
    log.info("sandbox removed", { id: sb.meta.id });
  }

  list(
    filter: {
      id: string;
      state: { state: PodSandboxState } | null;
      label_selector: Record<string, string>;
    } | null,
  ): SandboxEntry[] {
    return this.rt.sandboxes.list().filter((s) => {
      if (s.status.state === "creating") return false;
      if (filter?.id && !s.meta.id.startsWith(filter.id)) return false;
      if (filter?.state && criSandboxState(s.status) !== filter.state.state) return false;
      return matchesLabels(s.meta.labels, filter?.label_selector);
    });
  }
}
