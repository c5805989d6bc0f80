// What the migration controller should do next, as pure functions of what it observed: the
// migration (with the agents' conditions), the VM, its source pod, the target pod, the other
// migrations of the same VM, and the clock. Decisions are a policy chain: the first rule that
// has something to say wins, so the order of the rules is the order of precedence.
import type { V1Pod } from "@kubernetes/client-node";
import {
  ANNOTATIONS,
  type Condition,
  findCondition,
  MIGRATION_CONDITIONS,
  type MigrationPhase,
  type MigrationStatus,
  setCondition,
  type UnikernelVM,
  type UnikernelVMMigration,
} from "../../api/index.js";
import { domainHash } from "./desired.js";
import { podMemoryRequest, type Rejection, type TargetQuery } from "./migration-target.js";

/** Scheduling and TargetPreparing together, from startTime. */
export const PREPARING_TIMEOUT_MS = 5 * 60_000;
/** Transferring, from the target's TargetReady=True (startTime if the agent gave no time). */
export const TRANSFERRING_TIMEOUT_MS = 10 * 60_000;

export const IN_FLIGHT_PHASES: readonly MigrationPhase[] = [
  "Scheduling",
  "TargetPreparing",
  "Transferring",
  "Switching",
];
export const isInFlight = (m: UnikernelVMMigration): boolean =>
  IN_FLIGHT_PHASES.includes(m.status?.phase as MigrationPhase);
export const isFinished = (m: UnikernelVMMigration): boolean =>
  m.status?.phase === "Succeeded" || m.status?.phase === "Failed";

export interface MigrationObserved {
  m: UnikernelVMMigration;
  /** Undefined: there is no such VM. */
  vm?: UnikernelVM;
  /** The pod the VM runs in now (status.sourcePod once recorded, else the VM's status.podName). */
  sourcePod?: V1Pod;
  /** The target pod named in status.targetPod, if it exists. */
  targetPod?: V1Pod;
  /** The other migrations of the same VM. */
  siblings: readonly UnikernelVMMigration[];
  now: Date;
}

export type Decision =
  /** Finished: nothing is written again. */
  | { action: "none" }
  /** Pending: check the request and place it (checkRequest, then the target functions). */
  | { action: "validate" }
  /** In flight, nothing to do until something changes (or the deadline passes). */
  | { action: "wait"; requeueAfterMs?: number; note?: string }
  | { action: "fail"; reason: string; message: string }
  /** Scheduling: apply the target pod, then TargetPreparing. */
  | { action: "createTarget" }
  | { action: "advance"; phase: "Transferring" | "Switching"; reason: string; message: string }
  /** Switching: delete the source pod, hand the target pod to the VM, Succeeded. */
  | { action: "switch" };

type Rule = (o: MigrationObserved) => Decision | undefined;

const cond = (m: UnikernelVMMigration, type: string): Condition | undefined =>
  findCondition(m.status?.conditions, type);
const isTrue = (m: UnikernelVMMigration, type: string) => cond(m, type)?.status === "True";
const ms = (t: string | undefined) => (t ? Date.parse(t) : NaN);

function containerRunning(pod: V1Pod | undefined): boolean {
  return pod?.status?.containerStatuses?.some((c) => c.state?.running !== undefined) ?? false;
}

/** When the current phase gives up, or undefined when it has no deadline. */
export function deadline(m: UnikernelVMMigration): number | undefined {
  const phase = m.status?.phase;
  const start = ms(m.status?.startTime);
  if (phase === "Scheduling" || phase === "TargetPreparing")
    return Number.isNaN(start) ? undefined : start + PREPARING_TIMEOUT_MS;
  if (phase === "Transferring") {
    const ready = cond(m, MIGRATION_CONDITIONS.targetReady);
    const from = ready?.status === "True" ? ms(ready.lastTransitionTime) : start;
    return Number.isNaN(from) ? undefined : from + TRANSFERRING_TIMEOUT_MS;
  }
  return undefined;
}

