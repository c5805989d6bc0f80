// The slice of a UnikernelVM's status the node agent owns: the Paused and Suspended conditions and the
// domain's id and state (AGENT_STATUS_FIELDS), nothing else. A pure function of what the agent
// observed on its node. The operator owns phase, Ready, Scheduled and Migrating, and derives the
// phase from the pod and these two conditions (then domainState):
//   Paused=True     the domain exists and is paused (its memory is kept)      -> phase Paused
//   Suspended=True  the domain is saved to a checkpoint on the node (no memory) -> phase Suspended
// Both False: the domain runs as far as the agent is concerned (the reason tells why it is not, yet,
// what runPolicy asks: Pausing, Suspending, PauseFailed, SuspendFailed...). observedGeneration says
// which spec the verdict is for. The agent applies them with server-side apply under its own field
// manager (agentFieldManager), so no write of the operator's can remove or revert them, or theirs.
// They live on the VM, not on its pod: every pod update costs the kubelet a pass over every pod on
// the node (docs/resources.md, "The kubelet's wall").
import {
  type Condition,
  type ConditionInput,
  type DomainState,
  nodeAgentFieldManager,
  setCondition,
  type UnikernelVM,
} from "../../../api/index.js";
import type { ObservedDomain } from "./decide.js";

/** The agent's field manager on a VM's status: the same one its migration roles apply with. */
export const agentFieldManager = (node: string): string => nodeAgentFieldManager(node);
export const AGENT_CONDITIONS = ["Paused", "Suspended"] as const;
export type AgentConditionType = (typeof AGENT_CONDITIONS)[number];

export interface AgentObservation {
  domain: ObservedDomain;
  suspended: boolean;
  /** The last failure of a pause/suspend/restore for the current generation, if any. */
  failure?: { op: "pause" | "unpause" | "suspend" | "restore"; reason: string; message: string };
}

type Verdict = Omit<ConditionInput, "type" | "observedGeneration">;

function pausedVerdict(vm: UnikernelVM, o: AgentObservation): Verdict {
  const f = o.failure;
  if (o.domain === "paused")
    return { status: "True", reason: "Paused", message: "the domain is paused; its memory is kept" };
  if (f && (f.op === "pause" || f.op === "unpause"))
    return { status: "False", reason: f.reason, message: f.message };
  if ((vm.spec.runPolicy ?? "Running") === "Paused" && !o.suspended)
    return {
      status: "False",
      reason: "Pausing",
      message: "runPolicy is Paused; the node agent is pausing the domain",
    };
  return { status: "False", reason: "NotPaused", message: "the domain is not paused" };
}

function suspendedVerdict(vm: UnikernelVM, o: AgentObservation): Verdict {
  const f = o.failure;
  if (o.suspended && f?.op === "restore") return { status: "True", reason: f.reason, message: f.message };
  if (o.suspended)
    return {
      status: "True",
      reason: "Suspended",
      message: "the domain is saved to disk; its memory is freed",
    };
  if (f?.op === "suspend") return { status: "False", reason: f.reason, message: f.message };
  if ((vm.spec.runPolicy ?? "Running") === "Suspended")
    return {
      status: "False",
      reason: "Suspending",
      message: "runPolicy is Suspended; the node agent is saving the domain",
    };
  return { status: "False", reason: "NotSuspended", message: "the domain is not suspended" };
}

/** The agent's two conditions for this observation; lastTransitionTime carried over when status holds. */
export function agentConditions(vm: UnikernelVM, o: AgentObservation, now: Date = new Date()): Condition[] {
  const generation = vm.metadata.generation;
  const verdicts: [AgentConditionType, Verdict][] = [
    ["Paused", pausedVerdict(vm, o)],
    ["Suspended", suspendedVerdict(vm, o)],
  ];
  const current = vm.status?.conditions;
  return verdicts.map(([type, v]) => {
    const previous = current?.filter((c) => c.type === type);
    return setCondition(
      previous,
      { type, ...v, ...(generation !== undefined ? { observedGeneration: generation } : {}) },
      now,
    )[0]!;
  });
}

/** True when applying `next` would change what the VM shows (lastTransitionTime aside). */
export function agentConditionsDiffer(vm: UnikernelVM, next: readonly Condition[]): boolean {
  return next.some((b) => {
    const a = vm.status?.conditions?.find((c) => c.type === b.type);
    return (
      !a ||
      a.status !== b.status ||
      a.reason !== b.reason ||
      a.message !== b.message ||
      a.observedGeneration !== b.observedGeneration
    );
  });
}

/** What the agent applies on a VM's status: every field it owns, those it leaves out are removed. */
export interface AgentStatus {
  conditions: Condition[];
  domainId?: number;
  domainState?: DomainState;
}

/** The domain's state as published; undefined when the agent sees no domain (gone, crashed, dying). */
export function publishedDomainState(
  o: Pick<AgentObservation, "domain" | "suspended">,
): DomainState | undefined {
  if (o.suspended) return "suspended";
  if (o.domain === "paused" || o.domain === "running") return o.domain;
  return undefined;
}

/**
 * The agent's whole slice of the status for this observation. The domain id goes with a domain that
 * exists (running or paused): a suspended VM has none, and one that vanished has no id to show.
 */
export function agentStatus(
  vm: UnikernelVM,
  o: AgentObservation,
  domid: number | undefined,
  now: Date = new Date(),
): AgentStatus {
  const state = publishedDomainState(o);
  const withId = (state === "running" || state === "paused") && domid !== undefined && domid >= 0;
  return {
    conditions: agentConditions(vm, o, now),
    ...(withId ? { domainId: domid } : {}),
    ...(state ? { domainState: state } : {}),
  };
}

/** True when applying `next` would change what the VM shows (lastTransitionTime aside). */
export function agentStatusDiffers(vm: UnikernelVM, next: AgentStatus): boolean {
  return (
    agentConditionsDiffer(vm, next.conditions) ||
    vm.status?.domainId !== next.domainId ||
    vm.status?.domainState !== next.domainState
  );
}

/**
 * What of a VM makes the agent reconcile it: its identity, generation, runPolicy and node, and its
 * own slice of the status as the VM shows it (lastTransitionTime aside). The operator's writes of
 * its own fields, and the echo of the agent's own apply, leave this unchanged: no reconcile, no
 * domain query. A slice someone else changed does change it, and the agent puts its own back.
 */
export function agentInterest(vm: UnikernelVM): string {
  const s = vm.status;
  return JSON.stringify([
    vm.metadata.uid,
    vm.metadata.generation,
    vm.metadata.deletionTimestamp,
    vm.spec.runPolicy,
    s?.nodeName,
    s?.domainId,
    s?.domainState,
    AGENT_CONDITIONS.map((type) => {
      const c = s?.conditions?.find((x) => x.type === type);
      return c ? [c.status, c.reason, c.message, c.observedGeneration] : null;
    }),
  ]);
}
