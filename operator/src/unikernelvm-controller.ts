// The UnikernelVM reconciler: observe (the manager's caches) → plan (vm-plan.ts, pure) → act (this
// file, thin: one API call per action) → status (status.ts, pure; written with server-side apply
// under the operator's field manager, which owns phase and the Ready, Scheduled and Migrating
// conditions; the node agent owns its own conditions in the same list-map).
import type { V1Node, V1Pod, V1Service } from "@kubernetes/client-node";
import { logger } from "../../lib/log.js";
import {
  API_VERSION,
  FIELD_MANAGER,
  FINALIZER,
  LABELS,
  MIGRATION_PLURAL,
  UNIKERNELVM_KIND,
  UNIKERNELVM_PLURAL,
  type UnikernelVM,
  type UnikernelVMMigration,
  type UnikernelVMStatus,
  VM_PHASES,
} from "../../api/index.js";
import { refusedChild, rethrow } from "./child-rejection.js";
import { InvalidSpecError, type ResourceModel } from "./desired.js";
import type { Watched } from "../../lib/kube/informers.js";
import { paths } from "../../lib/kube/client.js";
import type { Manager } from "../../lib/kube/manager.js";
import {
  addFinalizer,
  createOrApply,
  deleteIgnoringNotFound,
  deletePod,
  removeFinalizer,
} from "../../lib/kube/objects.js";
import type { OperatorMetrics } from "./metrics.js";
import type { Priority, ReconcileResult, WorkQueue } from "../../lib/kube/queue.js";
import { computeStatus, operatorStatus, statusEqual, transitionEvents } from "./status.js";
import { Expectations } from "./expectations.js";
import { migrationsOf, summarize, type VMMigrations } from "./vm-migrations.js";
import { type Action, plan, type Plan } from "./vm-plan.js";
import { nodeTransform, podTransform } from "./cache-transforms.js";
import type { ImageDefaults } from "./image-defaults.js";

const log = logger("unikernelvm-controller");
const CONTROLLER = "unikernelvm";
const MANAGED = `${LABELS.managedBy}=${FIELD_MANAGER}`;

export interface ControllerDeps {
  manager: Manager;
  metrics: OperatorMetrics;
  /** Watch one namespace only (undefined: all). */
  namespace?: string;
  workers?: number;
  /** How VM pods request CPU and memory (desired.ts); the defaults when unset. */
  resources?: ResourceModel;
  /** Reads images' default memory for VMs that name none; unset: such VMs get the default. */
  imageDefaults?: ImageDefaults;
}

const keyOf = (ns: string | undefined, name: string | undefined) => `${ns}/${name}`;
/** Children by the VM they are labelled for: a reconcile reads its VM's bucket, not every pod. */
const BY_VM = "vm";
const byVM = {
  [BY_VM]: (o: V1Pod | V1Service) => {
    const vm = o.metadata?.labels?.[LABELS.vm];
    return vm ? [keyOf(o.metadata?.namespace, vm)] : [];
  },
};

export class UnikernelVMController {
  readonly vms: Watched<UnikernelVM>;
  readonly pods: Watched<V1Pod>;
  readonly services: Watched<V1Service>;
  readonly nodes: Watched<V1Node>;
  /** Shared with the MigrationController: a VM's Migrating condition and its pods follow its migrations. */
  readonly migrations: Watched<UnikernelVMMigration>;
  readonly queue: WorkQueue;
  private readonly expectations = new Expectations();

