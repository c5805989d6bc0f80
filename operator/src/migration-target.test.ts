import test from "ava";
import type { V1Node, V1Pod } from "@kubernetes/client-node";
import { LABELS, RESOURCES } from "../../api/index.js";
import {
  checkTarget,
  freeMemory,
  pickTarget,
  podMemoryRequest,
  type TargetQuery,
} from "./migration-target.js";

function node(
  name: string,
  o: {
    xen?: boolean;
    ready?: boolean;
    cordoned?: boolean;
    memory?: string;
    labels?: Record<string, string>;
  } = {},
): V1Node {
  return {
    metadata: { name, labels: { ...(o.xen === false ? {} : { [LABELS.xenNode]: "true" }), ...o.labels } },
    spec: o.cordoned ? { unschedulable: true } : {},
    status: {
      allocatable: { memory: o.memory ?? "1Gi" },
      conditions: [{ type: "Ready", status: o.ready === false ? "False" : "True" }],
    },
  };
}

function pod(memory: string, o: { phase?: string; overhead?: string } = {}): V1Pod {
  return {
    spec: {
      containers: [{ name: "unikernel", resources: { requests: { memory } } }],
      ...(o.overhead ? { overhead: { memory: o.overhead } } : {}),
    },
    status: { phase: o.phase ?? "Running" },
  };
}

const MiB = 2 ** 20;
const q: TargetQuery = { sourceNode: "xen-a", memoryBytes: 64 * MiB };

test("a pod's memory is its containers' requests plus the RuntimeClass overhead", (t) => {
  t.is(podMemoryRequest(pod("32Mi", { overhead: "8Mi" })), 40 * MiB);
  t.is(podMemoryRequest({ spec: { containers: [{ name: "c" }] } }), 0);
});

test("the resource model: guest memory is the guest-memory-mib request, against the node's guest memory", (t) => {
  const vmPod = (mib: number): V1Pod => ({
    spec: {
      containers: [
        { name: "c", resources: { requests: { memory: "0", [RESOURCES.guestMemoryMiB]: String(mib) } } },
      ],
      overhead: { memory: "1Mi" },
    },
  });
  t.is(podMemoryRequest(vmPod(16)), 16 * MiB, "dom0's overhead is not guest memory");
  const n = node("n", { memory: "910Mi" });
  n.status!.allocatable![RESOURCES.guestMemoryMiB] = "4096";
  t.is(freeMemory(n, [vmPod(16), vmPod(128)]), (4096 - 144) * MiB, "Xen's memory, not dom0's");
});

test("guest memory figures as the apiserver stores them: 1000 reads back as 1k", (t) => {
  const n = node("n", { memory: "910Mi" });
  n.status!.allocatable![RESOURCES.guestMemoryMiB] = "1k";
  const vmPod: V1Pod = {
    spec: { containers: [{ name: "c", resources: { requests: { [RESOURCES.guestMemoryMiB]: "1k" } } }] },
  };
  t.is(podMemoryRequest(vmPod), 1000 * MiB);
  t.is(freeMemory(n, []), 1000 * MiB, "a node of 1,000 MiB is not a node of none");
  t.is(checkTarget(n, [], { sourceNode: "other", memoryBytes: 4 * MiB }), undefined);
});

test("free memory is allocatable minus the requests of the pods that still hold it", (t) => {
  const pods = [
    pod("100Mi"),
    pod("200Mi", { phase: "Succeeded" }),
    pod("50Mi", { phase: "Failed" }),
    pod("24Mi"),
  ];
  t.is(freeMemory(node("n", { memory: "1Gi" }), pods), 1024 * MiB - 124 * MiB);
});

const checks: [string, V1Node, V1Pod[], TargetQuery, string | undefined][] = [
  ["a fitting Xen node", node("xen-b"), [pod("512Mi")], q, undefined],
  ["the source node", node("xen-a"), [], q, "SameNode"],
  ["a node without the Xen label", node("plain", { xen: false }), [], q, "TargetNotXenNode"],
  ["a node that is not Ready", node("xen-b", { ready: false }), [], q, "TargetNotReady"],
  ["a cordoned node", node("xen-b", { cordoned: true }), [], q, "TargetUnschedulable"],
  ["a node too full", node("xen-b", { memory: "1Gi" }), [pod("1000Mi")], q, "TargetOutOfMemory"],
  ["exactly enough memory", node("xen-b", { memory: "128Mi" }), [pod("64Mi")], q, undefined],
  [
    "a node the VM's nodeSelector excludes",
    node("xen-b", { labels: { zone: "b" } }),
    [],
    { ...q, nodeSelector: { zone: "a" } },
    "TargetNotEligible",
  ],
];
for (const [name, n, pods, query, reason] of checks) {
  test(`checkTarget: ${name} -> ${reason ?? "accepted"}`, (t) => {
    const why = checkTarget(n, pods, query);
    t.is(why?.reason, reason);
    if (why) t.true(why.message.includes(n.metadata!.name!), why.message);
  });
}

test("checkTarget's out-of-memory message says how much is free and how much is needed", (t) => {
  const why = checkTarget(node("xen-b", { memory: "100Mi" }), [pod("60Mi")], q);
  t.regex(why!.message, /40Mi of guest memory free.*needs 64Mi/);
});

test("pickTarget takes the node with the most free memory; the name breaks ties", (t) => {
  const c = (n: V1Node, pods: V1Pod[] = []) => ({ node: n, podsOnNode: pods });
  t.deepEqual(pickTarget([c(node("xen-b"), [pod("512Mi")]), c(node("xen-c"))], q), { node: "xen-c" });
  t.deepEqual(pickTarget([c(node("xen-d")), c(node("xen-c"))], q), { node: "xen-c" });
  // The source and non-Xen nodes never qualify, however empty.
  t.deepEqual(
    pickTarget(
      [
        c(node("xen-a", { memory: "64Gi" })),
        c(node("plain", { xen: false, memory: "64Gi" })),
        c(node("xen-b")),
      ],
      q,
    ),
    {
      node: "xen-b",
    },
  );
});

test("pickTarget says NoTargetNode and why each Xen node was passed over", (t) => {
  const c = (n: V1Node, pods: V1Pod[] = []) => ({ node: n, podsOnNode: pods });
  const none = pickTarget([c(node("xen-a"))], q);
  t.like(none, { reason: "NoTargetNode" });
  t.regex((none as { message: string }).message, /no Xen node other than xen-a/);
  const full = pickTarget([c(node("xen-b", { memory: "32Mi" })), c(node("xen-c", { cordoned: true }))], q);
  t.like(full, { reason: "NoTargetNode" });
  t.regex((full as { message: string }).message, /xen-b: TargetOutOfMemory; xen-c: TargetUnschedulable/);
});
