// Where a migrating VM may go, as pure functions of the nodes and the pods on them. A migration
// target bypasses the scheduler (its pod is created with spec.nodeName), so the checks the
// scheduler would make for memory, readiness and cordons are made here, and the kubelet's own
// admission (node selector, memory) is the second line.
import type { V1Node, V1Pod } from "@kubernetes/client-node";
import { LABELS, RESOURCES } from "../../api/index.js";
import { quantityToBytes } from "./desired.js";

/** Why a node cannot take the VM; reason is a condition reason (CamelCase). */
export interface Rejection {
  reason: string;
  message: string;
}

const MiB = 2 ** 20;

function bytesOf(q: string | number | undefined): number {
  if (q === undefined) return 0;
  try {
    return quantityToBytes(q);
  } catch {
    return 0;
  }
}

/**
 * Guest memory the scheduler accounts for a pod: its superfluid.dev/guest-memory-mib request (the
 * resource model, desired.ts); for a pod made before it, its memory request plus the overhead.
 */
export function podMemoryRequest(pod: V1Pod): number {
  const containers = pod.spec?.containers ?? [];
  const guestMiB = containers.reduce(
    (sum, c) => sum + bytesOf(c.resources?.requests?.[RESOURCES.guestMemoryMiB]),
    0,
  );
  if (guestMiB > 0) return guestMiB * MiB;
  const memory = containers.reduce((sum, c) => sum + bytesOf(c.resources?.requests?.["memory"]), 0);
  return memory + bytesOf(pod.spec?.overhead?.["memory"]);
}

/** Pods that still hold memory on their node: not finished (terminating ones still run their domain). */
export function holdsMemory(pod: V1Pod): boolean {
  const phase = pod.status?.phase;
  return phase !== "Succeeded" && phase !== "Failed";
}

/**
 * Allocatable guest memory (the node agent's superfluid.dev/guest-memory-mib; a node without it, its
 * allocatable memory) minus the requests of the pods bound to the node.
 */
export function freeMemory(node: V1Node, podsOnNode: readonly V1Pod[]): number {
  const guest = node.status?.allocatable?.[RESOURCES.guestMemoryMiB];
  const allocatable =
    guest !== undefined ? bytesOf(guest) * MiB : bytesOf(node.status?.allocatable?.["memory"]);
  const used = podsOnNode.filter(holdsMemory).reduce((sum, p) => sum + podMemoryRequest(p), 0);
  return allocatable - used;
}

function isReady(node: V1Node): boolean {
  return node.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;
}

const mib = (bytes: number) => `${Math.floor(bytes / MiB)}Mi`;

export interface TargetQuery {
  /** The node the VM runs on now. */
  sourceNode: string;
  /** Memory the target pod will request (the source pod's, overhead included). */
  memoryBytes: number;
  /** The VM's own nodeSelector: the kubelet refuses a pod whose selector its node does not match. */
  nodeSelector?: Record<string, string>;
}

/**
 * The checks every target must pass, in the order a person would want to hear them. podsOnNode are
 * the pods bound to this node (any namespace).
 */
export function checkTarget(
  node: V1Node,
  podsOnNode: readonly V1Pod[],
  q: TargetQuery,
): Rejection | undefined {
  const name = node.metadata?.name ?? "?";
  if (name === q.sourceNode) return { reason: "SameNode", message: `the VM already runs on ${name}` };
  if (node.metadata?.labels?.[LABELS.xenNode] !== "true")
    return { reason: "TargetNotXenNode", message: `node ${name} is not labelled ${LABELS.xenNode}=true` };
  if (node.metadata?.deletionTimestamp)
    return { reason: "TargetNotReady", message: `node ${name} is being deleted` };
  if (!isReady(node)) return { reason: "TargetNotReady", message: `node ${name} is not Ready` };
  if (node.spec?.unschedulable)
    return { reason: "TargetUnschedulable", message: `node ${name} is cordoned (unschedulable)` };
  const mismatched = Object.entries(q.nodeSelector ?? {}).filter(
    ([k, v]) => node.metadata?.labels?.[k] !== v,
  );
  if (mismatched.length > 0)
    return {
      reason: "TargetNotEligible",
      message: `node ${name} does not match the VM's nodeSelector (${mismatched.map(([k, v]) => `${k}=${v}`).join(", ")})`,
    };
  const free = freeMemory(node, podsOnNode);
  if (free < q.memoryBytes)
    return {
      reason: "TargetOutOfMemory",
      message: `node ${name} has ${mib(Math.max(0, free))} of guest memory free (allocatable minus requests), the VM's pod needs ${mib(q.memoryBytes)}`,
    };
  return undefined;
}

export interface Candidate {
  node: V1Node;
  podsOnNode: readonly V1Pod[];
}

export type Pick = { node: string } | Rejection;

/**
 * Picks a target when the migration names none: every node that passes checkTarget, the one with
 * the most free memory (spreading VMs), name as the tiebreak so that the choice is reproducible.
 */
export function pickTarget(candidates: readonly Candidate[], q: TargetQuery): Pick {
  const fitting: { name: string; free: number }[] = [];
  const rejected: string[] = [];
  for (const c of candidates) {
    const name = c.node.metadata?.name ?? "?";
    // Only Xen nodes other than the source are worth a word in the message.
    if (name === q.sourceNode || c.node.metadata?.labels?.[LABELS.xenNode] !== "true") continue;
    const why = checkTarget(c.node, c.podsOnNode, q);
    if (why) rejected.push(`${name}: ${why.reason}`);
    else fitting.push({ name, free: freeMemory(c.node, c.podsOnNode) });
  }
  fitting.sort((a, b) => b.free - a.free || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const best = fitting[0];
  if (best) return { node: best.name };
  return {
    reason: "NoTargetNode",
    message:
      rejected.length > 0
        ? `no Xen node other than ${q.sourceNode} can take the VM (${rejected.sort().join("; ")})`
        : `there is no Xen node other than ${q.sourceNode}`,
  };
}
