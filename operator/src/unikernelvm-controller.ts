// The UnikernelVM reconciler. Level-triggered: every event only names a key; reconcile(key) reads
// the caches, computes the desired pod and service with the pure functions in desired.ts, applies
// them with server-side apply, and writes the status computed in status.ts.
import type { KubeConfig, V1Node, V1Pod, V1Service } from "@kubernetes/client-node";
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
import { desiredPod, desiredService, domainHash, InvalidSpecError } from "./desired.js";
import type { EventRecorder } from "./events.js";
import { type Watched, watchResource } from "../../lib/kube/informers.js";
import { isNotFound, type KubeClient, paths } from "../../lib/kube/client.js";
import type { OperatorMetrics } from "./metrics.js";
import { type ReconcileResult, WorkQueue } from "../../lib/kube/queue.js";
import { computeStatus, statusEqual, transitionEvents } from "./status.js";
import { Expectations } from "./expectations.js";
import { currentPod, migrationHoldsPods, migrationsOf, summarize } from "./vm-migrations.js";

const log = logger("unikernelvm-controller");
const CONTROLLER = "unikernelvm";
const MANAGED = `${LABELS.managedBy}=${FIELD_MANAGER}`;

export interface ControllerDeps {
  kc: KubeConfig;
  client: KubeClient;
  events: EventRecorder;
  metrics: OperatorMetrics;
  /** Watch one namespace only (undefined: all). */
  namespace?: string;
  workers?: number;
}

