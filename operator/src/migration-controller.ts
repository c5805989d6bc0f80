// The UnikernelVMMigration reconciler: validates a request, places it, creates the target pod,
// follows the node agents' conditions (TargetReady, Transferred, TargetRunning) and, once the
// domain runs on the target, hands the target pod to the VM. Decisions are the pure functions of
// migration-decide.ts and migration-target.ts; this file observes and acts. The status is written
// with server-side apply of the status subresource under FIELD_MANAGER, carrying only the
// operator's fields and its one condition (Succeeded), so the agents' entries stay beside it.
// MIGRATION_FINALIZER guards deletion while in flight (see migration-protection.ts).
import { failpoint, MIGRATION_FAILPOINTS as FP } from "../../lib/failpoints.js";
import type { V1Node, V1Pod } from "@kubernetes/client-node";
import { logger } from "../../lib/log.js";
import {
  API_VERSION,
  FIELD_MANAGER,
  LABELS,
  MIGRATION_FINALIZER,
  MIGRATION_KIND,
  MIGRATION_PLURAL,
  type UnikernelVM,
  type UnikernelVMMigration,
} from "../../api/index.js";
import type { EventRecorder } from "./events.js";
import type { Watched } from "../../lib/kube/informers.js";
import { ApiError, isNotFound, type KubeClient, paths } from "../../lib/kube/client.js";
import type { OperatorMetrics } from "./metrics.js";
import { type ReconcileResult, WorkQueue } from "../../lib/kube/queue.js";
import { addFinalizer, deletePod, removeFinalizer } from "../../lib/kube/objects.js";
import {
  checkRequest,
  decide,
  type Decision,
  isFinished,
  type MigrationObserved,
  isCommitted,
  operatorStatus,
  type OperatorStatusChange,
} from "./migration-decide.js";
import { checkTarget, pickTarget, type Rejection, type TargetQuery } from "./migration-target.js";
import type { ResourceModel } from "./desired.js";
import { adoptionPatch, desiredTargetPod, isAdopted, MIGRATION_POD_MANAGER } from "./migration-pods.js";
import { podMemoryMiB } from "./guest-memory.js";
import { protection } from "./migration-protection.js";

const log = logger("migration-controller");
const CONTROLLER = "migration";

/** The caches the UnikernelVMController keeps; the migration controller reads them, never writes them. */
export interface SharedCaches {
  vms: Watched<UnikernelVM>;
  /** The operator's pods (label app.kubernetes.io/managed-by), VM pods and target pods alike. */
  pods: Watched<V1Pod>;
  nodes: Watched<V1Node>;
  migrations: Watched<UnikernelVMMigration>;
}

/** Whether etcd revision a is older than b (see expectations.ts for why this comparison is sound). */
function olderThan(a: string | undefined, b: string | undefined): boolean {
  if (a === undefined || b === undefined || !/^[0-9]+$/.test(a) || !/^[0-9]+$/.test(b)) return false;
  return BigInt(a) < BigInt(b);
}

export class MigrationController {
  readonly queue: WorkQueue;
  /** The resourceVersion of our last status write per key, until the cache shows it. */
  private readonly written = new Map<string, string>();
  /** The uids of deleted migrations whose deferral was announced (one Event each per process). */
  private readonly deferralAnnounced = new Set<string>();

  constructor(
    private readonly deps: {
      client: KubeClient;
      events: EventRecorder;
      metrics: OperatorMetrics;
      resources?: ResourceModel;
    },
    private readonly caches: SharedCaches,
  ) {
    this.queue = new WorkQueue((key) => this.reconcile(key), {
      name: CONTROLLER,
      workers: 2,
      onResult: (outcome, seconds) => deps.metrics.observe(CONTROLLER, outcome, seconds),
    });
  }

  /** Call once the shared caches have started: the handlers see changes, the loop the existing objects. */
  start(): void {
    const { migrations, vms, pods } = this.caches;
    const enqueueVM = (ns: string | undefined, vmName: string | undefined) => {
      for (const m of migrations.list(ns)) if (m.spec.vmName === vmName) this.enqueue(m);
    };
    for (const verb of ["add", "update", "delete"] as const) {
      // The others of the same VM wait for an older one to be decided: they look again.
      migrations.on(verb, (m) => {
        if (verb === "delete") {
          this.written.delete(`${m.metadata.namespace}/${m.metadata.name}`);
          this.deferralAnnounced.delete(m.metadata.uid ?? "");
        }
        enqueueVM(m.metadata.namespace, m.spec.vmName);
      });
      vms.on(verb, (vm) => enqueueVM(vm.metadata.namespace, vm.metadata.name));
      pods.on(verb, (pod) => {
        const ns = pod.metadata?.namespace;
        const target = pod.metadata?.labels?.[LABELS.migration];
        if (target) this.queue.add(`${ns}/${target}`);
        const vm = pod.metadata?.labels?.[LABELS.vm];
        if (vm) enqueueVM(ns, vm);
      });
    }
    for (const m of migrations.list()) this.enqueue(m);
  }