/** The restored domain was unpaused on the target: past the point of no return. */
const targetRuns = (m: UnikernelVMMigration) => isTrue(m, MIGRATION_CONDITIONS.targetRunning);
/** The handover's commit point is recorded (the source's Committed=True): the target's copy is the VM. */
export const isCommitted = (m: UnikernelVMMigration): boolean => isTrue(m, MIGRATION_CONDITIONS.committed);
/** Past the commit, by the record or by its consequence (a target that runs): never fail, never delete
 *  the target pod, which holds the only copy that may run. */
const pastCommit = (m: UnikernelVMMigration): boolean => isCommitted(m) || targetRuns(m);

const RULES: Rule[] = [
  function finished({ m }) {
    return isFinished(m) ? { action: "none" } : undefined;
  },
  function pending({ m }) {
    return m.status?.phase === undefined || m.status.phase === "Pending" ? { action: "validate" } : undefined;
  },
  function vmDeleted({ m, vm }) {
    if (vm && !vm.metadata.deletionTimestamp) return undefined;
    return {
      action: "fail",
      reason: "VMDeleted",
      message: `UnikernelVM ${m.spec.vmName} was deleted while the migration was in phase ${m.status?.phase}`,
    };
  },
  function switching({ m }) {
    return m.status?.phase === "Switching" ? { action: "switch" } : undefined;
  },
  function committed({ m }) {
    // After the commit only one thing can happen: the target runs the VM. Until its agent records
    // that, wait (no deadline, no failure: the target pod holds the VM's copy).
    if (!pastCommit(m)) return undefined;
    if (targetRuns(m) || isTrue(m, MIGRATION_CONDITIONS.transferred))
      return {
        action: "advance",
        phase: "Switching",
        reason: "Switching",
        message: `committed; the domain runs on ${m.status?.targetNode}; moving the VM to pod ${m.status?.targetPod}`,
      };
    const running = cond(m, MIGRATION_CONDITIONS.targetRunning);
    return {
      action: "wait",
      requeueAfterMs: 5_000,
      ...(running?.status === "False"
        ? { note: `committed; the target reports ${running.reason}: ${running.message}` }
        : {}),
    };
  },
  function transferred({ m }) {
    if (!isTrue(m, MIGRATION_CONDITIONS.transferred)) return undefined;
    return {
      action: "advance",
      phase: "Switching",
      reason: "Switching",
      message: `the domain runs on ${m.status?.targetNode}; moving the VM to pod ${m.status?.targetPod}`,
    };
  },
  function aborted({ m }) {
    const c = cond(m, MIGRATION_CONDITIONS.committed);
    if (c?.status !== "False") return undefined;
    return {
      action: "fail",
      reason: c.reason,
      message: `the handover was aborted on the source node (the VM runs on there): ${c.message}`,
    };
  },
  function agentFailed({ m }) {
    // A target that runs is past the commit (even when an older source agent said Transferred=False).
    if (pastCommit(m)) return undefined;
    // TargetRunning=False, TargetReady=False: the target could not receive or restore; Transferred=False:
    // the stream failed and the source agent resumed the domain. Each agent's reason is kept.
    for (const [type, who] of [
      [MIGRATION_CONDITIONS.transferred, "source"],
      [MIGRATION_CONDITIONS.targetRunning, "target"],
      [MIGRATION_CONDITIONS.targetReady, "target"],
    ] as const) {
      const c = cond(m, type);
      if (c?.status === "False")
        return {
          action: "fail",
          reason: c.reason,
          message: `${type}=False on the ${who} node: ${c.message}`,
        };
    }
    return undefined;
  },
  function timedOut({ m, now }) {
    const at = deadline(m);
    if (at === undefined || now.getTime() < at) return undefined;
    if (targetRuns(m))
      return {
        action: "advance",
        phase: "Switching",
        reason: "Switching",
        message: `the domain runs on ${m.status?.targetNode} but the source agent did not confirm the transfer in time; switching to the target`,
      };
    const limit = m.status?.phase === "Transferring" ? TRANSFERRING_TIMEOUT_MS : PREPARING_TIMEOUT_MS;
    return {
      action: "fail",
      reason: "Timeout",
      message: `phase ${m.status?.phase} did not finish within ${limit / 60_000} minutes`,
    };
  },
  function targetPodLost({ m, targetPod }) {
    if (m.status?.phase === "Scheduling" || pastCommit(m)) return undefined;
    if (!targetPod || targetPod.metadata?.deletionTimestamp)
      return {
        action: "fail",
        reason: "TargetPodDeleted",
        message: `target pod ${m.status?.targetPod} was deleted`,
      };
    if (targetPod.status?.phase === "Failed" || targetPod.status?.phase === "Succeeded")
      return {
        action: "fail",
        reason: "TargetPodFailed",
        message: `target pod ${m.status?.targetPod} on ${m.status?.targetNode} ${targetPod.status.phase === "Failed" ? "failed" : "ended"}: ${[targetPod.status.reason, targetPod.status.message].filter(Boolean).join(": ") || "no reason given"}`,
      };
    return undefined;
  },
  function sourcePodLost({ m, sourcePod }) {
    if (pastCommit(m)) return undefined;
    if (sourcePod && !sourcePod.metadata?.deletionTimestamp) return undefined;
    return {
      action: "fail",
      reason: "SourcePodGone",
      message: `source pod ${m.status?.sourcePod} ${sourcePod ? "is being deleted" : "no longer exists"}`,
    };
  },
  function schedule({ m }) {
    return m.status?.phase === "Scheduling" ? { action: "createTarget" } : undefined;
  },
  function targetReady({ m, targetPod }) {
    if (m.status?.phase !== "TargetPreparing") return undefined;
    if (!containerRunning(targetPod) || !isTrue(m, MIGRATION_CONDITIONS.targetReady)) return undefined;
    return {
      action: "advance",
      phase: "Transferring",
      reason: "Transferring",
      message: `target ${m.status?.targetNode} is ready to receive; streaming from ${m.status?.sourceNode}`,
    };
  },
];

