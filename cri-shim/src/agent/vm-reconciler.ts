// One VM's reconcile on its node: observe the domain, decide (decide.ts, pure), act through the
// domain operations, then publish what the agent owns of the VM's status: the domain's id and state
// and the Paused/Suspended conditions (conditions.ts), by server-side apply under the agent's field
// manager. It writes nothing on the pod.
// It never writes status.phase: the operator does, from the pod and these conditions.
import { rm } from "node:fs/promises";
import { logger } from "../../../lib/log.js";
import { API_VERSION, UNIKERNELVM_KIND, UNIKERNELVM_PLURAL, type UnikernelVM } from "../../../api/index.js";
import { type KubeClient, paths } from "../../../lib/kube/client.js";
import type { ReconcileResult } from "../../../lib/kube/queue.js";
import type { ContainerEntry } from "../services/containers.js";
import {
  agentFieldManager,
  type AgentObservation,
  type AgentStatus,
  agentStatus,
  agentStatusDiffers,
} from "./conditions.js";
import { type AgentAction, decide, type ObservedDomain } from "./decide.js";
import { checkpointPath, fileExists } from "./domain-ops.js";
import type { AgentRuntime } from "./node-runtime.js";

const log = logger("node-agent");

type Failure = NonNullable<AgentObservation["failure"]>;
interface FailureRecord {
  uid: string;
  generation: number | undefined;
  failure: Failure;
  attempts: number;
  /** When a transient failure may be retried; undefined: not until the spec changes. */
  retryAt?: number;
}

export class VmReconciler {
  /** Failures by VM key, kept for the uid and generation they happened in (a spec change retries). */
  private readonly failures = new Map<string, FailureRecord>();
  /** VM uids with a domain operation in flight: their checkpoint files are not stale. */
  readonly busy = new Set<string>();
  /** What each VM's last reconcile saw of its domain: the resync compares, and requeues what moved. */
  readonly lastSeen = new Map<string, { container: string; domain: ObservedDomain }>();
  /**
   * What a full resync's one domain list said of each VM it requeued: its reconcile starts from that
   * instead of querying the domain again (one libxl call per VM per minute was the agent's largest
   * cost at 500 VMs). Only a reconcile that then does nothing keeps it; one that would act asks Xen.
   */
  readonly prefetched = new Map<string, { container: string; domain: ObservedDomain }>();

  constructor(
    private readonly client: KubeClient,
    private readonly nodeName: string,
    private readonly rt: AgentRuntime,
    /** Called with the VM as the agent's apply left it: the echo of that write is no news. */
    private readonly onApplied: (key: string, vm: UnikernelVM) => void = () => undefined,
  ) {}

  /** `vm` is the cached VM for `key`, or undefined when it is gone or no longer on this node. */
  async reconcile(key: string, vm: UnikernelVM | undefined): Promise<ReconcileResult | void> {
    const uid = vm?.metadata.uid;
    if (!vm || !uid || vm.status?.nodeName !== this.nodeName) {
      this.failures.delete(key);
      this.lastSeen.delete(key);
      this.prefetched.delete(key);
      return;
    }
    const previous = this.failures.get(key);
    if (previous && (previous.uid !== uid || previous.generation !== vm.metadata.generation))
      this.failures.delete(key);
    const c = this.rt.vmContainer(vm);
    if (!c || c.status.state !== "running") {
      this.lastSeen.delete(key);
      return;
    }
    const path = checkpointPath(this.rt.ops.checkpointDir, uid);

    const pre = this.prefetched.get(key);
    this.prefetched.delete(key);
    const inputs = {
      runPolicy: vm.spec.runPolicy ?? "Running",
      suspended: c.status.suspended !== undefined,
      checkpointExists: await fileExists(path),
      restoreFailed: this.restoreBlocked(key),
    };
    let seen = pre?.container === c.meta.id ? pre.domain : await this.rt.observe(c);
    let action = decide({ ...inputs, domain: seen });
    if (action.kind !== "none" && pre?.container === c.meta.id) {
      // Never act on a listing: ask Xen what the domain is now, and decide on that.
      seen = await this.rt.observe(c);
      action = decide({ ...inputs, domain: seen });
    }
    if (action.kind !== "none") {
      this.busy.add(uid);
      try {
        await this.act(key, vm, c, action, path);
      } finally {
        this.busy.delete(uid);
      }
    }

    const cur = this.rt.container(c.meta.id);
    if (!cur || cur.status.state === "exited") return;
    const observation: AgentObservation = {
      // Nothing done: what was just seen stands (one domain query per VM per resync, not two).
      domain: action.kind === "none" && cur === c ? seen : await this.rt.observe(cur),
      suspended: cur.status.suspended !== undefined,
    };
    this.lastSeen.set(key, { container: cur.meta.id, domain: observation.domain });
    const failure = this.failures.get(key);
    if (failure) observation.failure = failure.failure;
    await this.publish(key, vm, cur, observation);
    if (failure?.retryAt !== undefined) return { requeueAfterMs: Math.max(0, failure.retryAt - Date.now()) };
  }

