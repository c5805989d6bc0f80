// The pods of a migration, as pure functions: the target pod the operator creates on the chosen
// node, and the patch that makes it the VM's pod once the domain runs there.
import type { V1Pod } from "@kubernetes/client-node";
import {
  ANNOTATIONS,
  API_VERSION,
  FIELD_MANAGER,
  LABELS,
  MIGRATION_KIND,
  type UnikernelVM,
  type UnikernelVMMigration,
} from "../../api/index.js";
import { childLabels, desiredPod, ownerReference, podName, type ResourceModel } from "./desired.js";

/**
 * The field manager of the migration controller's pod writes. Not FIELD_MANAGER: the VM controller
 * applies the VM's desired pod to an adopted target under FIELD_MANAGER, and an apply removes every
 * field its manager owned and no longer sends (spec.nodeName, which is immutable, among them).
 */
export const MIGRATION_POD_MANAGER = `${FIELD_MANAGER}-migration`;

/**
 * `<vm>-<domain hash>-<first 5 characters of the migration's uid>`: deterministic (a restarted
 * operator applies the same pod), distinct per migration, and it does not grow over migrations.
 */
export function targetPodName(vm: UnikernelVM, m: UnikernelVMMigration): string {
  return `${podName(vm)}-${(m.metadata.uid ?? "").replace(/-/g, "").slice(0, 5)}`;
}

/**
 * The VM's desired pod, bound to the target node (the scheduler is bypassed: the target is chosen),
 * marked for the shim as a migration target, owned by the migration (deleting it removes the pod),
 * and without the VM label, so the VM's Service and the VM controller do not see it yet.
 * It carries the source pod's guest-memory figure (the domain moves with its memory), when given.
 * Undefined when the VM has no desired pod (runPolicy Stopped).
 */
export function desiredTargetPod(
  vm: UnikernelVM,
  m: UnikernelVMMigration,
  targetNode: string,
  resources?: ResourceModel,
  sourceMemoryMiB?: number,
): V1Pod | undefined {
  const base = desiredPod(vm, resources, sourceMemoryMiB !== undefined ? { memoryMiB: sourceMemoryMiB } : {});
  if (!base) return undefined;
  const labels: Record<string, string> = { ...base.metadata!.labels };
  delete labels[LABELS.vm];
  labels[LABELS.migration] = m.metadata.name!;
  return {
    ...base,
    metadata: {
      ...base.metadata,
      name: targetPodName(vm, m),
      labels,
      annotations: { ...base.metadata!.annotations, [ANNOTATIONS.migrationTarget]: m.metadata.name! },
      ownerReferences: [
        {
          apiVersion: API_VERSION,
          kind: MIGRATION_KIND,
          name: m.metadata.name!,
          uid: m.metadata.uid!,
          controller: true,
          // No blockOwnerDeletion: it would need update on unikernelvmmigrations/finalizers, and
          // nothing waits for this pod's deletion through the migration.
        },
      ],
    },
    spec: { ...base.spec!, nodeName: targetNode },
  };
}

/**
 * The JSON merge patch that hands a target pod whose domain runs to the VM: the VM label (the
 * Service's selector now matches it), the VM as owner instead of the migration, and no more
 * migration-target annotation (a sandbox the kubelet re-creates later must boot, not wait for a
 * stream). Its name stays: a pod cannot be renamed.
 */
export function adoptionPatch(vm: UnikernelVM): object {
  return {
    metadata: {
      labels: { ...childLabels(vm), [LABELS.migration]: null },
      annotations: { [ANNOTATIONS.migrationTarget]: null },
      ownerReferences: [ownerReference(vm)],
    },
  };
}

/** Whether the pod already is what adoptionPatch makes it. */
export function isAdopted(pod: V1Pod, vm: UnikernelVM): boolean {
  const md = pod.metadata ?? {};
  const owners = md.ownerReferences ?? [];
  return (
    md.labels?.[LABELS.vm] === vm.metadata.name &&
    md.labels?.[LABELS.migration] === undefined &&
    md.annotations?.[ANNOTATIONS.migrationTarget] === undefined &&
    owners.length === 1 &&
    owners[0]!.uid === vm.metadata.uid
  );
}
