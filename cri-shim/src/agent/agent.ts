// The node agent: runs in the shim's process, watches the UnikernelVMs placed on this node and makes
// each one's domain follow spec.runPolicy (pause, suspend to disk, resume or restore). It owns the
// Paused and Suspended conditions and the phase they imply (status subresource, field manager
// superfluid-node-agent) and the domain annotations on the pod; the operator owns the rest of status.
import type { KubeConfig } from "@kubernetes/client-node";
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { logger } from "../../../lib/log.js";
import { ANNOTATIONS, UNIKERNELVM_PLURAL, type UnikernelVM } from "../../../api/index.js";
import { watchResource, type Watched } from "../../../lib/kube/informers.js";
import { isNotFound, KubeClient, paths } from "../../../lib/kube/client.js";
import type { CriRuntime } from "../runtime.js";
import type { ContainerEntry } from "../services/containers.js";
import { sandboxRunsVM } from "../services/validate.js";
import { AGENT_FIELD_MANAGER, type AgentObservation, agentStatus, agentStatusDiffers } from "./conditions.js";
import { type AgentAction, decide, type ObservedDomain } from "./decide.js";
import { checkpointPath, DEFAULT_CHECKPOINT_DIR, DomainOps, fileExists } from "./domain-ops.js";
import { MigrationAgent } from "./migration-agent.js";

const log = logger("node-agent");

export interface NodeAgentConfig {
  kubeConfig: KubeConfig;
  nodeName: string;
  runtime: CriRuntime;
  checkpointDir?: string;
  /** A full pass over every VM even without watch events (ms); catches domains changed behind our back. */
  resyncMs?: number;
  /** Where this node receives migrations (host part of targetEndpoint); default: the Node's first InternalIP. */
  nodeAddress?: string;
  /** Inactivity timeout of a migration stream (ms); the stream module's default (30 s) when unset. */
  streamTimeoutMs?: number;
}

type Failure = NonNullable<AgentObservation["failure"]>;

export class NodeAgent {
  private readonly client: KubeClient;
  private readonly vms: Watched<UnikernelVM>;
  private readonly ops: DomainOps;
  private readonly migration: MigrationAgent;
  /** Failures by VM uid, kept for the generation they happened in (a spec change retries). */
  private readonly failures = new Map<
    string,
    { generation: number | undefined; failure: Failure; attempts: number; retryAt?: number }
  >();
  private timer: NodeJS.Timeout | undefined;
  private pass: Promise<void> | undefined;
  private again = false;
  private stopped = false;

  constructor(private readonly config: NodeAgentConfig) {
    this.client = new KubeClient(config.kubeConfig);
    this.vms = watchResource<UnikernelVM>(config.kubeConfig, this.client, paths.custom(UNIKERNELVM_PLURAL));
    this.ops = new DomainOps(
      config.runtime.ctx,
      config.runtime.containers,
      config.checkpointDir ?? DEFAULT_CHECKPOINT_DIR,
    );
    this.migration = new MigrationAgent({
      kubeConfig: config.kubeConfig,
      client: this.client,
      nodeName: config.nodeName,
      runtime: config.runtime,
      ops: this.ops,
      ...(config.nodeAddress ? { nodeAddress: config.nodeAddress } : {}),
      ...(config.streamTimeoutMs ? { streamTimeoutMs: config.streamTimeoutMs } : {}),
    });
  }

  async start(): Promise<void> {
    for (const verb of ["add", "update", "delete"] as const) this.vms.on(verb, () => this.kick());
    await this.migration.start(() => this.kick());
    await this.vms.start();
    this.timer = setInterval(() => this.kick(), this.config.resyncMs ?? 5000);
    this.timer.unref();
    this.kick();
    log.info("node agent watching", { node: this.config.nodeName, checkpoints: this.ops.checkpointDir });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.vms.stop();
    await this.migration.stop();
    await this.pass;
    this.client.close();
  }

