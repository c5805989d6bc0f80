// The status a UnikernelVM should show, as a pure function of what the operator observed: the VM,
// its pod, the pod's node. Every state a VM can be stuck in gets a condition with a reason a person
// (and `kubectl wait`, kstatus, Argo CD) can act on; nothing is a silent Pending.
import type { V1Node, V1Pod } from "@kubernetes/client-node";
import {
  ANNOTATIONS,
  type Condition,
  type ConditionInput,
  DOMAIN_STATES,
  type DomainState,
  LABELS,
  setCondition,
  type UnikernelVM,
  type UnikernelVMStatus,
  type VMConditionType,
  type VMPhase,
} from "../../api/index.js";
import { stableStringify } from "./desired.js";
import { lastMigrationOf, migratingCondition, type VMMigrations } from "./vm-migrations.js";

export interface Observed {
  vm: UnikernelVM;
  /** The pod that runs (or will run) the VM's current spec; or the old one while it is replaced. */
  pod?: V1Pod;
  /** The node the pod is bound to, from the node cache. */
  node?: V1Node;
  /** Nodes labelled superfluid.dev/xen=true that the operator can see. */
  xenNodeCount: number;
  /** An old pod (previous spec) is still terminating; the new one waits for it. */
  replacing?: boolean;
  /** Why no pod can be made from the spec (InvalidSpecError's message). */
  invalidSpec?: string;
  /** The VM's migrations: the one in flight and the last one finished. */
  migrations?: VMMigrations;
}

type Reason = { status: ConditionInput["status"]; reason: string; message: string };

/** Waiting reasons that mean the VM will not start without a change: reported as they are. */
const STUCK_WAITING = new Set([
  "ErrImagePull",
  "ImagePullBackOff",
  "InvalidImageName",
  "CrashLoopBackOff",
  "CreateContainerError",
  "CreateContainerConfigError",
  "RunContainerError",
  "ErrImageNeverPull",
]);

function podCondition(pod: V1Pod | undefined, type: string) {
  return pod?.status?.conditions?.find((c) => c.type === type);
}

function domainState(pod: V1Pod | undefined): DomainState | undefined {
  const s = pod?.metadata?.annotations?.[ANNOTATIONS.domainState];
  return (DOMAIN_STATES as readonly string[]).includes(s ?? "") ? (s as DomainState) : undefined;
}

function nonNegativeInt(raw: string | undefined): number | undefined {
  if (raw === undefined || !/^[0-9]+$/.test(raw)) return undefined;
  return Number(raw);
}

function nodeReady(node: V1Node | undefined): Reason | undefined {
  if (!node) return undefined;
  const ready = node.status?.conditions?.find((c) => c.type === "Ready");
  if (ready?.status === "True") return undefined;
  return {
    status: "False",
    reason: "NodeNotReady",
    message: `node ${node.metadata?.name} is not Ready: ${ready?.message ?? "no Ready condition reported"}`,
  };
}

