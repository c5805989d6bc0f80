// The UnikernelVMMigration reconciler. Live migration itself is a later issue; until then this
// validates the request and says so plainly in status instead of pretending to make progress.
import type { KubeConfig, V1Node } from "@kubernetes/client-node";
import {
  API_VERSION,
  type Condition,
  FIELD_MANAGER,
  LABELS,
  MIGRATION_KIND,
  MIGRATION_PLURAL,
  type MigrationStatus,
  setCondition,
  type UnikernelVM,
  type UnikernelVMMigration,
} from "../../api/index.js";
import type { EventRecorder } from "./events.js";
import { type Watched, watchResource } from "../../lib/kube/informers.js";
import { type KubeClient, paths } from "../../lib/kube/client.js";
import type { OperatorMetrics } from "./metrics.js";
import { WorkQueue } from "./queue.js";
import { statusEqual } from "./status.js";

const CONTROLLER = "migration";

export interface Verdict {
  phase: "Pending" | "Failed";
  reason: string;
  message: string;
}

/** Pure: what the operator can say about a migration request today. */
export function judgeMigration(
  m: UnikernelVMMigration,
  vm: UnikernelVM | undefined,
  target: V1Node | undefined,
): Verdict {
  if (!vm)
    return {
      phase: "Failed",
      reason: "VMNotFound",
      message: `UnikernelVM ${m.spec.vmName} does not exist in namespace ${m.metadata.namespace}`,
    };
  const source = vm.status?.nodeName;
  if (m.spec.targetNode) {
    if (!target)
      return {
        phase: "Failed",
        reason: "TargetNodeNotFound",
        message: `node ${m.spec.targetNode} does not exist`,
      };
    if (target.metadata?.labels?.[LABELS.xenNode] !== "true")
      return {
        phase: "Failed",
        reason: "TargetNotXenNode",
        message: `node ${m.spec.targetNode} is not labelled ${LABELS.xenNode}=true`,
      };
    if (source === m.spec.targetNode)
      return { phase: "Failed", reason: "SameNode", message: `${m.spec.vmName} already runs on ${source}` };
  }
  return {
    phase: "Pending",
    reason: "NotYetSupported",
    message: `${m.spec.mode ?? "live"} migration is not implemented by this operator version; the request is valid and waits (VM on ${source ?? "no node yet"})`,
  };
}

export class MigrationController {
  readonly migrations: Watched<UnikernelVMMigration>;
  readonly queue: WorkQueue;

  constructor(
    private readonly deps: {
      kc: KubeConfig;
      client: KubeClient;
      events: EventRecorder;
      metrics: OperatorMetrics;
      namespace?: string;
    },
    private readonly vms: Watched<UnikernelVM>,
    private readonly nodes: Watched<V1Node>,
  ) {
    this.migrations = watchResource<UnikernelVMMigration>(
      deps.kc,
      deps.client,
      paths.custom(MIGRATION_PLURAL, deps.namespace),
    );
    this.queue = new WorkQueue((key) => this.reconcile(key), {
      name: CONTROLLER,
      workers: 2,
      onResult: (outcome, seconds) => deps.metrics.observe(CONTROLLER, outcome, seconds),
    });
  }

  async start(): Promise<void> {
    const enqueue = (m: UnikernelVMMigration) => this.queue.add(`${m.metadata.namespace}/${m.metadata.name}`);
    for (const verb of ["add", "update", "delete"] as const) this.migrations.on(verb, enqueue);
    // A VM appearing or moving changes the verdict on the migrations that name it.
    for (const verb of ["add", "update", "delete"] as const)
      this.vms.on(verb, (vm) => {
        for (const m of this.migrations.list(vm.metadata.namespace))
          if (m.spec.vmName === vm.metadata.name) enqueue(m);
      });
    await this.migrations.start();
  }

  async stop(): Promise<void> {
    await this.migrations.stop();
    await this.queue.shutdown();
  }

  async reconcile(key: string): Promise<void> {
    const [ns, name] = key.split("/") as [string, string];
    const m = this.migrations.get(name, ns);
    if (!m) return;
    // Finished migrations are history: never rewrite them.
    if (
      m.status?.phase === "Succeeded" ||
      (m.status?.phase === "Failed" && m.status.observedGeneration === m.metadata.generation)
    )
      return;
    const vm = this.vms.get(m.spec.vmName, ns);
    const target = m.spec.targetNode ? this.nodes.get(m.spec.targetNode) : undefined;
    const v = judgeMigration(m, vm, target);
    let conditions: Condition[] | undefined = m.status?.conditions;
    const gen = m.metadata.generation;
    conditions = setCondition(conditions, {
      type: "Succeeded",
      status: v.phase === "Failed" ? "False" : "Unknown",
      reason: v.reason,
      message: v.message,
      ...(gen !== undefined ? { observedGeneration: gen } : {}),
    });
    const status: MigrationStatus = {
      phase: v.phase,
      message: v.message,
      ...(vm?.status?.nodeName ? { sourceNode: vm.status.nodeName } : {}),
      ...(m.spec.targetNode ? { targetNode: m.spec.targetNode } : {}),
      ...(gen !== undefined ? { observedGeneration: gen } : {}),
      conditions,
    };
    if (statusEqual(m.status, status)) return;
    await this.deps.client.apply(
      paths.customObject(MIGRATION_PLURAL, ns, name),
      { apiVersion: API_VERSION, kind: MIGRATION_KIND, metadata: { name, namespace: ns }, status },
      FIELD_MANAGER,
      "status",
    );
    if (m.status?.conditions?.find((c) => c.type === "Succeeded")?.reason !== v.reason)
      this.deps.events.record(
        { apiVersion: API_VERSION, kind: MIGRATION_KIND, metadata: m.metadata },
        v.phase === "Failed" ? "Warning" : "Normal",
        v.reason,
        v.message,
      );
  }
}