  /** One reconcile pass at a time; events during a pass ask for one more. */
  kick(): void {
    if (this.stopped) return;
    if (this.pass) {
      this.again = true;
      return;
    }
    this.pass = this.reconcileAll()
      .catch((err: unknown) => {
        log.warn("reconcile pass failed", { err: String(err) });
      })
      .finally(() => {
        this.pass = undefined;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  /** The live container of a VM on this node: its sandbox is bound to the VM by namespace, name and uid. */
  private containerOf(vm: UnikernelVM): ContainerEntry | undefined {
    const rt = this.config.runtime.ctx;
    const sandboxes = rt.sandboxes
      .list()
      .filter((s) => s.status.state === "ready" && sandboxRunsVM(s.meta, vm));
    const ids = new Set(sandboxes.map((s) => s.meta.id));
    // A migration's target (still receiving) or a source whose domain moved away is not the VM's domain here.
    return rt.containers
      .list()
      .find(
        (c) =>
          ids.has(c.meta.sandboxId) &&
          (c.status.state === "running" || c.status.state === "created") &&
          !c.status.incoming &&
          !c.status.migratedAway,
      );
  }

  private async reconcileAll(): Promise<void> {
    await this.migration.reconcile();
    const mine = this.vms.list().filter((vm) => vm.status?.nodeName === this.config.nodeName);
    const referenced = new Set<string>();
    for (const vm of mine) {
      try {
        const path = await this.reconcile(vm);
        if (path) referenced.add(path);
      } catch (err) {
        log.warn("reconcile failed", {
          vm: `${vm.metadata.namespace}/${vm.metadata.name}`,
          err: String(err),
        });
      }
    }
    await this.collectCheckpoints(referenced);
  }

  /** Returns the checkpoint path this VM keeps (so the collector leaves it alone). */
  private async reconcile(vm: UnikernelVM): Promise<string | undefined> {
    const uid = vm.metadata.uid;
    const c = this.containerOf(vm);
    if (!uid || !c || c.status.state !== "running") return undefined;
    const path = checkpointPath(this.ops.checkpointDir, uid);
    const key = `${vm.metadata.namespace}/${vm.metadata.name}`;
    const previous = this.failures.get(uid);
    if (previous && previous.generation !== vm.metadata.generation) this.failures.delete(uid);

    const action = decide({
      runPolicy: vm.spec.runPolicy ?? "Running",
      domain: await this.observe(c),
      suspended: c.status.suspended !== undefined,
      checkpointExists: await fileExists(path),
      restoreFailed: this.restoreBlocked(uid),
    });
    if (action.kind !== "none") await this.act(vm, c, action, path);

    const cur = this.config.runtime.ctx.containers.get(c.meta.id);
    if (!cur || cur.status.state === "exited") return undefined;
    const observation: AgentObservation = {
      domain: await this.observe(cur),
      suspended: cur.status.suspended !== undefined,
    };
    const failure = this.failures.get(uid)?.failure;
    if (failure) observation.failure = failure;
    await this.publish(vm, cur, observation, key);
    return cur.status.suspended ? path : undefined;
  }

  /**
   * A corrupt or missing checkpoint stays failed until the spec changes; anything else (a vif
   * hotplug script that timed out on a loaded node, say) is retried with a growing delay.
   */
  private restoreBlocked(uid: string): boolean {
    const f = this.failures.get(uid);
    if (!f || f.failure.op !== "restore") return false;
    return f.retryAt === undefined || Date.now() < f.retryAt;
  }

  private async observe(c: ContainerEntry): Promise<ObservedDomain> {
    if (c.status.suspended || c.status.domid === undefined) return "absent";
    const d = await this.config.runtime.ctx.hypervisor.info(c.status.domid);
    if (
      !d ||
      d.name !== c.meta.domainName ||
      d.state === "shutdown" ||
      d.state === "crashed" ||
      d.state === "dying"
    )
      return "absent";
    return d.state === "paused" ? "paused" : "running";
  }

  private async act(vm: UnikernelVM, c: ContainerEntry, action: AgentAction, path: string): Promise<void> {
    const uid = vm.metadata.uid!;
    const key = `${vm.metadata.namespace}/${vm.metadata.name}`;
    const fail = (op: Failure["op"], reason: string, err: unknown) => {
      const text = err instanceof Error ? err.message : String(err);
      const message = `${op} failed: ${text}`.slice(0, 1000);
      const attempts = (this.failures.get(uid)?.attempts ?? 0) + 1;
      const permanent = / is corrupt: /.test(text);
      const retryAt = permanent ? undefined : Date.now() + Math.min(60_000, 5000 * 2 ** (attempts - 1));
      this.failures.set(uid, {
        generation: vm.metadata.generation,
        failure: { op, reason, message },
        attempts,
        ...(retryAt ? { retryAt } : {}),
      });
      log.warn("domain action failed", { vm: key, op, reason, message });
    };
    log.info("domain action", { vm: key, action: action.kind, container: c.meta.id });
    switch (action.kind) {
      case "pause":
        await this.ops.pause(c).then(
          () => this.failures.delete(uid),
          (err: unknown) => fail("pause", "PauseFailed", err),
        );
        return;
      case "unpause":
        await this.ops.unpause(c).then(
          () => this.failures.delete(uid),
          (err: unknown) => fail("unpause", "UnpauseFailed", err),
        );
        return;
      case "suspend":
        await this.ops.suspend(c, path).then(
          () => this.failures.delete(uid),
          (err: unknown) => fail("suspend", "SuspendFailed", err),
        );
        return;
      case "restore":
        await this.ops.restore(c, action.paused).then(
          () => this.failures.delete(uid),
          (err: unknown) => fail("restore", "RestoreFailed", err),
        );
        return;
      case "discard-checkpoint":
        await rm(path, { force: true });
        return;
      case "fail":
        this.failures.set(uid, {
          generation: vm.metadata.generation,
          failure: { op: "restore", reason: action.reason, message: action.message },
          attempts: 1,
        });
        return;
      case "none":
        return;
    }
  }

  /** Pod annotations first (the operator's phase follows them), then our slice of the VM's status. */
  private async publish(vm: UnikernelVM, c: ContainerEntry, o: AgentObservation, key: string): Promise<void> {
    const next = agentStatus(vm, o);
    if (!agentStatusDiffers(vm, next)) return;
    const sb = this.config.runtime.ctx.sandboxes.get(c.meta.sandboxId);
    const state = o.suspended
      ? "suspended"
      : o.domain === "paused"
        ? "paused"
        : o.domain === "running"
          ? "running"
          : undefined;
    if (sb && state) {
      const annotations: Record<string, string | null> = {
        [ANNOTATIONS.domainState]: state,
        [ANNOTATIONS.domainId]: c.status.domid !== undefined ? String(c.status.domid) : null,
      };
      await this.client
        .request({
          method: "PATCH",
          path: paths.pod(sb.meta.metadata.namespace, sb.meta.metadata.name),
          query: { fieldManager: AGENT_FIELD_MANAGER },
          body: { metadata: { annotations } },
          contentType: "application/merge-patch+json",
        })
        .catch((err: unknown) => {
          // Without a kubelet (the CRI-level harness) there is no Pod object: the VM's status still tells.
          if (!isNotFound(err)) log.warn("pod annotation patch failed", { vm: key, err: String(err) });
        });
    }
    // resourceVersion in the patch: a concurrent write by the operator makes this a 409, and the next
    // pass recomputes from the newer object instead of overwriting it.
    await this.client.request({
      method: "PATCH",
      path: `${paths.customObject(UNIKERNELVM_PLURAL, vm.metadata.namespace!, vm.metadata.name!)}/status`,
      query: { fieldManager: AGENT_FIELD_MANAGER },
      body: {
        metadata: { resourceVersion: vm.metadata.resourceVersion },
        status: { phase: next.phase, conditions: next.conditions },
      },
      contentType: "application/merge-patch+json",
    });
    log.info("status written", {
      vm: key,
      phase: next.phase,
      conditions: next.conditions
        .filter((x) => x.type === "Paused" || x.type === "Suspended")
        .map((x) => `${x.type}=${x.status}/${x.reason}`)
        .join(","),
    });
  }

  /** Checkpoints of VMs that are no longer suspended here (stopped, deleted, moved) and stray temp files. */
  private async collectCheckpoints(keep: Set<string>): Promise<void> {
    const dir = this.ops.checkpointDir;
    const names = await readdir(dir).catch(() => [] as string[]);
    const recorded = new Set(
      this.config.runtime.ctx.containers
        .list()
        .filter((c) => c.status.state !== "exited" && c.status.suspended)
        .map((c) => c.status.suspended!.checkpoint),
    );
    for (const name of names) {
      const path = join(dir, name);
      if (keep.has(path) || recorded.has(path)) continue;
      // Saves run inside a pass and this runs after them: a temp file now is from an interrupted save.
      if (!name.includes(".tmp-") && !name.endsWith(".ckpt")) continue;
      await rm(path, { force: true });
      log.info("stale checkpoint removed", { path });
    }
  }
}
