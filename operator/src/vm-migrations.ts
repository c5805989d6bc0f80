// How migrations show on their VM, as pure functions for the VM controller: which pod is the VM's
// current one (after a migration it is the adopted target pod, whose name is not podName(vm)),
// when the VM controller must keep its hands off the pods (the switch in progress), and the VM's
// Migrating condition and lastMigration.
import type { V1Pod } from "@kubernetes/client-node";
import {
  ANNOTATIONS,
  type ConditionInput,
  type UnikernelVM,
  type UnikernelVMMigration,
  type UnikernelVMStatus,
} from "../../api/index.js";
import { isFinished, isInFlight } from "./migration-decide.js";

/** The migrations that name this VM. */
export function migrationsOf(vm: UnikernelVM, all: readonly UnikernelVMMigration[]): UnikernelVMMigration[] {
  return all.filter(
    (m) => m.metadata.namespace === vm.metadata.namespace && m.spec.vmName === vm.metadata.name,
  );
}

export interface VMMigrations {
  /** The migration moving the VM now, if any (at most one is admitted per VM). */
  inFlight?: UnikernelVMMigration;
  /** The one that finished last. */
  last?: UnikernelVMMigration;
}

export function summarize(ofVM: readonly UnikernelVMMigration[]): VMMigrations {
  const inFlight = ofVM.find(isInFlight);
  const finished = ofVM
    .filter((m) => isFinished(m) && m.status?.completionTime)
    .sort((a, b) =>
      a.status!.completionTime! !== b.status!.completionTime!
        ? a.status!.completionTime! < b.status!.completionTime!
          ? 1
          : -1
        : (a.metadata.name ?? "") < (b.metadata.name ?? "")
          ? 1
          : -1,
    );
  return { ...(inFlight ? { inFlight } : {}), ...(finished[0] ? { last: finished[0] } : {}) };
}

type Reason = Pick<ConditionInput, "status" | "reason" | "message">;

/** The VM's Migrating condition: True while a migration is in flight, else what the last one did. */
export function migratingCondition(s: VMMigrations): Reason {
  const m = s.inFlight;
  if (m)
    return {
      status: "True",
      reason: `Migration${m.status!.phase}`,
      message: `${m.metadata.name}: ${m.status?.message ?? m.status?.phase} (${m.status?.sourceNode ?? "?"} -> ${m.status?.targetNode ?? "?"})`,
    };
  const last = s.last;
  if (last?.status?.phase === "Failed")
    return {
      status: "False",
      reason: "MigrationFailed",
      message: `${last.metadata.name} failed: ${last.status.message ?? "no reason given"}`,
    };
  if (last?.status?.phase === "Succeeded")
    return {
      status: "False",
      reason: "Migrated",
      message: `${last.metadata.name} moved the VM from ${last.status.sourceNode} to ${last.status.targetNode} in ${last.status.totalMilliseconds ?? "?"} ms`,
    };
  return { status: "False", reason: "NotMigrating", message: "no migration in progress" };
}

export function lastMigrationOf(s: VMMigrations): UnikernelVMStatus["lastMigration"] | undefined {
  const m = s.last;
  if (!m?.status) return undefined;
  const st = m.status;
  return {
    name: m.metadata.name!,
    ...(st.sourceNode ? { sourceNode: st.sourceNode } : {}),
    ...(st.targetNode ? { targetNode: st.targetNode } : {}),
    ...(st.phase ? { phase: st.phase } : {}),
    ...(st.completionTime ? { completionTime: st.completionTime } : {}),
    ...(st.downtimeMilliseconds !== undefined ? { downtimeMilliseconds: st.downtimeMilliseconds } : {}),
  };
}

/**
 * The pod that runs the VM's current spec, among the VM's own pods: the one named podName(vm), or
 * else (after a migration) the pod that carries the same domain hash. A live one wins over one
 * being deleted; undefined when there is none.
 */
export function currentPod(owned: readonly V1Pod[], wantName: string, wantHash: string): V1Pod | undefined {
  const candidates = owned.filter(
    (p) => p.metadata?.name === wantName || p.metadata?.annotations?.[ANNOTATIONS.domainHash] === wantHash,
  );
  const rank = (p: V1Pod) =>
    (p.metadata?.deletionTimestamp ? 2 : 0) + (p.metadata?.name === wantName ? 0 : 1);
  return [...candidates].sort(
    (a, b) => rank(a) - rank(b) || (a.metadata!.name! < b.metadata!.name! ? -1 : 1),
  )[0];
}

/** How long after a migration succeeded its target pod may still be missing from the pod cache. */
export const ADOPTION_GRACE_MS = 30_000;

/**
 * Whether the VM controller must leave the VM's pods alone: while a migration switches (the source
 * pod is deleted and the target handed over, in two writes), and just after, until the adopted
 * target shows in the cache. Otherwise it would see no pod, or two, and create or delete one.
 */
export function migrationHoldsPods(s: VMMigrations, owned: readonly V1Pod[], now: Date): boolean {
  if (s.inFlight?.status?.phase === "Switching") return true;
  const last = s.last;
  if (last?.status?.phase !== "Succeeded" || !last.status.targetPod) return false;
  const adopted = owned.some((p) => p.metadata?.name === last.status!.targetPod);
  const since = now.getTime() - Date.parse(last.status.completionTime ?? "");
  return !adopted && Math.abs(since) < ADOPTION_GRACE_MS;
}