  /**
   * A corrupt or missing checkpoint stays failed until the spec changes; anything else (a vif
   * hotplug script that timed out on a loaded node, say) is retried with a growing delay.
   */
  private restoreBlocked(key: string): boolean {
    const f = this.failures.get(key);
    if (!f || f.failure.op !== "restore") return false;
    return f.retryAt === undefined || Date.now() < f.retryAt;
  }

  private recordFailure(key: string, vm: UnikernelVM, op: Failure["op"], reason: string, err: unknown): void {
    const text = err instanceof Error ? err.message : String(err);
    const message = `${op} failed: ${text}`.slice(0, 1000);
    const attempts = (this.failures.get(key)?.attempts ?? 0) + 1;
    const permanent = / is corrupt: /.test(text);
    const retryAt = permanent ? undefined : Date.now() + Math.min(60_000, 5000 * 2 ** (attempts - 1));
    this.failures.set(key, {
      uid: vm.metadata.uid!,
      generation: vm.metadata.generation,
      failure: { op, reason, message },
      attempts,
      ...(retryAt ? { retryAt } : {}),
    });
    log.warn("domain action failed", { vm: key, op, reason, message });
  }

  private async act(
    key: string,
    vm: UnikernelVM,
    c: ContainerEntry,
    action: AgentAction,
    path: string,
  ): Promise<void> {
    log.info("domain action", { vm: key, action: action.kind, container: c.meta.id });
    const attempt = async (op: Failure["op"], reason: string, work: () => Promise<unknown>) => {
      try {
        await work();
        this.failures.delete(key);
      } catch (err) {
        this.recordFailure(key, vm, op, reason, err);
      }
    };
    const ops = this.rt.ops;
    switch (action.kind) {
      case "pause":
        return attempt("pause", "PauseFailed", () => ops.pause(c));
      case "unpause":
        return attempt("unpause", "UnpauseFailed", () => ops.unpause(c));
      case "suspend":
        return attempt("suspend", "SuspendFailed", () => ops.suspend(c, path));
      case "restore":
        return attempt("restore", "RestoreFailed", () => ops.restore(c, action.paused));
      case "discard-checkpoint":
        await rm(path, { force: true });
        return;
      case "fail":
        this.failures.set(key, {
          uid: vm.metadata.uid!,
          generation: vm.metadata.generation,
          failure: { op: "restore", reason: action.reason, message: action.message },
          attempts: 1,
        });
        return;
      case "none":
        return;
    }
  }

  /**
   * The agent's slice of the VM's status in one server-side apply: its two conditions and the
   * domain's id and state (agentStatus). Nothing on the pod: each pod write costs the kubelet a pass
   * over every pod on the node.
   */
  private async publish(key: string, vm: UnikernelVM, c: ContainerEntry, o: AgentObservation): Promise<void> {
    const status = agentStatus(vm, o, c.status.domid);
    if (!agentStatusDiffers(vm, status)) return;
    const manager = agentFieldManager(this.nodeName);
    // Server-side apply of this manager's fields only: conditions are a map keyed by type, so the
    // operator's conditions and phase are neither sent nor touched; a field not sent is removed.
    const path = paths.customObject(UNIKERNELVM_PLURAL, vm.metadata.namespace!, vm.metadata.name!);
    let applied = await this.client.apply<UnikernelVM>(
      path,
      {
        apiVersion: API_VERSION,
        kind: UNIKERNELVM_KIND,
        metadata: { name: vm.metadata.name, namespace: vm.metadata.namespace },
        status,
      },
      manager,
      "status",
    );
    applied = await this.clearLeftovers(path, status, applied);
    this.onApplied(key, applied);
    log.info("status applied", {
      vm: key,
      domain: `${status.domainState ?? "-"}/${status.domainId ?? "-"}`,
      conditions: status.conditions.map((x) => `${x.type}=${x.status}/${x.reason}`).join(","),
    });
  }

  /**
   * A field this node leaves out that the apply did not remove: another manager still owns it, the
   * agent of the node the VM ran on before (it can no longer write the VM; the two may have shared
   * the field when both nodes numbered the domain alike). A suspended VM would show the old node's
   * domain id. Removed by a merge patch that holds only if nothing changed since the apply.
   */
  private async clearLeftovers(
    path: string,
    status: AgentStatus,
    applied: UnikernelVM,
  ): Promise<UnikernelVM> {
    const leftover: Record<string, null> = {};
    if (status.domainId === undefined && applied.status?.domainId !== undefined) leftover.domainId = null;
    if (status.domainState === undefined && applied.status?.domainState !== undefined)
      leftover.domainState = null;
    if (Object.keys(leftover).length === 0) return applied;
    log.info("clearing fields another node's agent left", { path, fields: Object.keys(leftover) });
    return await this.client.request<UnikernelVM>({
      method: "PATCH",
      path: `${path}/status`,
      body: { metadata: { resourceVersion: applied.metadata.resourceVersion }, status: leftover },
      contentType: "application/merge-patch+json",
    });
  }
}
