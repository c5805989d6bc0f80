import test from "ava";
import type { V1Node, V1Pod } from "@kubernetes/client-node";
import {
  ANNOTATIONS,
  API_VERSION,
  findCondition,
  type UnikernelVM,
  type UnikernelVMSpec,
  type UnikernelVMStatus,
} from "../../api/index.js";
import { computeStatus, type Observed, operatorStatus, statusEqual, transitionEvents } from "./status.js";

const T0 = new Date("2026-01-01T00:00:00Z");
const T1 = new Date("2026-01-01T00:01:00Z");

function vm(spec: Partial<UnikernelVMSpec> = {}, status?: UnikernelVMStatus): UnikernelVM {
  return {
    apiVersion: API_VERSION,
    kind: "UnikernelVM",
    metadata: { name: "hello", namespace: "apps", uid: "u", generation: 3 },
    spec: { image: "r/hello:1", ...spec },
    ...(status ? { status } : {}),
  };
}

function pod(p: {
  node?: string;
  phase?: string;
  ready?: boolean;
  waiting?: { reason: string; message?: string };
  scheduled?: { reason: string; message: string };
  annotations?: Record<string, string>;
  deleting?: boolean;
  restarts?: number;
  ip?: string;
}): V1Pod {
  return {
    metadata: {
      name: "hello-abc",
      annotations: p.annotations ?? {},
      ...(p.deleting ? { deletionTimestamp: T0 } : {}),
    },
    spec: { containers: [{ name: "unikernel" }], ...(p.node ? { nodeName: p.node } : {}) },
    status: {
      phase: p.phase ?? "Pending",
      ...(p.ip ? { podIP: p.ip } : {}),
      conditions: [
        ...(p.scheduled ? [{ type: "PodScheduled", status: "False", ...p.scheduled }] : []),
        ...(p.ready !== undefined ? [{ type: "Ready", status: p.ready ? "True" : "False" }] : []),
      ],
      ...(p.waiting || p.phase === "Running"
        ? {
            containerStatuses: [
              {
                name: "unikernel",
                image: "r/hello:1",
                imageID: "",
                ready: !!p.ready,
                restartCount: p.restarts ?? 0,
                state: p.waiting ? { waiting: p.waiting } : { running: {} },
              },
            ],
          }
        : {}),
    },
  } as V1Pod;
}

const readyNode: V1Node = {
  metadata: { name: "xen-1" },
  status: { conditions: [{ type: "Ready", status: "True" }] },
} as V1Node;
const notReadyNode: V1Node = {
  metadata: { name: "xen-1" },
  status: {
    conditions: [{ type: "Ready", status: "Unknown", message: "Kubelet stopped posting node status." }],
  },
} as V1Node;

