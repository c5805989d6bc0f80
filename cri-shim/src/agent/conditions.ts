// The slice of a UnikernelVM's status the node agent owns: the Paused and Suspended conditions, and
// the phase while the VM runs on this node. A pure function of what the agent observed, so the
// operator (which owns Ready, Scheduled, Migrating) and the agent never write the same condition.
import {
  type Condition,
  type ConditionInput,
  setCondition,
  type UnikernelVM,
  type VMPhase,
} from "../../../api/index.js";
import type { ObservedDomain } from "./decide.js";

export const AGENT_FIELD_MANAGER = "superfluid-node-agent";
export const AGENT_CONDITIONS = ["Paused", "Suspended"] as const;

export interface AgentObservation {
  domain: ObservedDomain;
  suspended: boolean;
  /** The last failure of a pause/suspend/restore for the current generation, if any. */
  failure?: { op: "pause" | "unpause" | "suspend" | "restore"; reason: string; message: string };
}

type Verdict = Omit<ConditionInput, "type" | "observedGeneration">;

export interface AgentStatus {
  phase: VMPhase;
  conditions: Condition[];
}

export function agentStatus(vm: UnikernelVM, o: AgentObservation, now: Date = new Date()): AgentStatus {
  const policy = vm.spec.runPolicy ?? "Running";
  const f = o.failure;
  const paused: Verdict =
    o.domain === "paused"
      ? { status: "True", reason: "Paused", message: "the domain is paused; its memory is kept" }
      : f && (f.op === "pause" || f.op === "unpause")
        ? { status: "False", reason: f.reason, message: f.message }
        : policy === "Paused" && !o.suspended
          ? {
              status: "False",
              reason: "Pausing",
              message: "runPolicy is Paused; the node agent is pausing the domain",
            }
          : { status: "False", reason: "NotPaused", message: "the domain is not paused" };
  const suspended: Verdict =
    o.suspended && f?.op === "restore"
      ? { status: "True", reason: f.reason, message: f.message }
      : o.suspended
        ? { status: "True", reason: "Suspended", message: "the domain is saved to disk; its memory is freed" }
        : f?.op === "suspend"
          ? { status: "False", reason: f.reason, message: f.message }
          : policy === "Suspended"
            ? {
                status: "False",
                reason: "Suspending",
                message: "runPolicy is Suspended; the node agent is saving the domain",
              }
            : { status: "False", reason: "NotSuspended", message: "the domain is not suspended" };
  const generation = vm.metadata.generation;
  let conditions = vm.status?.conditions;
  for (const [type, v] of [
    ["Paused", paused],
    ["Suspended", suspended],
  ] as const)
    conditions = setCondition(
      conditions,
      { type, ...v, ...(generation !== undefined ? { observedGeneration: generation } : {}) },
      now,
    );
  const phase: VMPhase = o.suspended
    ? "Suspended"
    : o.domain === "paused"
      ? "Paused"
      : o.domain === "running"
        ? "Running"
        : (vm.status?.phase ?? "Pending");
  return { phase, conditions: conditions ?? [] };
}

/** True when writing `next` would change what the VM shows (lastTransitionTime aside). */
export function agentStatusDiffers(vm: UnikernelVM, next: AgentStatus): boolean {
  if (vm.status?.phase !== next.phase) return true;
  for (const type of AGENT_CONDITIONS) {
    const a = vm.status?.conditions?.find((c) => c.type === type);
    const b = next.conditions.find((c) => c.type === type);
    if (
      !a ||
      !b ||
      a.status !== b.status ||
      a.reason !== b.reason ||
      a.message !== b.message ||
      a.observedGeneration !== b.observedGeneration
    )
      return true;
  }
  return false;
}
