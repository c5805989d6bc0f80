// What deleting a UnikernelVMMigration does, as a pure function. The target pod is owned by the
// migration, so once the migration object is gone the garbage collector takes the pod; mid-stream,
// or after the point of no return (the domain runs on the target and the source copy is destroyed),
// that pod is where the VM lives. MIGRATION_FINALIZER holds the object while the migration is in
// flight: a deletion before the stream starts cancels the migration; one after it waits for the
// agents to finish. The finalizer is released as soon as the migration is finished, so a finished
// migration (or one whose VM went away, which fails as VMDeleted) never holds up its namespace.
// After a success it waits until the operator's pod cache shows the hand-over: the VM controller
// keeps its hands off the VM's pods while it sees a just-succeeded migration (migrationHoldsPods),
// and a deleted migration must not vanish from its view before the adopted pod appears in it, or it
// would see the VM without a pod and start a second domain.
import type { V1Pod } from "@kubernetes/client-node";
import {
  LABELS,
  MIGRATION_FINALIZER,
  type MigrationPhase,
  type UnikernelVMMigration,
} from "../../api/index.js";
import { IN_FLIGHT_PHASES, isFinished } from "./migration-decide.js";

/** Before these the source agent has not begun to stream: the domain still runs only on the source. */
export const BEFORE_STREAM_PHASES: readonly MigrationPhase[] = ["Pending", "Scheduling", "TargetPreparing"];

export const CANCELLED_REASON = "Cancelled";
export const DELETION_DEFERRED_REASON = "DeletionDeferred";

export type Protection =
  /** Nothing about the finalizer; the migration goes on as decide() says. */
  | { action: "none" }
  /** In flight and not protected yet: add the finalizer, then go on. */
  | { action: "protect" }
  /** Finished: remove the finalizer (a pending deletion then completes). */
  | { action: "release" }
  /** Deleted before the stream: end it as Failed (the target pod goes, the VM stays on the source). */
  | { action: "cancel"; reason: typeof CANCELLED_REASON; message: string }
  /** Deleted mid-stream: keep the finalizer, say so once, and let the agents finish. */
  | { action: "hold"; reason: typeof DELETION_DEFERRED_REASON; message: string };

export const isProtected = (m: UnikernelVMMigration): boolean =>
  m.metadata.finalizers?.includes(MIGRATION_FINALIZER) ?? false;

export interface ProtectionObserved {
  /** The migration's UnikernelVM exists and is not being deleted; without it decide() fails the
   *  migration (VMDeleted), and the finished migration releases. */
  vmPresent: boolean;
  /** The target pod as the operator's pod cache has it; undefined when it has none. */
  cachedTargetPod?: V1Pod;
}

/** Succeeded, and the cache does not show the target pod as the VM's yet. */
const handOverUnseen = (m: UnikernelVMMigration, pod: V1Pod | undefined): boolean =>
  m.status?.phase === "Succeeded" && !!pod && pod.metadata?.labels?.[LABELS.vm] !== m.spec.vmName;

/** The finalizer's next step. */
export function protection(m: UnikernelVMMigration, o: ProtectionObserved): Protection {
  const held = isProtected(m);
  if (isFinished(m))
    return held && !handOverUnseen(m, o.cachedTargetPod) ? { action: "release" } : { action: "none" };
  const phase: MigrationPhase = m.status?.phase ?? "Pending";
  if (!m.metadata.deletionTimestamp)
    // Added with the first in-flight phase, Scheduling: before the target pod is created.
    return !held && IN_FLIGHT_PHASES.includes(phase) ? { action: "protect" } : { action: "none" };
  if (BEFORE_STREAM_PHASES.includes(phase))
    return {
      action: "cancel",
      reason: CANCELLED_REASON,
      message: `deleted by the user before the transfer started (phase ${phase}); ${m.spec.vmName} stays on ${m.status?.sourceNode ?? "its node"}`,
    };
  // Without our finalizer (another one holds the object) there is nothing to wait on.
  if (!o.vmPresent || !held) return { action: "none" };
  return {
    action: "hold",
    reason: DELETION_DEFERRED_REASON,
    message: `deletion waits for the transfer to end (phase ${phase}, ${m.status?.sourceNode ?? "?"} -> ${m.status?.targetNode ?? "?"}): aborting mid-stream could lose the VM; ${MIGRATION_FINALIZER} is released once the migration succeeds or fails`,
  };
}