const cases: [
  string,
  Omit<Observed, "vm"> & { spec?: Partial<UnikernelVMSpec>; status?: UnikernelVMStatus },
  {
    phase: string;
    ready: string;
    readyReason: string;
    scheduled: string;
    scheduledReason: string;
    message?: RegExp;
  },
][] = [
  [
    "no pod yet",
    { xenNodeCount: 1 },
    {
      phase: "Pending",
      ready: "False",
      readyReason: "Creating",
      scheduled: "False",
      scheduledReason: "Creating",
    },
  ],
  [
    "no Xen node in the cluster",
    { xenNodeCount: 0, pod: pod({}) },
    {
      phase: "Pending",
      ready: "False",
      readyReason: "NoXenNode",
      scheduled: "False",
      scheduledReason: "NoXenNode",
      message: /superfluid.dev\/xen=true/,
    },
  ],
  [
    "the scheduler's reason",
    {
      xenNodeCount: 2,
      pod: pod({
        scheduled: { reason: "Unschedulable", message: "0/2 nodes are available: 2 Insufficient memory." },
      }),
    },
    {
      phase: "Pending",
      ready: "False",
      readyReason: "Unschedulable",
      scheduled: "False",
      scheduledReason: "Unschedulable",
      message: /Insufficient memory/,
    },
  ],
  [
    "waiting for the scheduler",
    { xenNodeCount: 1, pod: pod({}) },
    {
      phase: "Pending",
      ready: "False",
      readyReason: "Scheduling",
      scheduled: "False",
      scheduledReason: "Scheduling",
    },
  ],
  [
    "bound, nothing reported yet",
    { xenNodeCount: 1, pod: pod({ node: "xen-1" }), node: readyNode },
    {
      phase: "Scheduled",
      ready: "False",
      readyReason: "Creating",
      scheduled: "True",
      scheduledReason: "Scheduled",
    },
  ],
  [
    "image pull failing",
    {
      xenNodeCount: 1,
      pod: pod({
        node: "xen-1",
        waiting: { reason: "ImagePullBackOff", message: 'Back-off pulling image "r/nope:1"' },
      }),
      node: readyNode,
    },
    {
      phase: "Creating",
      ready: "False",
      readyReason: "ImagePullBackOff",
      scheduled: "True",
      scheduledReason: "Scheduled",
      message: /r\/nope:1/,
    },
  ],
  [
    "running and ready",
    {
      xenNodeCount: 1,
      pod: pod({ node: "xen-1", phase: "Running", ready: true, ip: "10.0.0.5" }),
      node: readyNode,
    },
    {
      phase: "Running",
      ready: "True",
      readyReason: "Running",
      scheduled: "True",
      scheduledReason: "Scheduled",
    },
  ],
  [
    "running, not ready",
    { xenNodeCount: 1, pod: pod({ node: "xen-1", phase: "Running", ready: false }), node: readyNode },
    {
      phase: "Running",
      ready: "False",
      readyReason: "DomainNotReady",
      scheduled: "True",
      scheduledReason: "Scheduled",
    },
  ],
  [
    "node lost",
    { xenNodeCount: 1, pod: pod({ node: "xen-1", phase: "Running", ready: true }), node: notReadyNode },
    {
      phase: "Running",
      ready: "False",
      readyReason: "NodeNotReady",
      scheduled: "True",
      scheduledReason: "Scheduled",
      message: /Kubelet stopped/,
    },
  ],
  [
    "paused by the node (the agent's domainState on the VM)",
    {
      spec: { runPolicy: "Paused" },
      status: { domainState: "paused", domainId: 4 },
      xenNodeCount: 1,
      pod: pod({ node: "xen-1", phase: "Running", ready: true }),
      node: readyNode,
    },
    {
      phase: "Paused",
      ready: "False",
      readyReason: "Paused",
      scheduled: "True",
      scheduledReason: "Scheduled",
    },
  ],
  [
    "suspended by the node, the kubelet silent",
    {
      spec: { runPolicy: "Suspended" },
      status: { domainState: "suspended" },
      xenNodeCount: 1,
      pod: pod({ node: "xen-1", phase: "Running", ready: true }),
      node: notReadyNode,
    },
    {
      phase: "Suspended",
      ready: "False",
      readyReason: "NodeNotReady",
      scheduled: "True",
      scheduledReason: "Scheduled",
    },
  ],
  [
    "a domain-state annotation on the pod is not the agent's word",
    {
      xenNodeCount: 1,
      pod: pod({
        node: "xen-1",
        phase: "Running",
        ready: true,
        annotations: { "superfluid.dev/domain-state": "paused" },
      }),
      node: readyNode,
    },
    {
      phase: "Running",
      ready: "True",
      readyReason: "Running",
      scheduled: "True",
      scheduledReason: "Scheduled",
    },
  ],
  [
    "exited",
    { xenNodeCount: 1, pod: pod({ node: "xen-1", phase: "Succeeded" }), node: readyNode },
    {
      phase: "Succeeded",
      ready: "False",
      readyReason: "Completed",
      scheduled: "True",
      scheduledReason: "Scheduled",
    },
  ],
  [
    "stopped",
    { spec: { runPolicy: "Stopped" }, xenNodeCount: 1 },
    {
      phase: "Stopped",
      ready: "False",
      readyReason: "Stopped",
      scheduled: "False",
      scheduledReason: "Stopped",
    },
  ],
  [
    "replacing the old pod",
    { xenNodeCount: 1, replacing: true },
    {
      phase: "Pending",
      ready: "False",
      readyReason: "Recreating",
      scheduled: "False",
      scheduledReason: "Recreating",
    },
  ],
  [
    "an invalid spec",
    {
      xenNodeCount: 1,
      invalidSpec: "annotation superfluid.dev/env: value of X must not contain white space",
    },
    {
      phase: "Failed",
      ready: "False",
      readyReason: "InvalidSpec",
      scheduled: "False",
      scheduledReason: "InvalidSpec",
      message: /white space/,
    },
  ],
];

