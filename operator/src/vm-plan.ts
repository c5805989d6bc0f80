// What the UnikernelVM controller does about one VM, as a pure function of what it observed: no
// I/O, no clock but the one passed in. The controller (unikernelvm-controller.ts) carries the actions
// out in order and then writes the status computed from the pod the plan names.
import type { V1Pod, V1Service } from "@kubernetes/client-node";
import { ANNOTATIONS, FINALIZER, type UnikernelVM } from "../../api/index.js";
import { desiredPod, desiredService, domainHash, InvalidSpecError, type ResourceModel } from "./desired.js";
import { currentPod, migrationHoldsPods, type VMMigrations } from "./vm-migrations.js";
import { type ImageLookup, podMemoryMiB, resolveGuestMemory } from "./guest-memory.js";

export interface PlanInput {
  vm: UnikernelVM;
  /** The VM's pods (its label and its owner reference), from the cache. */
  pods: V1Pod[];
  /** The VM's services, from the cache. */
  services: V1Service[];
  migrations: VMMigrations;
  /** The pod we applied whose watch event has not come yet, by name (expectations). */
  expectedPod?: (name: string | undefined) => V1Pod | undefined;
  /** We added the finalizer and the cache does not show it yet. */
  finalizerPending?: boolean;
  now: Date;
  /** How the pod requests CPU and memory (desired.ts); the defaults when unset. */
  resources?: ResourceModel;
  /** The image's default memory as the operator read it (only looked up when spec.memory is unset). */
  image?: ImageLookup;
}

export interface EventSpec {
  type: "Normal" | "Warning";
  reason: string;
  message: string;
}

export type Action =
  | { kind: "addFinalizer" }
  | { kind: "removeFinalizer" }
  | { kind: "deletePod"; pod: V1Pod; event?: EventSpec }
  /** Server-side apply; the status is then computed from the pod the apiserver returns. */
  | { kind: "applyPod"; pod: V1Pod; created: boolean; event?: EventSpec }
  | { kind: "deleteService"; service: V1Service; event: EventSpec }
  | { kind: "applyService"; service: V1Service; event: EventSpec };

export interface Plan {
  actions: Action[];
  /** Compute and write the status (not while the VM is being deleted). */
  writeStatus: boolean;
  /**
   * The pod goes first, alone: the finalizer and the status follow in a later, low-priority pass
   * (the queue's), so that a burst of new VMs gets its pods before the apiserver spends itself on
   * the two writes per VM that only settle them. Until the finalizer is on, the pod's owner
   * reference is what takes it away should the VM be deleted.
   */
  settleLater?: boolean;
  /** The pod the status is computed from (before an applyPod replaces it). */
  pod?: V1Pod;
  replacing: boolean;
  invalidSpec?: string;
  requeueAfterMs?: number;
}

/** restartPolicy Always: a pod that ended (evicted, node lost) is replaced; the kubelet restarts the rest in place. */
export function mustRestart(vm: UnikernelVM, pod: V1Pod): boolean {
  if (pod.metadata?.deletionTimestamp) return false;
  const phase = pod.status?.phase;
  return (vm.spec.restartPolicy ?? "Always") === "Always" && (phase === "Failed" || phase === "Succeeded");
}

/** The labels and annotations we set are not what the pod carries (runPolicy changed in place). */
export function podDrifted(pod: V1Pod, want: V1Pod): boolean {
  const differs = (have: Record<string, string> | undefined, wanted: Record<string, string> | undefined) =>
    Object.entries(wanted ?? {}).some(([k, v]) => have?.[k] !== v);
  return (
    differs(pod.metadata?.labels, want.metadata?.labels) ||
    differs(pod.metadata?.annotations, want.metadata?.annotations)
  );
}

/**
 * The spec an apply to an existing pod sends: the wanted one, with the pod's own value of what a pod
 * cannot change once created and this operator's versions changed since (a pod made before
 * dnsPolicy Default keeps ClusterFirst; sending Default would be refused as an update).
 */
export function inPlaceSpec(want: V1Pod, current: V1Pod | undefined): V1Pod["spec"] {
  const have = current?.spec?.dnsPolicy;
  return have && want.spec ? { ...want.spec, dnsPolicy: have } : want.spec;
}

const portsKey = (s: V1Service | undefined) =>
  JSON.stringify(s?.spec?.ports?.map((p) => [p.name, p.port, p.protocol, p.targetPort]));

export function serviceDrifted(have: V1Service, want: V1Service): boolean {
  return (
    have.spec?.type !== want.spec?.type ||
    JSON.stringify(have.spec?.selector) !== JSON.stringify(want.spec?.selector) ||
    portsKey(have) !== portsKey(want)
  );
}

function planServices(services: V1Service[], want: V1Service | undefined): Action[] {
  const actions: Action[] = [];
  for (const svc of services.filter((s) => s.metadata?.name !== want?.metadata?.name))
    actions.push({
      kind: "deleteService",
      service: svc,
      event: { type: "Normal", reason: "ServiceDeleted", message: `deleted service ${svc.metadata?.name}` },
    });
  if (!want) return actions;
  const have = services.find((s) => s.metadata?.name === want.metadata?.name);
  if (have && !serviceDrifted(have, want)) return actions;
  actions.push({
    kind: "applyService",
    service: want,
    event: {
      type: "Normal",
      reason: have ? "ServiceUpdated" : "ServiceCreated",
      message: `${have ? "updated" : "created"} service ${want.metadata?.name}`,
    },
  });
  return actions;
}