/** The next step for a migration. */
export function decide(o: MigrationObserved): Decision {
  for (const rule of RULES) {
    const d = rule(o);
    if (d) return d;
  }
  const at = deadline(o.m);
  return at === undefined
    ? { action: "wait" }
    : { action: "wait", requeueAfterMs: Math.max(0, at - o.now.getTime()) + 100 };
}

/** What checkRequest finds for a request that may go ahead: the target functions take it from here. */
export interface Admitted extends TargetQuery {
  sourcePod: string;
}

/** The longest label value: the migration's name is the value of the migration label on the target pod. */
const MAX_LABEL_VALUE = 63;

/**
 * Pending: whether the request can start. "wait" when an older request for the same VM has not
 * been decided yet (the older one goes first; this one then fails AlreadyMigrating or runs after).
 */
export function checkRequest(o: MigrationObserved): Admitted | Rejection | "wait" {
  const { m, vm, sourcePod } = o;
  const name = m.metadata.name ?? "";
  if (name.length > MAX_LABEL_VALUE || !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name))
    return {
      reason: "InvalidName",
      message: `a migration's name must be a DNS label of at most ${MAX_LABEL_VALUE} characters (it labels the target pod); got ${JSON.stringify(name.slice(0, 80))}`,
    };
  if (!vm || vm.metadata.deletionTimestamp)
    return {
      reason: "VMNotFound",
      message: `UnikernelVM ${m.spec.vmName} ${vm ? "is being deleted" : `does not exist in namespace ${m.metadata.namespace}`}`,
    };
  const phase = vm.status?.phase;
  if (phase !== "Running" && phase !== "Paused")
    return {
      reason: "VMNotRunning",
      message: `UnikernelVM ${m.spec.vmName} is ${phase ?? "Pending"}; only a Running or Paused VM can be migrated`,
    };
  if (!sourcePod || sourcePod.metadata?.deletionTimestamp || !sourcePod.spec?.nodeName)
    return {
      reason: "VMNotRunning",
      message: `UnikernelVM ${m.spec.vmName} has no running pod bound to a node (pod ${vm.status?.podName ?? "none"})`,
    };
  if (sourcePod.metadata?.annotations?.[ANNOTATIONS.domainHash] !== domainHash(vm))
    return {
      reason: "VMNotRunning",
      message: `UnikernelVM ${m.spec.vmName} is being recreated for a new spec; migrate it once it runs`,
    };
  const busy = o.siblings.find(isInFlight);
  if (busy)
    return {
      reason: "AlreadyMigrating",
      message: `UnikernelVM ${m.spec.vmName} is being migrated by ${busy.metadata.name} (phase ${busy.status?.phase})`,
    };
  const older = (s: UnikernelVMMigration) => {
    const a = s.metadata.creationTimestamp ?? "";
    const b = m.metadata.creationTimestamp ?? "";
    return a < b || (a === b && (s.metadata.name ?? "") < name);
  };
  if (o.siblings.some((s) => !isFinished(s) && !isInFlight(s) && older(s))) return "wait";
  return {
    sourcePod: sourcePod.metadata!.name!,
    sourceNode: sourcePod.spec.nodeName,
    memoryBytes: podMemoryRequest(sourcePod),
    ...(vm.spec.nodeSelector ? { nodeSelector: vm.spec.nodeSelector } : {}),
  };
}