export function computeStatus(o: Observed, now: Date = new Date()): UnikernelVMStatus {
  const { vm, pod } = o;
  const generation = vm.metadata.generation;
  const runPolicy = vm.spec.runPolicy ?? "Running";
  const podName = pod?.metadata?.name;
  const nodeName = pod?.spec?.nodeName;
  const status: UnikernelVMStatus = {};
  let phase: VMPhase;
  let ready: Reason;
  let scheduled: Reason;

  if (o.invalidSpec !== undefined) {
    phase = "Failed";
    ready = { status: "False", reason: "InvalidSpec", message: o.invalidSpec };
    scheduled = { status: "False", reason: "InvalidSpec", message: "no pod can be made from this spec" };
  } else if (runPolicy === "Stopped" && !pod) {
    phase = "Stopped";
    ready = { status: "False", reason: "Stopped", message: "runPolicy is Stopped" };
    scheduled = { status: "False", reason: "Stopped", message: "runPolicy is Stopped" };
  } else if (!pod) {
    phase = "Pending";
    const why = o.replacing
      ? "waiting for the previous pod to terminate before the new spec starts"
      : "the pod is being created";
    ready = { status: "False", reason: o.replacing ? "Recreating" : "Creating", message: why };
    scheduled = { status: "False", reason: o.replacing ? "Recreating" : "Creating", message: why };
  } else if (pod.metadata?.deletionTimestamp) {
    phase = "Pending";
    ready = {
      status: "False",
      reason: runPolicy === "Stopped" ? "Stopping" : "Recreating",
      message: `pod ${podName} is terminating`,
    };
    scheduled = nodeName
      ? { status: "True", reason: "Scheduled", message: `pod ${podName} is on node ${nodeName}` }
      : { status: "False", reason: "Terminating", message: `pod ${podName} is terminating` };
  } else if (!nodeName) {
    phase = "Pending";
    const podScheduled = podCondition(pod, "PodScheduled");
    if (o.xenNodeCount === 0) {
      scheduled = {
        status: "False",
        reason: "NoXenNode",
        message: `no node is labelled ${LABELS.xenNode}=true; the pod cannot be placed until one joins${podScheduled?.message ? ` (scheduler: ${podScheduled.message})` : ""}`,
      };
    } else if (podScheduled?.status === "False") {
      scheduled = {
        status: "False",
        reason: podScheduled.reason ?? "Unschedulable",
        message: podScheduled.message ?? "the scheduler could not place the pod",
      };
    } else {
      scheduled = {
        status: "False",
        reason: "Scheduling",
        message: `pod ${podName} is waiting for the scheduler`,
      };
    }
    ready = { ...scheduled };
  } else {
    scheduled = { status: "True", reason: "Scheduled", message: `pod ${podName} is on node ${nodeName}` };
    const cs = pod.status?.containerStatuses?.[0];
    const waiting = cs?.state?.waiting;
    const terminated = cs?.state?.terminated;
    const podPhase = pod.status?.phase ?? "Pending";
    const nodeProblem = nodeReady(o.node);
    if (podPhase === "Succeeded") {
      phase = "Succeeded";
      ready = {
        status: "False",
        reason: "Completed",
        message: `the unikernel exited with code ${terminated?.exitCode ?? 0}`,
      };
    } else if (podPhase === "Failed") {
      phase = "Failed";
      ready = {
        status: "False",
        reason: pod.status?.reason ?? terminated?.reason ?? "Failed",
        message:
          pod.status?.message ??
          terminated?.message ??
          `the unikernel exited with code ${terminated?.exitCode ?? "unknown"}`,
      };
    } else if (waiting?.reason && STUCK_WAITING.has(waiting.reason)) {
      phase = podPhase === "Running" ? "Running" : "Creating";
      ready = {
        status: "False",
        reason: waiting.reason,
        message: waiting.message ?? `container is waiting: ${waiting.reason}`,
      };
    } else if (podPhase === "Pending") {
      phase = cs ? "Creating" : "Scheduled";
      ready = {
        status: "False",
        reason: "Creating",
        message: waiting?.message ?? `the domain is being created on node ${nodeName}`,
      };
    } else if (nodeProblem) {
      phase = "Running";
      ready = nodeProblem;
    } else {
      const state = domainState(pod);
      phase = state === "paused" ? "Paused" : state === "suspended" ? "Suspended" : "Running";
      const podReady = podCondition(pod, "Ready");
      if (podReady?.status !== "True")
        ready = {
          status: "False",
          reason: "DomainNotReady",
          message: podReady?.message ?? `pod ${podName} is not Ready yet`,
        };
      else if (phase !== "Running")
        ready = { status: "False", reason: phase, message: `the domain is ${state}` };
      else ready = { status: "True", reason: "Running", message: `pod ${podName} runs on node ${nodeName}` };
    }
    status.nodeName = nodeName;
    if (pod.status?.podIP) status.ip = pod.status.podIP;
    const domainId = nonNegativeInt(pod.metadata?.annotations?.[ANNOTATIONS.domainId]);
    if (domainId !== undefined) status.domainId = domainId;
    const boot = nonNegativeInt(pod.metadata?.annotations?.[ANNOTATIONS.bootTimeMs]);
    if (boot !== undefined) status.bootTimeMilliseconds = boot;
    status.restartCount = cs?.restartCount ?? 0;
  }
  if (podName) status.podName = podName;
  status.phase = phase;
  if (generation !== undefined) status.observedGeneration = generation;
  const lastMigration = o.migrations ? lastMigrationOf(o.migrations) : vm.status?.lastMigration;
  if (lastMigration) status.lastMigration = lastMigration;

  // Paused and Suspended are the node agent's (cri-shim/src/agent): it sees the domain, we see only
  // the pod. Exactly one writer per condition; the ones already on the VM are carried over untouched.
  // Migrating follows the UnikernelVMMigrations that name this VM (vm-migrations.ts).
  const migrating: Reason = migratingCondition(o.migrations ?? {});

  let conditions: Condition[] | undefined = vm.status?.conditions;
  const set = (type: VMConditionType, r: Reason) => {
    conditions = setCondition(
      conditions,
      { type, ...r, ...(generation !== undefined ? { observedGeneration: generation } : {}) },
      now,
    );
  };
  set("Ready", ready);
  set("Scheduled", scheduled);
  set("Migrating", migrating);
  status.conditions = conditions;
  return status;
}