const keyOf = (ns: string | undefined, name: string | undefined) => `${ns}/${name}`;

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
    const { kc, client, namespace } = deps;
    this.vms = watchResource<UnikernelVM>(kc, client, paths.custom(UNIKERNELVM_PLURAL, namespace));
    this.pods = watchResource<V1Pod>(kc, client, paths.pods(namespace), MANAGED);
    this.services = watchResource<V1Service>(kc, client, paths.services(namespace), MANAGED);
    this.nodes = watchResource<V1Node>(kc, client, paths.nodes());
    this.migrations = watchResource<UnikernelVMMigration>(
      kc,
      client,
      paths.custom(MIGRATION_PLURAL, namespace),
    );
    this.queue = new WorkQueue((key) => this.reconcile(key), {
      name: CONTROLLER,
      workers: deps.workers ?? 16,
      onResult: (outcome, seconds) => deps.metrics.observe(CONTROLLER, outcome, seconds),
    });
  }

  async start(): Promise<void> {
    const enqueueVM = (vm: UnikernelVM) => this.queue.add(keyOf(vm.metadata.namespace, vm.metadata.name));
    const observeVM = (vm: UnikernelVM) => {
      const key = keyOf(vm.metadata.namespace, vm.metadata.name);
      this.expectations.observeVM(
        key,
        vm.metadata.resourceVersion,
        !!vm.metadata.finalizers?.includes(FINALIZER),
      );
      this.queue.add(key);
    };
    const ownerKey = (o: V1Pod | V1Service) => {
      const vm = o.metadata?.labels?.[LABELS.vm];
      return vm ? keyOf(o.metadata?.namespace, vm) : undefined;
    };
    const enqueueForPod = (pod: V1Pod) => {
      const key = ownerKey(pod);
      if (!key) return;
      this.expectations.observePod(key, pod.metadata?.name);
      this.queue.add(key);
    };
    const enqueueForService = (svc: V1Service) => {
      const key = ownerKey(svc);
      if (key) this.queue.add(key);
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
      this.migrations.on(verb, (m) => this.queue.add(keyOf(m.metadata.namespace, m.spec.vmName)));
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

  /** The VM's pods: its label and its owner reference. A migration's target pod has neither until it is adopted. */
  private ownedPods(vm: UnikernelVM): V1Pod[] {
    return this.pods
      .list(vm.metadata.namespace)
      .filter(
        (p) =>
          p.metadata?.labels?.[LABELS.vm] === vm.metadata.name &&
          p.metadata?.ownerReferences?.some((r) => r.uid === vm.metadata.uid),
      );
  }

  private ownedServices(vm: UnikernelVM): V1Service[] {
    return this.services
      .list(vm.metadata.namespace)
      .filter(
        (s) =>
          s.metadata?.labels?.[LABELS.vm] === vm.metadata.name &&
          s.metadata?.ownerReferences?.some((r) => r.uid === vm.metadata.uid),
      );
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
    const pods = this.ownedPods(vm);
    if (vm.metadata.deletionTimestamp) return this.finalize(vm, pods);
    if (!vm.metadata.finalizers?.includes(FINALIZER) && !this.expectations.expectsFinalizer(key)) {
      await this.addFinalizer(vm);
      this.expectations.finalizerAdded(key);
    }

    let wantPod: V1Pod | undefined;
    let wantService: V1Service | undefined;
    let invalidSpec: string | undefined;
    try {
      wantPod = desiredPod(vm);
      wantService = desiredService(vm);
    } catch (err) {
      if (!(err instanceof InvalidSpecError)) throw err;
      invalidSpec = err.message;
    }

    const migrations = summarize(migrationsOf(vm, this.migrations.list(ns)));
    let current: V1Pod | undefined;
    let replacing = false;
    if (migrationHoldsPods(migrations, pods, new Date())) {
      // A migration is handing the VM from its source pod to its target pod: touch neither.
      current = wantPod ? currentPod(pods, wantPod.metadata!.name!, domainHash(vm)) : undefined;
      replacing = true;
      await this.reconcileService(vm, wantService);
    } else if (invalidSpec === undefined) {
      const wantName = wantPod?.metadata?.name;
      // After a migration the VM runs in the adopted target pod, whose name is not wantName.
      current =
        (wantPod ? currentPod(pods, wantName!, domainHash(vm)) : undefined) ??
        this.expectations.expectedPod(key, wantName);
      // Pods for an older spec (or any pod once the VM is Stopped) go first: one domain per VM.
      for (const old of pods.filter((p) => p !== current)) {
        replacing = true;
        if (old.metadata?.deletionTimestamp) continue;
        await this.deletePod(old);
        this.deps.events.record(
          vm,
          "Normal",
          wantPod ? "Recreating" : "Stopping",
          `deleted pod ${old.metadata?.name}${wantPod ? " to start the new spec" : ""}`,
        );
      }
      if (current && this.mustRestart(vm, current)) {
        await this.deletePod(current);
        this.deps.events.record(
          vm,
          "Warning",
          "Restarting",
          `pod ${current.metadata?.name} ${current.status?.reason ?? "failed"}: ${current.status?.message ?? "restarting it (restartPolicy Always)"}`,
        );
        current = { ...current, metadata: { ...current.metadata, deletionTimestamp: new Date() } };
      } else if (wantPod && !replacing && (!current || this.podDrifted(current, wantPod))) {
        const created = !current;
        // An adopted target pod keeps its own name: runPolicy changes are applied to it in place.
        const name = current?.metadata?.name ?? wantPod.metadata!.name!;
        current = await this.deps.client.apply<V1Pod>(
          paths.pod(ns, name),
          { ...wantPod, metadata: { ...wantPod.metadata, name } },
          FIELD_MANAGER,
        );
        this.expectations.podApplied(key, current);
        if (created)
          this.deps.events.record(vm, "Normal", "PodCreated", `created pod ${current.metadata?.name}`);
      }
      await this.reconcileService(vm, wantService);
    }

    const node = current?.spec?.nodeName ? this.nodes.get(current.spec.nodeName) : undefined;
    // Compare with what we last wrote when the cache has not caught up with it yet.
    const before = this.expectations.expectedStatus(key) ?? vm.status;
    const status = computeStatus({
      vm: { ...vm, ...(before ? { status: before } : {}) },
      // While an older pod is being replaced it says nothing about this spec: it may still run (the
      // cache has not seen its deletion yet), and Ready must not be True for a generation not started.
      pod: current ?? (replacing ? undefined : pods[0]),
      node,
      xenNodeCount: this.xenNodeCount(),
      replacing,
      invalidSpec,
      migrations,
    });
    if (!statusEqual(before, status)) {
      // Guarded by the resourceVersion the status was computed from: the node agent writes its own
      // conditions (Paused, Suspended) into the same list, and a stale base must not erase them.
      const rv = this.expectations.expectedResourceVersion(key) ?? vm.metadata.resourceVersion;
      const written = await this.writeStatus(vm, before, status, rv);
      this.expectations.statusWritten(
        key,
        status,
        written.metadata.resourceVersion,
        this.vms.get(name, ns)?.metadata.resourceVersion,
      );
      for (const e of transitionEvents(before, status))
        this.deps.events.record(vm, e.type, e.reason, e.message);
    }
    if (invalidSpec !== undefined) throw new InvalidSpecError(`${key}: ${invalidSpec}`);
    // A terminating pod with no kubelet behind it never sends another event: look again later.
    if (replacing) return { requeueAfterMs: 2000 };
  }

  /**
   * A JSON merge patch of the status subresource: cheaper on the apiserver than an apply of a custom
   * resource (no managed-fields merge), and fields that went away are sent as null so none go stale.
   */
  private async writeStatus(
    vm: UnikernelVM,
    before: UnikernelVMStatus | undefined,
    status: UnikernelVMStatus,
    resourceVersion: string | undefined,
  ): Promise<UnikernelVM> {
    const patch: Record<string, unknown> = { ...status };
    for (const k of Object.keys(before ?? {})) if (!(k in status)) patch[k] = null;
    return this.deps.client.request<UnikernelVM>({
      method: "PATCH",
      path: `${paths.customObject(UNIKERNELVM_PLURAL, vm.metadata.namespace!, vm.metadata.name!)}/status`,
      query: { fieldManager: FIELD_MANAGER },
      body: { metadata: { resourceVersion }, status: patch },
      contentType: "application/merge-patch+json",
    });
  }

  /** restartPolicy Always: a pod that ended (evicted, node lost) is replaced; the kubelet restarts the rest in place. */
  private mustRestart(vm: UnikernelVM, pod: V1Pod): boolean {
    if (pod.metadata?.deletionTimestamp) return false;
    const phase = pod.status?.phase;
    return (vm.spec.restartPolicy ?? "Always") === "Always" && (phase === "Failed" || phase === "Succeeded");
  }

  /** The labels and annotations we set are not what the pod carries (runPolicy changed in place). */
  private podDrifted(pod: V1Pod, want: V1Pod): boolean {
    const differs = (have: Record<string, string> | undefined, wanted: Record<string, string> | undefined) =>
      Object.entries(wanted ?? {}).some(([k, v]) => have?.[k] !== v);
    return (
      differs(pod.metadata?.labels, want.metadata?.labels) ||
      differs(pod.metadata?.annotations, want.metadata?.annotations)
    );
  }

  private async reconcileService(vm: UnikernelVM, want: V1Service | undefined): Promise<void> {
    const ns = vm.metadata.namespace!;
    const owned = this.ownedServices(vm);
    for (const svc of owned.filter((s) => s.metadata?.name !== want?.metadata?.name)) {
      await this.deps.client
        .request({ method: "DELETE", path: paths.service(ns, svc.metadata!.name!) })
        .catch((e: unknown) => {
          if (!isNotFound(e)) throw e;
        });
      this.deps.events.record(vm, "Normal", "ServiceDeleted", `deleted service ${svc.metadata?.name}`);
    }
    if (!want) return;
    const have = owned.find((s) => s.metadata?.name === want.metadata?.name);
    const same =
      have &&
      have.spec?.type === want.spec?.type &&
      JSON.stringify(have.spec?.selector) === JSON.stringify(want.spec?.selector) &&
      JSON.stringify(have.spec?.ports?.map((p) => [p.name, p.port, p.protocol, p.targetPort])) ===
        JSON.stringify(want.spec?.ports?.map((p) => [p.name, p.port, p.protocol, p.targetPort]));
    if (same) return;
    await this.deps.client.apply(paths.service(ns, want.metadata!.name!), want, FIELD_MANAGER);
    this.deps.events.record(
      vm,
      "Normal",
      have ? "ServiceUpdated" : "ServiceCreated",
      `${have ? "updated" : "created"} service ${want.metadata?.name}`,
    );
  }

  private async deletePod(pod: V1Pod): Promise<void> {
    const ns = pod.metadata!.namespace!;
    await this.deps.client
      .request({
        method: "DELETE",
        path: paths.pod(ns, pod.metadata!.name!),
        body: { apiVersion: "v1", kind: "DeleteOptions", preconditions: { uid: pod.metadata!.uid } },
      })
      .catch((e: unknown) => {
        if (!isNotFound(e)) throw e;
      });
  }

  private async addFinalizer(vm: UnikernelVM): Promise<void> {
    // The resourceVersion makes this a compare-and-swap: a concurrent writer's finalizers are not lost.
    const finalizers = [...(vm.metadata.finalizers ?? []), FINALIZER];
    const updated = await this.deps.client.request<UnikernelVM>({
      method: "PATCH",
      path: paths.customObject(UNIKERNELVM_PLURAL, vm.metadata.namespace!, vm.metadata.name!),
      body: { metadata: { finalizers, resourceVersion: vm.metadata.resourceVersion } },
      contentType: "application/merge-patch+json",
    });
    vm.metadata = updated.metadata;
  }

  /** Deletes the children and waits for the pods to be gone (the domain destroyed) before letting the VM go. */
  private async finalize(vm: UnikernelVM, pods: V1Pod[]): Promise<ReconcileResult | void> {
    if (!vm.metadata.finalizers?.includes(FINALIZER)) return;
    const ns = vm.metadata.namespace!;
    for (const p of pods) if (!p.metadata?.deletionTimestamp) await this.deletePod(p);
    for (const s of this.ownedServices(vm)) {
      await this.deps.client
        .request({ method: "DELETE", path: paths.service(ns, s.metadata!.name!) })
        .catch((e: unknown) => {
          if (!isNotFound(e)) throw e;
        });
    }
    if (pods.length > 0) {
      log.debug("waiting for pods to terminate before removing the finalizer", {
        vm: `${ns}/${vm.metadata.name}`,
        pods: pods.length,
      });
      return { requeueAfterMs: 2000 };
    }
    const finalizers = vm.metadata.finalizers.filter((f) => f !== FINALIZER);
    await this.deps.client.request({
      method: "PATCH",
      path: paths.customObject(UNIKERNELVM_PLURAL, ns, vm.metadata.name!),
      body: { metadata: { finalizers, resourceVersion: vm.metadata.resourceVersion } },
      contentType: "application/merge-patch+json",
    });
    log.info("cleaned up", { vm: `${ns}/${vm.metadata.name}` });
  }
}