/** Deleting: children first, and the finalizer only once the pods are gone (the domains destroyed). */
function planDeletion(i: PlanInput): Plan {
  const base = { writeStatus: false, replacing: false };
  if (!i.vm.metadata.finalizers?.includes(FINALIZER)) return { ...base, actions: [] };
  const actions: Action[] = [
    ...i.pods
      .filter((p) => !p.metadata?.deletionTimestamp)
      .map((pod) => ({ kind: "deletePod" as const, pod })),
    ...i.services.map((service) => ({
      kind: "deleteService" as const,
      service,
      event: {
        type: "Normal" as const,
        reason: "ServiceDeleted",
        message: `deleted service ${service.metadata?.name}`,
      },
    })),
  ];
  if (i.pods.length > 0) return { ...base, actions, requeueAfterMs: 2000 };
  return { ...base, actions: [...actions, { kind: "removeFinalizer" }] };
}

export function plan(i: PlanInput): Plan {
  const { vm, pods } = i;
  if (vm.metadata.deletionTimestamp) return planDeletion(i);
  const actions: Action[] = [];
  // The finalizer goes on with the first write that settles the VM (not with its pod: settleLater).
  if (!vm.metadata.finalizers?.includes(FINALIZER) && !i.finalizerPending)
    actions.push({ kind: "addFinalizer" });

  let wantPod: V1Pod | undefined;
  let wantService: V1Service | undefined;
  let invalidSpec: string | undefined;
  // The one guest-memory figure (guest-memory.ts): a pod the VM already has keeps the one it was made with.
  const made = pods.find((p) => p.metadata?.annotations?.[ANNOTATIONS.domainHash] === domainHash(vm));
  const memory = resolveGuestMemory(vm, i.image, podMemoryMiB(made?.metadata?.annotations));
  try {
    wantPod = desiredPod(vm, i.resources, { memoryMiB: memory.mib });
    wantService = desiredService(vm);
  } catch (err) {
    if (!(err instanceof InvalidSpecError)) throw err;
    invalidSpec = err.message;
  }
  const wantName = wantPod?.metadata?.name;

  if (migrationHoldsPods(i.migrations, pods, i.now)) {
    // A migration is handing the VM from its source pod to its target pod: touch neither.
    const current = wantPod ? currentPod(pods, wantName!, domainHash(vm)) : undefined;
    return {
      actions: [...actions, ...planServices(i.services, wantService)],
      writeStatus: true,
      replacing: true,
      requeueAfterMs: 2000,
      ...(current ? { pod: current } : {}),
      ...(invalidSpec !== undefined ? { invalidSpec } : {}),
    };
  }
  if (invalidSpec !== undefined)
    return {
      actions,
      writeStatus: true,
      replacing: false,
      invalidSpec,
      ...(pods[0] ? { pod: pods[0] } : {}),
    };

  // After a migration the VM runs in the adopted target pod, whose name is not wantName.
  let current =
    (wantPod ? currentPod(pods, wantName!, domainHash(vm)) : undefined) ?? i.expectedPod?.(wantName);
  let replacing = false;
  // Pods for an older spec (or any pod once the VM is Stopped) go first: one domain per VM.
  for (const old of pods.filter((p) => p !== current)) {
    replacing = true;
    if (old.metadata?.deletionTimestamp) continue;
    actions.push({
      kind: "deletePod",
      pod: old,
      event: {
        type: "Normal",
        reason: wantPod ? "Recreating" : "Stopping",
        message: `deleted pod ${old.metadata?.name}${wantPod ? " to start the new spec" : ""}`,
      },
    });
  }
  if (current && mustRestart(vm, current)) {
    actions.push({
      kind: "deletePod",
      pod: current,
      event: {
        type: "Warning",
        reason: "Restarting",
        message: `pod ${current.metadata?.name} ${current.status?.reason ?? "failed"}: ${current.status?.message ?? "restarting it (restartPolicy Always)"}`,
      },
    });
    current = { ...current, metadata: { ...current.metadata, deletionTimestamp: i.now } };
  } else if (wantPod && !replacing && (!current || podDrifted(current, wantPod))) {
    // An adopted target pod keeps its own name: runPolicy changes are applied to it in place.
    const name = current?.metadata?.name ?? wantName!;
    actions.push({
      kind: "applyPod",
      pod: { ...wantPod, metadata: { ...wantPod.metadata, name }, spec: inPlaceSpec(wantPod, current) },
      created: !current,
      ...(!current && memory.warning
        ? { event: { type: "Warning" as const, reason: "ImageMemoryUnknown", message: memory.warning } }
        : {}),
    });
  }
  actions.push(...planServices(i.services, wantService));
  const creates = actions.some((a) => a.kind === "applyPod" && a.created);
  // While an older pod is being replaced it says nothing about this spec: it may still run (the
  // cache has not seen its deletion yet), and Ready must not be True for a generation not started.
  const pod = current ?? (replacing ? undefined : pods[0]);
  if (creates)
    return {
      actions: actions.filter((a) => a.kind !== "addFinalizer"),
      writeStatus: false,
      settleLater: true,
      replacing,
      ...(pod ? { pod } : {}),
    };
  return {
    actions,
    writeStatus: true,
    replacing,
    ...(pod ? { pod } : {}),
    // A terminating pod with no kubelet behind it never sends another event: look again later.
    ...(replacing ? { requeueAfterMs: 2000 } : {}),
  };
}