  constructor(private readonly deps: ControllerDeps) {
    const { manager: m, namespace } = deps;
    this.vms = m.informer<UnikernelVM>(paths.custom(UNIKERNELVM_PLURAL, namespace));
    this.pods = m.informer<V1Pod>(paths.pods(namespace), {
      labelSelector: MANAGED,
      transform: podTransform,
      indexers: byVM,
    });
    this.services = m.informer<V1Service>(paths.services(namespace), {
      labelSelector: MANAGED,
      indexers: byVM,
    });
    this.nodes = m.informer<V1Node>(paths.nodes(), { transform: nodeTransform });
    this.migrations = m.informer<UnikernelVMMigration>(paths.custom(MIGRATION_PLURAL, namespace));
    const workers = deps.workers ?? 16;
    this.queue = m.queue((key) => this.reconcile(key), {
      name: CONTROLLER,
      workers,
      // While VMs wait for pods, the passes that settle others (finalizer, status) wait; past
      // 5 s they trickle through, the oldest first.
      lowWorkersWhileBusy: Math.max(1, Math.floor(workers / 64)),
      lowDelayWhileBusyMs: 5000,
      onResult: (outcome, seconds) => deps.metrics.observe(CONTROLLER, outcome, seconds),
    });
  }

  /**
   * High for a VM that waits for its pod (none in the cache, none just applied), low for the rest:
   * status, finalizer and the children's changes follow the pods a burst of new VMs waits for.
   */
  private priorityOf(key: string): Priority {
    const [ns, name] = key.split("/") as [string, string];
    const vm = this.vms.get(name, ns);
    if (!vm || vm.metadata.deletionTimestamp || vm.spec.runPolicy === "Stopped") return "low";
    if (this.pods.byIndex(BY_VM, key).length > 0) return "low";
    return this.expectations.expectsAnyPod(key) ? "low" : "high";
  }

  private enqueue(key: string): void {
    this.queue.add(key, this.priorityOf(key));
  }

  async start(): Promise<void> {
    const enqueueVM = (vm: UnikernelVM) => this.enqueue(keyOf(vm.metadata.namespace, vm.metadata.name));
    const observeVM = (vm: UnikernelVM) => {
      const key = keyOf(vm.metadata.namespace, vm.metadata.name);
      this.expectations.observeVM(
        key,
        vm.metadata.resourceVersion,
        !!vm.metadata.finalizers?.includes(FINALIZER),
      );
      this.enqueue(key);
    };
    const ownerKey = (o: V1Pod | V1Service) => {
      const vm = o.metadata?.labels?.[LABELS.vm];
      return vm ? keyOf(o.metadata?.namespace, vm) : undefined;
    };
    const enqueueForPod = (pod: V1Pod) => {
      const key = ownerKey(pod);
      if (!key) return;
      this.expectations.observePod(key, pod.metadata?.name);
      this.enqueue(key);
    };
    const enqueueForService = (svc: V1Service) => {
      const key = ownerKey(svc);
      if (key) this.enqueue(key);
    };
    // A node change matters to the VMs on it and to the ones waiting for a Xen node to appear.
    const enqueueForNode = (node: V1Node) => {
      for (const vm of this.vms.list()) {
        const s = vm.status;
        if (s?.nodeName === node.metadata?.name || s?.phase === "Pending" || s?.phase === undefined)
          enqueueVM(vm);
      }
    };
    for (const verb of ["add", "update", "delete"] as const) {
      this.vms.on(
        verb,
        verb === "delete"
          ? (vm) => (this.expectations.forget(keyOf(vm.metadata.namespace, vm.metadata.name)), enqueueVM(vm))
          : observeVM,
      );
      this.pods.on(verb, enqueueForPod);
      this.services.on(verb, enqueueForService);
      this.nodes.on(verb, enqueueForNode);
      this.migrations.on(verb, (m) => this.enqueue(keyOf(m.metadata.namespace, m.spec.vmName)));
    }
    // Children, nodes and migrations first, so that the first reconciles see them.
    await Promise.all([
      this.pods.start(),
      this.services.start(),
      this.nodes.start(),
      this.migrations.start(),
    ]);
    await this.vms.start();
  }

  private get caches(): { stop(): Promise<void>; readonly synced: boolean }[] {
    return [this.vms, this.pods, this.services, this.nodes, this.migrations];
  }

  async stop(): Promise<void> {
    await Promise.all(this.caches.map((c) => c.stop()));
    await this.queue.shutdown();
  }