/** The fields of a migration's status that the operator owns (see api/v1alpha1/migration.ts). */
const OPERATOR_FIELDS = [
  "phase",
  "sourceNode",
  "targetNode",
  "sourcePod",
  "targetPod",
  "startTime",
  "completionTime",
  "totalMilliseconds",
  "message",
  "observedGeneration",
] as const satisfies readonly (keyof MigrationStatus)[];

export type OperatorStatusChange = Partial<Pick<MigrationStatus, (typeof OPERATOR_FIELDS)[number]>> & {
  phase: MigrationPhase;
  reason: string;
  message: string;
};

const timestamp = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, "Z");

/**
 * The operator's whole part of the status after a change: what it wrote before, overlaid with the
 * change, and its one condition, Succeeded. Applied with server-side apply, so it must carry every
 * field the operator owns (an omitted one would be removed) and nothing an agent owns.
 */
export function operatorStatus(
  m: UnikernelVMMigration,
  change: OperatorStatusChange,
  now: Date,
): MigrationStatus {
  const status: MigrationStatus = {};
  const before = m.status ?? {};
  for (const k of OPERATOR_FIELDS)
    if (before[k] !== undefined) (status as Record<string, unknown>)[k] = before[k];
  const { reason, ...fields } = change;
  Object.assign(status, fields);
  if (m.metadata.generation !== undefined) status.observedGeneration = m.metadata.generation;
  if (change.phase === "Succeeded" || change.phase === "Failed") {
    status.completionTime = timestamp(now);
    const start = ms(status.startTime);
    if (!Number.isNaN(start)) status.totalMilliseconds = Math.max(0, Math.round(now.getTime() - start));
  }
  const mine = (before.conditions ?? []).filter((c) => c.type === MIGRATION_CONDITIONS.succeeded);
  status.conditions = setCondition(
    mine,
    {
      type: MIGRATION_CONDITIONS.succeeded,
      status: change.phase === "Succeeded" ? "True" : change.phase === "Failed" ? "False" : "Unknown",
      reason,
      message: change.message,
      ...(m.metadata.generation !== undefined ? { observedGeneration: m.metadata.generation } : {}),
    },
    now,
  );
  return status;
}

export { timestamp as migrationTimestamp };