  async stop(): Promise<void> {
    await this.queue.shutdown();
  }

  private enqueue(m: UnikernelVMMigration): void {
    this.queue.add(`${m.metadata.namespace}/${m.metadata.name}`);
  }

  async reconcile(key: string): Promise<ReconcileResult | void> {
    const [ns, name] = key.split("/") as [string, string];
    const cached = this.caches.migrations.get(name, ns);
    if (!cached) return;
    // Our last write is not in the cache yet: acting on the older object could undo it. Its watch
    // event enqueues the key again; the requeue covers a watch that restarted in between.
    const wrote = this.written.get(key);
    if (wrote && olderThan(cached.metadata.resourceVersion, wrote)) return { requeueAfterMs: 1000 };
    this.written.delete(key);
    const m: UnikernelVMMigration = { ...cached, apiVersion: API_VERSION, kind: MIGRATION_KIND };
    const vm = this.caches.vms.get(m.spec.vmName, ns);
    const target = m.status?.targetPod && this.caches.pods.get(m.status.targetPod, ns);
    const vmPresent = !!vm && !vm.metadata.deletionTimestamp;
    const guard = protection(m, { vmPresent, ...(target ? { cachedTargetPod: target } : {}) });
    // History is looked at on every change of its VM: from the cache only; its status is never written again.
    if (isFinished(m)) {
      if (m.status?.phase === "Failed") await this.deleteTargetPods(m, "cached");
      if (guard.action === "release") await this.release(m);
      return;
    }
    if (guard.action === "protect") await this.protect(m);
    if (guard.action === "cancel") return this.fail(m, guard);
    if (guard.action === "hold" && !this.deferralAnnounced.has(m.metadata.uid!)) {
      this.deferralAnnounced.add(m.metadata.uid!);
      this.deps.events.record(m, "Warning", guard.reason, guard.message);
    }
    const sourceName = m.status?.sourcePod ?? vm?.status?.podName;
    const o: MigrationObserved = {
      m,
      ...(vm ? { vm } : {}),
      ...(sourceName ? this.some("sourcePod", this.caches.pods.get(sourceName, ns)) : {}),
      ...(m.status?.targetPod ? this.some("targetPod", await this.getPod(ns, m.status.targetPod)) : {}),
      siblings: this.caches.migrations
        .list(ns)
        .filter((s) => s.spec.vmName === m.spec.vmName && s.metadata.name !== name),
      now: new Date(),
    };
    const d = decide(o);
    return d.action === "none" ? undefined : this.act(o, d);
  }

  private some<K extends string, V>(k: K, v: V | undefined): { [P in K]?: V } {
    return (v === undefined ? {} : { [k]: v }) as { [P in K]?: V };
  }

  private async act(
    o: MigrationObserved,
    d: Exclude<Decision, { action: "none" }>,
  ): Promise<ReconcileResult | void> {
    const { m } = o;
    // Tests only (SUPERFLUID_FAILPOINTS): the operator dies right before it writes on either side of the commit.
    if (d.action === "fail" || d.action === "advance" || d.action === "switch")
      failpoint(isCommitted(m) ? FP.operatorAfterCommit : FP.operatorBeforeCommit);
    switch (d.action) {
      case "wait":
        return d.requeueAfterMs !== undefined ? { requeueAfterMs: d.requeueAfterMs } : undefined;
      case "validate":
        return this.validate(o);
      case "fail":
        return this.fail(m, d);
      case "advance":
        await this.write(m, { phase: d.phase, reason: d.reason, message: d.message });
        return;
      case "createTarget": {
        const pod =
          o.vm &&
          desiredTargetPod(
            o.vm,
            m,
            m.status!.targetNode!,
            this.deps.resources,
            podMemoryMiB(o.sourcePod?.metadata?.annotations),
          );
        if (!pod)
          return this.fail(m, { reason: "VMNotRunning", message: `${m.spec.vmName} has runPolicy Stopped` });
        const applied = await this.deps.client.apply<V1Pod>(
          paths.pod(m.metadata.namespace!, pod.metadata!.name!),
          pod,
          MIGRATION_POD_MANAGER,
        );
        await this.write(m, {
          phase: "TargetPreparing",
          targetPod: applied.metadata!.name!,
          reason: "TargetPreparing",
          message: `target pod ${applied.metadata!.name} created on ${m.status?.targetNode}; waiting for its agent to be ready to receive`,
        });
        return;
      }
      case "switch":
        return this.switchOver(o);
    }
  }