  get synced(): boolean {
    return this.caches.every((c) => c.synced);
  }

  /** VMs by phase, for the metrics gauge. */
  phaseCounts(): Record<string, number> {
    const counts: Record<string, number> = Object.fromEntries(VM_PHASES.map((p) => [p, 0]));
    for (const vm of this.vms.list()) {
      const p = vm.status?.phase ?? "Pending";
      counts[p] = (counts[p] ?? 0) + 1;
    }
    return counts;
  }

  /** The VM's children: its label and its owner reference. A migration's target pod has neither until it is adopted. */
  private owned<T extends V1Pod | V1Service>(cache: Watched<T>, vm: UnikernelVM): T[] {
    return cache
      .byIndex(BY_VM, keyOf(vm.metadata.namespace, vm.metadata.name))
      .filter((o) => o.metadata?.ownerReferences?.some((r) => r.uid === vm.metadata.uid));
  }

  private xenNodeCount(): number {
    return this.nodes.list().filter((n) => n.metadata?.labels?.[LABELS.xenNode] === "true").length;
  }

  async reconcile(key: string): Promise<ReconcileResult | void> {
    const [ns, name] = key.split("/") as [string, string];
    const cached = this.vms.get(name, ns);
    // Gone: its finalizer already ran, and owner references let the garbage collector take the rest.
    if (!cached) return;
    const vm: UnikernelVM = { ...cached, apiVersion: API_VERSION, kind: UNIKERNELVM_KIND };
    const migrations = summarize(migrationsOf(vm, this.migrations.list(ns)));
    const pods = this.owned(this.pods, vm);
    // Observe the image's default memory only where it decides the figure: no spec.memory, no pod yet.
    const image =
      vm.spec.memory === undefined && pods.length === 0 && !vm.metadata.deletionTimestamp
        ? await this.deps.imageDefaults?.lookup(vm.spec.image)
        : undefined;
    const p = plan({
      vm,
      pods,
      ...(image ? { image } : {}),
      services: this.owned(this.services, vm),
      migrations,
      expectedPod: (podName) => this.expectations.expectedPod(key, podName),
      finalizerPending: this.expectations.expectsFinalizer(key),
      now: new Date(),
      ...(this.deps.resources ? { resources: this.deps.resources } : {}),
    });
    // The finalizer goes on in the pass after the pod's (the plan's settleLater), alongside any
    // other actions: should the VM be deleted before it is on, the finalizer write fails and the
    // pod's owner reference lets the garbage collector take the pod. The other actions run in order.
    const finalizer = p.actions.find((a) => a.kind === "addFinalizer");
    const rest = p.actions.filter((a) => a !== finalizer);
    let refused: string | undefined;
    const inOrder = async () => {
      let pod = p.pod;
      for (const action of rest) {
        try {
          pod = (await this.act(vm, key, action)) ?? pod;
        } catch (err) {
          // A child the apiserver refuses for what it is: a condition and an Event, not a retry loop.
          refused = (refusedChild(err, action) ?? rethrow(err)).message;
          break;
        }
      }
      return pod;
    };
    const [, pod] = await Promise.all([finalizer && this.act(vm, key, finalizer), inOrder()]);
    const done: Plan = refused === undefined ? p : { ...p, writeStatus: true, invalidSpec: refused };
    if (done.writeStatus) await this.reconcileStatus(vm, key, pod, done, migrations);
    if (done.invalidSpec !== undefined) throw new InvalidSpecError(`${key}: ${done.invalidSpec}`);
    // The pod is out: the finalizer and the status come in the low-priority pass.
    if (done.settleLater) return { requeueAfterMs: 0, priority: "low" };
    if (p.requeueAfterMs !== undefined) return { requeueAfterMs: p.requeueAfterMs };
  }