for (const [name, { spec, status, ...observed }, want] of cases) {
  test(`status: ${name}`, (t) => {
    const s = computeStatus({ vm: vm(spec, status), ...observed }, T0);
    const ready = findCondition(s.conditions, "Ready")!;
    const scheduled = findCondition(s.conditions, "Scheduled")!;
    t.is(s.phase as string, want.phase);
    t.deepEqual([ready.status, ready.reason], [want.ready, want.readyReason]);
    t.deepEqual([scheduled.status, scheduled.reason], [want.scheduled, want.scheduledReason]);
    if (want.message) t.regex(ready.message, want.message);
    t.is(s.observedGeneration, 3);
    t.true(s.conditions!.every((c) => c.observedGeneration === 3 && c.message.length > 0));
    // Paused and Suspended belong to the node agent (cri-shim/src/agent/conditions.ts).
    t.deepEqual(s.conditions!.map((c) => c.type).sort(), ["Migrating", "Ready", "Scheduled"]);
  });
}

test("status mirrors the pod; the node agent's fields are carried over and never sent", (t) => {
  const p = pod({
    node: "xen-1",
    phase: "Running",
    ready: true,
    ip: "10.0.0.5",
    restarts: 2,
    // An old shim's annotations on the pod: not read any more.
    annotations: { "superfluid.dev/domain-id": "9", [ANNOTATIONS.bootTimeMs]: "42" },
  });
  const agent = { domainId: 7, domainState: "running" as const };
  const s = computeStatus({ vm: vm({}, agent), pod: p, node: readyNode, xenNodeCount: 1 }, T0);
  t.like(s, {
    nodeName: "xen-1",
    podName: "hello-abc",
    ip: "10.0.0.5",
    domainId: 7,
    domainState: "running",
    bootTimeMilliseconds: 42,
    restartCount: 2,
  });
  // The same status again is no write; what the operator applies leaves the agent's fields out.
  t.true(statusEqual(s, computeStatus({ vm: vm({}, s), pod: p, node: readyNode, xenNodeCount: 1 }, T0)));
  const sent = operatorStatus(s);
  t.false("domainId" in sent || "domainState" in sent);
  t.is(sent.nodeName, "xen-1");
  // Without the agent's word, no domain id: nothing is read from the pod.
  t.false("domainId" in computeStatus({ vm: vm(), pod: p, node: readyNode, xenNodeCount: 1 }, T0));
});

test("lastTransitionTime moves only when a condition's status changes, and events follow transitions", (t) => {
  const first = computeStatus({ vm: vm(), xenNodeCount: 1 }, T0);
  // Creating is expected progress: no event.
  t.deepEqual(transitionEvents(undefined, first), []);
  const again = computeStatus({ vm: vm({}, first), pod: pod({}), xenNodeCount: 1 }, T1);
  t.is(findCondition(again.conditions, "Ready")!.lastTransitionTime, "2026-01-01T00:00:00Z");
  const running = computeStatus(
    {
      vm: vm({}, again),
      pod: pod({ node: "xen-1", phase: "Running", ready: true }),
      node: readyNode,
      xenNodeCount: 1,
    },
    T1,
  );
  t.is(findCondition(running.conditions, "Ready")!.lastTransitionTime, "2026-01-01T00:01:00Z");
  const events = transitionEvents(again, running);
  t.deepEqual(
    events.map((e) => [e.type, e.reason]),
    [
      ["Normal", "Scheduled"],
      ["Normal", "Running"],
    ],
  );
  t.true(
    statusEqual(
      running,
      computeStatus(
        {
          vm: vm({}, running),
          pod: pod({ node: "xen-1", phase: "Running", ready: true }),
          node: readyNode,
          xenNodeCount: 1,
        },
        T1,
      ),
    ),
  );
  t.false(statusEqual(again, running));
});

test("a stuck pod is a Warning event", (t) => {
  const before = computeStatus({ vm: vm(), xenNodeCount: 1 }, T0);
  const after = computeStatus(
    {
      vm: vm({}, before),
      pod: pod({ node: "xen-1", waiting: { reason: "ErrImagePull", message: "not found" } }),
      node: readyNode,
      xenNodeCount: 1,
    },
    T1,
  );
  t.deepEqual(transitionEvents(before, after).find((e) => e.reason === "ErrImagePull")?.type, "Warning");
});

test("Ready failing for the same reason as Scheduled is one event, not two", (t) => {
  const s = computeStatus({ vm: vm(), pod: pod({}), xenNodeCount: 0 }, T0);
  t.deepEqual(
    transitionEvents(undefined, s).map((e) => [e.type, e.reason]),
    [["Warning", "NoXenNode"]],
  );
});
