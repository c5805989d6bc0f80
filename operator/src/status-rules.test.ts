// The status rule chain: which rule decides, and the phase derived from the node agent's conditions
// (the agent writes only Paused and Suspended; phase is the operator's alone).
import test from "ava";
import type { V1Pod } from "@kubernetes/client-node";
import { API_VERSION, type Condition, type UnikernelVM, type VMPhase } from "../../api/index.js";
import { computeStatus, decideStatus, operatorStatus, STATUS_RULES, type Observed } from "./status.js";

const vm = (conditions: Condition[] = [], spec: Partial<UnikernelVM["spec"]> = {}): UnikernelVM => ({
  apiVersion: API_VERSION,
  kind: "UnikernelVM",
  metadata: { name: "v", namespace: "a", generation: 2 },
  spec: { image: "r/i:1", ...spec },
  status: { conditions },
});
const cond = (type: string, status: "True" | "False", reason = type): Condition => ({
  type,
  status,
  reason,
  message: "m",
  lastTransitionTime: "2026-01-01T00:00:00Z",
});
const pod = (p: { node?: string; phase?: string; ready?: boolean; deleting?: boolean } = {}): V1Pod => ({
  metadata: { name: "v-1", ...(p.deleting ? { deletionTimestamp: new Date() } : {}) },
  spec: { containers: [{ name: "unikernel" }], ...(p.node ? { nodeName: p.node } : {}) },
  status: {
    phase: p.phase ?? "Running",
    conditions: p.ready === undefined ? [] : [{ type: "Ready", status: p.ready ? "True" : "False" }],
    containerStatuses: [
      {
        name: "unikernel",
        image: "",
        imageID: "",
        ready: !!p.ready,
        restartCount: 0,
        state: { running: {} },
      },
    ],
  },
});
const running = pod({ node: "n", ready: true });

const cases: [string, Observed, string, VMPhase][] = [
  ["invalid spec", { vm: vm(), invalidSpec: "bad", xenNodeCount: 1, pod: running }, "invalid spec", "Failed"],
  ["stopped", { vm: vm([], { runPolicy: "Stopped" }), xenNodeCount: 1 }, "stopped", "Stopped"],
  ["no pod", { vm: vm(), xenNodeCount: 1 }, "no pod yet", "Pending"],
  [
    "terminating",
    { vm: vm(), xenNodeCount: 1, pod: pod({ node: "n", deleting: true }) },
    "pod terminating",
    "Pending",
  ],
  ["unscheduled", { vm: vm(), xenNodeCount: 1, pod: pod({ phase: "Pending" }) }, "not scheduled", "Pending"],
  [
    "succeeded",
    { vm: vm(), xenNodeCount: 1, pod: pod({ node: "n", phase: "Succeeded" }) },
    "completed",
    "Succeeded",
  ],
  ["failed", { vm: vm(), xenNodeCount: 1, pod: pod({ node: "n", phase: "Failed" }) }, "failed", "Failed"],
  [
    "creating",
    { vm: vm(), xenNodeCount: 1, pod: pod({ node: "n", phase: "Pending" }) },
    "creating",
    "Creating",
  ],
  ["running", { vm: vm(), xenNodeCount: 1, pod: running }, "running", "Running"],
  ["agent: Paused", { vm: vm([cond("Paused", "True")]), xenNodeCount: 1, pod: running }, "running", "Paused"],
  [
    "agent: Suspended (a failed restore keeps it True)",
    { vm: vm([cond("Suspended", "True", "RestoreFailed")]), xenNodeCount: 1, pod: running },
    "running",
    "Suspended",
  ],
  [
    "agent: not paused",
    {
      vm: vm([cond("Paused", "False", "NotPaused"), cond("Suspended", "False", "NotSuspended")]),
      xenNodeCount: 1,
      pod: running,
    },
    "running",
    "Running",
  ],
];

for (const [name, o, rule, phase] of cases)
  test(`status rule: ${name}`, (t) => {
    const d = decideStatus(o);
    t.is(d.rule, rule);
    t.is(d.phase, phase);
    t.is(computeStatus(o).phase, phase);
  });

test("every rule is reached by some case", (t) => {
  const reached = new Set(cases.map(([, o]) => decideStatus(o).rule));
  const missing = STATUS_RULES.map((r) => r.name).filter(
    (n) => !reached.has(n) && n !== "stuck waiting" && n !== "node not ready",
  );
  t.deepEqual(missing, []);
});

test("a paused VM is not Ready, for the agent's reason", (t) => {
  const s = computeStatus({ vm: vm([cond("Paused", "True")]), xenNodeCount: 1, pod: running });
  t.like(
    s.conditions?.find((c) => c.type === "Ready"),
    { status: "False", reason: "Paused" },
  );
});

test("the operator's write carries its own conditions only, never the agent's", (t) => {
  const s = computeStatus({
    vm: vm([cond("Paused", "True"), cond("Suspended", "False")]),
    xenNodeCount: 1,
    pod: running,
  });
  t.deepEqual(s.conditions?.map((c) => c.type).sort(), [
    "Migrating",
    "Paused",
    "Ready",
    "Scheduled",
    "Suspended",
  ]);
  t.deepEqual(
    operatorStatus(s)
      .conditions?.map((c) => c.type)
      .sort(),
    ["Migrating", "Ready", "Scheduled"],
  );
  t.is(operatorStatus(s).phase, "Paused");
});
