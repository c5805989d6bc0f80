// The status a UnikernelVM should show, as a pure function of what the operator observed: the VM,
// its pod, the pod's node. Every state a VM can be stuck in gets a condition with a reason a person
// (and `kubectl wait`, kstatus, Argo CD) can act on; nothing is a silent Pending.
import type { V1Node, V1Pod } from "@kubernetes/client-node";
import {
  AGENT_STATUS_FIELDS,
  ANNOTATIONS,
  type Condition,
  type ConditionInput,
  DOMAIN_STATES,
  type DomainState,
  findCondition,
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

function domainState(vm: UnikernelVM): DomainState | undefined {
  const s = vm.status?.domainState;
  return (DOMAIN_STATES as readonly string[]).includes(s ?? "") ? s : undefined;
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

/** What a rule decides: the phase and the operator's two pod-derived conditions. */
export interface Verdict {
  phase: VMPhase;
  ready: Reason;
  scheduled: Reason;
}

/** One rule of the chain: the first whose `when` holds decides. Pure functions of what was observed. */
export interface StatusRule {
  name: string;
  when(o: Observed): boolean;
  then(o: Observed): Verdict;
}

const runPolicyOf = (o: Observed) => o.vm.spec.runPolicy ?? "Running";
const podNameOf = (o: Observed) => o.pod?.metadata?.name;
const nodeNameOf = (o: Observed) => o.pod?.spec?.nodeName;
const containerOf = (o: Observed) => o.pod?.status?.containerStatuses?.[0];
const podPhaseOf = (o: Observed) => o.pod?.status?.phase ?? "Pending";
const onNode = (o: Observed): Reason => ({
  status: "True",
  reason: "Scheduled",
  message: `pod ${podNameOf(o)} is on node ${nodeNameOf(o)}`,
});
const same = (phase: VMPhase, r: Reason): Verdict => ({ phase, ready: r, scheduled: { ...r } });

/**
 * The domain's state as the node agent reports it on the VM's status (it sees the domain; these
 * fields are its to write): its Paused and Suspended conditions first, then status.domainState.
 */
export function agentDomainState(o: Observed): DomainState | undefined {
  const conditions = o.vm.status?.conditions;
  if (findCondition(conditions, "Suspended")?.status === "True") return "suspended";
  if (findCondition(conditions, "Paused")?.status === "True") return "paused";
  return domainState(o.vm);
}

const domainPhase = (state: DomainState | undefined): VMPhase =>
  state === "paused" ? "Paused" : state === "suspended" ? "Suspended" : "Running";

/** The rules, in order. Each later rule may assume every earlier one did not match. */
export const STATUS_RULES: readonly StatusRule[] = [
  {
    name: "invalid spec",
    when: (o) => o.invalidSpec !== undefined,
    then: (o) => ({
      phase: "Failed",
      ready: { status: "False", reason: "InvalidSpec", message: o.invalidSpec! },
      scheduled: { status: "False", reason: "InvalidSpec", message: "no pod can be made from this spec" },
    }),
  },
  {
    name: "stopped",
    when: (o) => runPolicyOf(o) === "Stopped" && !o.pod,
    then: () => same("Stopped", { status: "False", reason: "Stopped", message: "runPolicy is Stopped" }),
  },
  {
    name: "no pod yet",
    when: (o) => !o.pod,
    then: (o) =>
      same("Pending", {
        status: "False",
        reason: o.replacing ? "Recreating" : "Creating",
        message: o.replacing
          ? "waiting for the previous pod to terminate before the new spec starts"
          : "the pod is being created",
      }),
  },
  {
    name: "pod terminating",
    when: (o) => !!o.pod?.metadata?.deletionTimestamp,
    then: (o) => ({
      phase: "Pending",
      ready: {
        status: "False",
        reason: runPolicyOf(o) === "Stopped" ? "Stopping" : "Recreating",
        message: `pod ${podNameOf(o)} is terminating`,
      },
      scheduled: nodeNameOf(o)
        ? onNode(o)
        : { status: "False", reason: "Terminating", message: `pod ${podNameOf(o)} is terminating` },
    }),
  },
  {
    name: "not scheduled",
    when: (o) => !nodeNameOf(o),
    then: (o) => {
      const podScheduled = podCondition(o.pod, "PodScheduled");
      if (o.xenNodeCount === 0)
        return same("Pending", {
          status: "False",
          reason: "NoXenNode",
          message: `no node is labelled ${LABELS.xenNode}=true; the pod cannot be placed until one joins${podScheduled?.message ? ` (scheduler: ${podScheduled.message})` : ""}`,
        });
      if (podScheduled?.status === "False")
        return same("Pending", {
          status: "False",
          reason: podScheduled.reason ?? "Unschedulable",
          message: podScheduled.message ?? "the scheduler could not place the pod",
        });
      return same("Pending", {
        status: "False",
        reason: "Scheduling",
        message: `pod ${podNameOf(o)} is waiting for the scheduler`,
      });
    },
  },
  {
    name: "completed",
    when: (o) => podPhaseOf(o) === "Succeeded",
    then: (o) => ({
      phase: "Succeeded",
      ready: {
        status: "False",
        reason: "Completed",
        message: `the unikernel exited with code ${containerOf(o)?.state?.terminated?.exitCode ?? 0}`,
      },
      scheduled: onNode(o),
    }),
  },
  {
    name: "failed",
    when: (o) => podPhaseOf(o) === "Failed",
    then: (o) => {
      const terminated = containerOf(o)?.state?.terminated;
      return {
        phase: "Failed",
        ready: {
          status: "False",
          reason: o.pod?.status?.reason ?? terminated?.reason ?? "Failed",
          message:
            o.pod?.status?.message ??
            terminated?.message ??
            `the unikernel exited with code ${terminated?.exitCode ?? "unknown"}`,
        },
        scheduled: onNode(o),
      };
    },
  },
  {
    name: "stuck waiting",
    when: (o) => STUCK_WAITING.has(containerOf(o)?.state?.waiting?.reason ?? ""),
    then: (o) => {
      const waiting = containerOf(o)!.state!.waiting!;
      return {
        phase: podPhaseOf(o) === "Running" ? "Running" : "Creating",
        ready: {
          status: "False",
          reason: waiting.reason!,
          message: waiting.message ?? `container is waiting: ${waiting.reason}`,
        },
        scheduled: onNode(o),
      };
    },
  },
  {
    name: "creating",
    when: (o) => podPhaseOf(o) === "Pending",
    then: (o) => ({
      phase: containerOf(o) ? "Creating" : "Scheduled",
      ready: {
        status: "False",
        reason: "Creating",
        message:
          containerOf(o)?.state?.waiting?.message ?? `the domain is being created on node ${nodeNameOf(o)}`,
      },
      scheduled: onNode(o),
    }),
  },
  {
    name: "node not ready",
    when: (o) => !!nodeReady(o.node),
    // The kubelet is silent, the node agent may not be: the phase is still the domain's.
    then: (o) => ({
      phase: domainPhase(agentDomainState(o)),
      ready: nodeReady(o.node)!,
      scheduled: onNode(o),
    }),
  },
  {
    name: "running",
    when: () => true,
    then: (o) => {
      const state = agentDomainState(o);
      const phase = domainPhase(state);
      const podReady = podCondition(o.pod, "Ready");
      const ready: Reason =
        podReady?.status !== "True"
          ? {
              status: "False",
              reason: "DomainNotReady",
              message: podReady?.message ?? `pod ${podNameOf(o)} is not Ready yet`,
            }
          : phase !== "Running"
            ? { status: "False", reason: phase, message: `the domain is ${state}` }
            : {
                status: "True",
                reason: "Running",
                message: `pod ${podNameOf(o)} runs on node ${nodeNameOf(o)}`,
              };
      return { phase, ready, scheduled: onNode(o) };
    },
  },
];

/** The first rule that matches: its name (for tests and logs) and its verdict. */
export function decideStatus(o: Observed): { rule: string } & Verdict {
  const rule = STATUS_RULES.find((r) => r.when(o))!;
  return { rule: rule.name, ...rule.then(o) };
}

/** The conditions this operator writes; the rest of the list (Paused, Suspended) is the node agent's. */
export const OPERATOR_CONDITIONS = ["Ready", "Scheduled", "Migrating"] as const;

/** The fields of a status this operator writes: all but the node agent's conditions and fields. */
export function operatorStatus(s: UnikernelVMStatus): UnikernelVMStatus {
  const ours = new Set<string>(OPERATOR_CONDITIONS);
  const out: UnikernelVMStatus = { ...s, conditions: (s.conditions ?? []).filter((c) => ours.has(c.type)) };
  for (const f of AGENT_STATUS_FIELDS) delete out[f];
  return out;
}

export function computeStatus(o: Observed, now: Date = new Date()): UnikernelVMStatus {
  const { vm, pod } = o;
  const generation = vm.metadata.generation;
  const podName = pod?.metadata?.name;
  const nodeName = pod?.spec?.nodeName;
  const status: UnikernelVMStatus = {};
  const { phase, ready, scheduled } = decideStatus(o);
  if (pod && nodeName && !pod.metadata?.deletionTimestamp && o.invalidSpec === undefined) {
    const cs = pod.status?.containerStatuses?.[0];
    status.nodeName = nodeName;
    if (pod.status?.podIP) status.ip = pod.status.podIP;
    const boot = nonNegativeInt(pod.metadata?.annotations?.[ANNOTATIONS.bootTimeMs]);
    if (boot !== undefined) status.bootTimeMilliseconds = boot;
    status.restartCount = cs?.restartCount ?? 0;
  }
  if (podName) status.podName = podName;
  status.phase = phase;
  if (generation !== undefined) status.observedGeneration = generation;
  const lastMigration = o.migrations ? lastMigrationOf(o.migrations) : vm.status?.lastMigration;
  if (lastMigration) status.lastMigration = lastMigration;

  // Paused, Suspended, domainId and domainState are the node agent's (cri-shim/src/agent): it sees
  // the domain, we see only the pod. Exactly one writer per field; what the agent wrote is carried
  // over untouched (so statusEqual compares like with like) and never sent (operatorStatus).
  if (vm.status?.domainId !== undefined) status.domainId = vm.status.domainId;
  if (vm.status?.domainState !== undefined) status.domainState = vm.status.domainState;
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