  /** Pending: the request's checks, then the target's; Scheduling with the placement. */
  private async validate(o: MigrationObserved): Promise<ReconcileResult | void> {
    const { m } = o;
    const admitted = checkRequest(o);
    if (admitted === "wait") return { requeueAfterMs: 1000 };
    if ("reason" in admitted) return this.fail(m, admitted);
    const placed = await this.place(m, admitted);
    if ("reason" in placed) return this.fail(m, placed);
    await this.write(m, {
      phase: "Scheduling",
      sourceNode: admitted.sourceNode,
      sourcePod: admitted.sourcePod,
      targetNode: placed.node,
      startTime: new Date().toISOString().replace(/\.\d{3}Z$/, "Z"),
      reason: "Scheduling",
      message: `${m.spec.mode ?? "live"} migration of ${m.spec.vmName} from ${admitted.sourceNode} to ${placed.node}${m.spec.targetNode ? "" : " (picked: most free memory)"}`,
    });
  }

  private async place(m: UnikernelVMMigration, q: TargetQuery): Promise<{ node: string } | Rejection> {
    const wanted = m.spec.targetNode;
    if (wanted) {
      const node = this.caches.nodes.get(wanted);
      if (!node) return { reason: "TargetNodeNotFound", message: `node ${wanted} does not exist` };
      const why = checkTarget(node, await this.podsOn(wanted, m.metadata.namespace!), q);
      return why ?? { node: wanted };
    }
    const candidates = this.caches.nodes
      .list()
      .filter((n) => n.metadata?.labels?.[LABELS.xenNode] === "true" && n.metadata.name !== q.sourceNode);
    const withPods = await Promise.all(
      candidates.map(async (node) => ({
        node,
        podsOnNode: await this.podsOn(node.metadata!.name!, m.metadata.namespace!),
      })),
    );
    return pickTarget(withPods, q);
  }