  /** One action, one API call. Returns the pod when the action wrote it. */
  private async act(vm: UnikernelVM, key: string, a: Action): Promise<V1Pod | undefined> {
    const { client, events } = this.deps.manager;
    const ns = vm.metadata.namespace!;
    const vmPath = paths.customObject(UNIKERNELVM_PLURAL, ns, vm.metadata.name!);
    switch (a.kind) {
      case "addFinalizer": {
        const updated = await addFinalizer(client, vmPath, vm, FINALIZER);
        // Later writes of this reconcile start from what was written.
        vm.metadata = updated.metadata;
        this.expectations.finalizerAdded(key);
        return undefined;
      }
      case "removeFinalizer":
        await removeFinalizer(client, vmPath, vm, FINALIZER);
        log.info("cleaned up", { vm: key });
        return undefined;
      case "deletePod":
        await deletePod(client, a.pod);
        if (a.event) events.record(vm, a.event.type, a.event.reason, a.event.message);
        return undefined;
      case "applyPod": {
        const pod = a.created
          ? await createOrApply<V1Pod>(
              client,
              paths.pods(ns),
              paths.pod(ns, a.pod.metadata!.name!),
              a.pod,
              FIELD_MANAGER,
            )
          : await client.apply<V1Pod>(paths.pod(ns, a.pod.metadata!.name!), a.pod, FIELD_MANAGER);
        this.expectations.podApplied(key, pod);
        if (a.created) events.record(vm, "Normal", "PodCreated", `created pod ${pod.metadata?.name}`);
        if (a.event) events.record(vm, a.event.type, a.event.reason, a.event.message);
        return pod;
      }
      case "deleteService":
        await deleteIgnoringNotFound(client, paths.service(ns, a.service.metadata!.name!));
        events.record(vm, a.event.type, a.event.reason, a.event.message);
        return undefined;
      case "applyService":
        await client.apply(paths.service(ns, a.service.metadata!.name!), a.service, FIELD_MANAGER);
        events.record(vm, a.event.type, a.event.reason, a.event.message);
        return undefined;
    }
  }

  private async reconcileStatus(
    vm: UnikernelVM,
    key: string,
    pod: V1Pod | undefined,
    p: Plan,
    migrations: VMMigrations,
  ): Promise<void> {
    const node = pod?.spec?.nodeName ? this.nodes.get(pod.spec.nodeName) : undefined;
    // Compare with what we last wrote when the cache has not caught up with it yet.
    const before = this.expectations.expectedStatus(key) ?? vm.status;
    const status = computeStatus({
      vm: { ...vm, ...(before ? { status: before } : {}) },
      ...(pod ? { pod } : {}),
      node,
      xenNodeCount: this.xenNodeCount(),
      replacing: p.replacing,
      ...(p.invalidSpec !== undefined ? { invalidSpec: p.invalidSpec } : {}),
      migrations,
    });
    if (statusEqual(before, status)) return;
    const written = await this.writeStatus(vm, status);
    this.expectations.statusWritten(
      key,
      status,
      written.metadata.resourceVersion,
      this.vms.get(vm.metadata.name!, vm.metadata.namespace)?.metadata.resourceVersion,
    );
    for (const e of transitionEvents(before, status))
      this.deps.manager.events.record(vm, e.type, e.reason, e.message);
  }

  /**
   * Server-side apply of the operator's fields of the status (phase, the pod's facts, its own
   * conditions) under its field manager: the node agent's conditions are entries of the same
   * list-map owned by another manager, so neither write can erase the other's, and no
   * resourceVersion guard (and no conflict retry) is needed. Fields we stop sending are removed.
   */
  private writeStatus(vm: UnikernelVM, status: UnikernelVMStatus): Promise<UnikernelVM> {
    return this.deps.manager.client.apply<UnikernelVM>(
      paths.customObject(UNIKERNELVM_PLURAL, vm.metadata.namespace!, vm.metadata.name!),
      {
        apiVersion: API_VERSION,
        kind: UNIKERNELVM_KIND,
        metadata: { name: vm.metadata.name, namespace: vm.metadata.namespace },
        status: operatorStatus(status),
      },
      FIELD_MANAGER,
      "status",
    );
  }
}