export interface StatusEvent {
  type: "Normal" | "Warning";
  reason: string;
  message: string;
}

const WARNING_REASONS = new Set([
  ...STUCK_WAITING,
  "InvalidSpec",
  "NoXenNode",
  "Unschedulable",
  "NodeNotReady",
  "Failed",
  "DomainNotReady",
  "Evicted",
  "MigrationFailed",
]);

/** Progress that is expected and short-lived: not worth an event of its own. */
const QUIET_REASONS = new Set(["Creating", "Scheduling"]);

/**
 * One event per condition whose status or reason changed, so `kubectl describe` tells the story.
 * When Ready changes for the same reason as another condition (Unschedulable, say), one event says it.
 */
export function transitionEvents(
  before: UnikernelVMStatus | undefined,
  after: UnikernelVMStatus,
): StatusEvent[] {
  const events: StatusEvent[] = [];
  const told = new Set<string>();
  const ordered = [...(after.conditions ?? [])].sort(
    (a, b) => (a.type === "Ready" ? 1 : 0) - (b.type === "Ready" ? 1 : 0),
  );
  for (const c of ordered) {
    const old = before?.conditions?.find((x) => x.type === c.type);
    if (old && old.status === c.status && old.reason === c.reason) continue;
    // Quiet defaults on a fresh VM (NotPaused, NotSuspended, NotMigrating) are not news.
    if (!old && c.status === "False" && c.type !== "Ready" && c.type !== "Scheduled") continue;
    if (c.status === "False" && QUIET_REASONS.has(c.reason)) continue;
    if (c.type === "Ready" && c.status === "False" && told.has(c.reason)) continue;
    told.add(c.reason);
    const type = c.status === "False" && WARNING_REASONS.has(c.reason) ? "Warning" : "Normal";
    events.push({ type, reason: c.reason, message: `${c.type}=${c.status}: ${c.message}` });
  }
  return events;
}

/** Two statuses that differ only in nothing the API would store: skip the write. */
export function statusEqual<S extends { conditions?: Condition[] }>(a: S | undefined, b: S): boolean {
  return stableStringify(normalize(a ?? ({} as S))) === stableStringify(normalize(b));
}

function normalize<S extends { conditions?: Condition[] }>(s: S): S {
  return { ...s, conditions: [...(s.conditions ?? [])].sort((x, y) => x.type.localeCompare(y.type)) };
}