  /** Every pod bound to the node, in any namespace; the migration's namespace only when RBAC allows no more. */
  private async podsOn(node: string, ns: string): Promise<V1Pod[]> {
    const query = { fieldSelector: `spec.nodeName=${node}` };
    try {
      return (
        await this.deps.client.request<{ items: V1Pod[] }>({ method: "GET", path: paths.pods(), query })
      ).items;
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 403)) throw err;
      log.warn("cannot list pods in all namespaces; memory accounting sees this namespace only", {
        node,
        ns,
      });
      return (
        await this.deps.client.request<{ items: V1Pod[] }>({ method: "GET", path: paths.pods(ns), query })
      ).items;
    }
  }

  /** From the cache, or from the apiserver when the cache has not seen a pod we just created. */
  private async getPod(ns: string, name: string): Promise<V1Pod | undefined> {
    const cached = this.caches.pods.get(name, ns);
    if (cached) return cached;
    try {
      return await this.deps.client.request<V1Pod>({ method: "GET", path: paths.pod(ns, name) });
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** Switching: the source pod goes (its domain is already destroyed), the target pod becomes the VM's. */
  private async switchOver(o: MigrationObserved): Promise<void> {
    const { m, vm, sourcePod, targetPod } = o;
    if (!vm) return; // vmDeleted comes first in the policy chain; this only narrows the type
    if (!targetPod || targetPod.metadata?.deletionTimestamp)
      return this.fail(m, {
        reason: "TargetPodDeleted",
        message: `target pod ${m.status?.targetPod} was deleted while switching`,
      });
    if (sourcePod && !sourcePod.metadata?.deletionTimestamp) await this.deletePod(sourcePod);
    if (!isAdopted(targetPod, vm))
      await this.deps.client.request({
        method: "PATCH",
        path: paths.pod(m.metadata.namespace!, targetPod.metadata!.name!),
        query: { fieldManager: MIGRATION_POD_MANAGER },
        body: adoptionPatch(vm),
        contentType: "application/merge-patch+json",
      });
    await this.write(m, {
      phase: "Succeeded",
      reason: "Succeeded",
      message: `${m.spec.vmName} runs on ${m.status?.targetNode} in pod ${targetPod.metadata!.name}`,
    });
  }

  /** Failed is terminal: the target pod goes (the domain runs on in the source), then the status says why. */
  private async fail(m: UnikernelVMMigration, why: Rejection): Promise<void> {
    await this.deleteTargetPods(m, "thorough");
    await this.write(m, { phase: "Failed", reason: why.reason, message: why.message });
  }

  /** The migration's target pods not handed to the VM; "cached": without asking the apiserver. */
  private async deleteTargetPods(m: UnikernelVMMigration, lookup: "cached" | "thorough"): Promise<void> {
    const ns = m.metadata.namespace!;
    const byLabel = this.caches.pods
      .list(ns)
      .filter(
        (p) => p.metadata?.labels?.[LABELS.migration] === m.metadata.name && !p.metadata?.labels?.[LABELS.vm],
      );
    for (const p of byLabel) if (!p.metadata?.deletionTimestamp) await this.deletePod(p);
    const named = m.status?.targetPod;
    if (lookup === "thorough" && named && !byLabel.some((p) => p.metadata?.name === named)) {
      const pod = await this.getPod(ns, named);
      // Never a pod that was handed to the VM already.
      if (pod && !pod.metadata?.labels?.[LABELS.vm] && !pod.metadata?.deletionTimestamp)
        await this.deletePod(pod);
    }
  }

  private deletePod(pod: V1Pod): Promise<void> {
    return deletePod(this.deps.client, pod);
  }

  /**
   * Server-side apply of the operator's part of the status, guarded by the resourceVersion it was
   * decided on (a stale decision gets 409 and is retried on fresh data), and an Event per phase.
   */
  private async write(m: UnikernelVMMigration, change: OperatorStatusChange): Promise<void> {
    const ns = m.metadata.namespace!;
    const name = m.metadata.name!;
    const status = operatorStatus(m, change, new Date());
    const written = await this.deps.client.apply<UnikernelVMMigration>(
      paths.customObject(MIGRATION_PLURAL, ns, name),
      {
        apiVersion: API_VERSION,
        kind: MIGRATION_KIND,
        metadata: { name, namespace: ns, resourceVersion: m.metadata.resourceVersion },
        status,
      },
      FIELD_MANAGER,
      "status",
    );
    if (written.metadata.resourceVersion) this.written.set(`${ns}/${name}`, written.metadata.resourceVersion);
    log.info("migration", { migration: `${ns}/${name}`, phase: change.phase, reason: change.reason });
    const warning = change.phase === "Failed";
    this.deps.events.record(m, warning ? "Warning" : "Normal", change.reason, change.message);
    // Failed: the target pod is deleted, nothing is left to guard. Succeeded waits for the cache to
    // show the hand-over (see migration-protection.ts); the adoption's pod event brings it back here.
    if (change.phase === "Failed") await this.release(written);
  }

  /** Adds the finalizer: a merge patch guarded by the resourceVersion, so no one's finalizers are lost. */
  private async protect(m: UnikernelVMMigration): Promise<void> {
    const ns = m.metadata.namespace!;
    const updated = await addFinalizer(
      this.deps.client,
      paths.customObject(MIGRATION_PLURAL, ns, m.metadata.name!),
      m,
      MIGRATION_FINALIZER,
    );
    // Later writes of this reconcile are guarded by the new resourceVersion.
    m.metadata = updated.metadata;
    if (updated.metadata.resourceVersion)
      this.written.set(`${ns}/${m.metadata.name}`, updated.metadata.resourceVersion);
  }

  /**
   * Removes the finalizer: a JSON patch that tests the entry it removes, so an agent's concurrent
   * status write does not make it conflict, and a concurrent change of the list makes it fail (and retry).
   */
  private async release(m: UnikernelVMMigration): Promise<void> {
    if (!m.metadata.finalizers?.includes(MIGRATION_FINALIZER)) return;
    const ns = m.metadata.namespace!;
    const updated = await removeFinalizer(
      this.deps.client,
      paths.customObject(MIGRATION_PLURAL, ns, m.metadata.name!),
      m,
      MIGRATION_FINALIZER,
    );
    // A deleted object goes with its last finalizer: then there is no newer write to wait for.
    const remains = !updated?.metadata.deletionTimestamp || !!updated.metadata.finalizers?.length;
    if (updated?.metadata.resourceVersion && remains)
      this.written.set(`${ns}/${m.metadata.name}`, updated.metadata.resourceVersion);
    log.info("migration finalizer released", { migration: `${ns}/${m.metadata.name}` });
  }
}
