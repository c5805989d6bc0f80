// decide() over every combination that matters, and the agent's status slice.
import test from "ava";
import type { UnikernelVM } from "../../../api/index.js";
import { agentStatus, agentStatusDiffers } from "./conditions.js";
import { type AgentAction, decide, type DecideInput } from "./decide.js";

const base: DecideInput = {
  runPolicy: "Running",
  domain: "running",
  suspended: false,
  checkpointExists: false,
  restoreFailed: false,
};
const cases: [string, Partial<DecideInput>, AgentAction["kind"], Partial<AgentAction>?][] = [
  ["Running, running: nothing", {}, "none"],
  ["Running, paused: unpause", { domain: "paused" }, "unpause"],
  [
    "Running, suspended with checkpoint: restore running",
    { domain: "absent", suspended: true, checkpointExists: true },
    "restore",
    { paused: false },
  ],
  [
    "Running, suspended, checkpoint gone: fail",
    { domain: "absent", suspended: true },
    "fail",
    { reason: "CheckpointMissing" },
  ],
  [
    "Running, suspended, restore failed before: no retry loop",
    { domain: "absent", suspended: true, checkpointExists: true, restoreFailed: true },
    "none",
  ],
  ["Running, no domain, not suspended (exited): CRI's business", { domain: "absent" }, "none"],
  ["Running, running, stale checkpoint: discard it", { checkpointExists: true }, "discard-checkpoint"],
  ["Paused, running: pause", { runPolicy: "Paused" }, "pause"],
  ["Paused, paused: nothing", { runPolicy: "Paused", domain: "paused" }, "none"],
  [
    "Paused, suspended: restore paused",
    { runPolicy: "Paused", domain: "absent", suspended: true, checkpointExists: true },
    "restore",
    { paused: true },
  ],
  ["Suspended, running: suspend", { runPolicy: "Suspended" }, "suspend"],
  ["Suspended, paused: suspend", { runPolicy: "Suspended", domain: "paused" }, "suspend"],
  [
    "Suspended, suspended: nothing",
    { runPolicy: "Suspended", domain: "absent", suspended: true, checkpointExists: true },
    "none",
  ],
  [
    "Suspended, suspended, checkpoint gone: nothing to do until resumed",
    { runPolicy: "Suspended", domain: "absent", suspended: true },
    "none",
  ],
  ["Suspended, exited: nothing", { runPolicy: "Suspended", domain: "absent" }, "none"],
  ["Stopped, running: the operator's (pod deletion)", { runPolicy: "Stopped" }, "none"],
  [
    "Stopped, suspended: the operator's",
    { runPolicy: "Stopped", domain: "absent", suspended: true, checkpointExists: true },
    "none",
  ],
];
for (const [name, input, kind, extra] of cases)
  test(`decide: ${name}`, (t) => {
    const action = decide({ ...base, ...input });
    t.is(action.kind, kind);
    if (extra) t.like(action, extra);
  });

const vm = (runPolicy: UnikernelVM["spec"]["runPolicy"], status?: UnikernelVM["status"]): UnikernelVM => ({
  apiVersion: "superfluid.dev/v1alpha1",
  kind: "UnikernelVM",
  metadata: { name: "v", namespace: "default", uid: "u-1", generation: 4 },
  spec: { image: "hello:1", runPolicy },
  ...(status ? { status } : {}),
});
const cond = (s: ReturnType<typeof agentStatus>, type: string) => s.conditions.find((c) => c.type === type)!;

test("status: a paused domain is phase Paused, Paused=True; other conditions are kept", (t) => {
  const ready = {
    type: "Ready",
    status: "False",
    reason: "Paused",
    message: "x",
    lastTransitionTime: "2026-01-01T00:00:00Z",
  } as const;
  const s = agentStatus(vm("Paused", { conditions: [ready] }), { domain: "paused", suspended: false });
  t.is(s.phase, "Paused");
  t.like(cond(s, "Paused"), { status: "True", reason: "Paused", observedGeneration: 4 });
  t.like(cond(s, "Suspended"), { status: "False", reason: "NotSuspended" });
  t.deepEqual(cond(s, "Ready"), ready);
});

test("status: suspended, then a failed restore keeps Suspended=True with the failure as reason", (t) => {
  const s = agentStatus(vm("Suspended"), { domain: "absent", suspended: true });
  t.is(s.phase, "Suspended");
  t.like(cond(s, "Suspended"), { status: "True", reason: "Suspended" });
  const f = agentStatus(vm("Running"), {
    domain: "absent",
    suspended: true,
    failure: { op: "restore", reason: "RestoreFailed", message: "restore failed: bad stream" },
  });
  t.like(cond(f, "Suspended"), {
    status: "True",
    reason: "RestoreFailed",
    message: "restore failed: bad stream",
  });
  t.is(f.phase, "Suspended");
});

test("status: running domain while Suspended is asked: Suspending; no write when nothing changed", (t) => {
  const s = agentStatus(vm("Suspended"), { domain: "running", suspended: false });
  t.is(s.phase, "Running");
  t.like(cond(s, "Suspended"), { status: "False", reason: "Suspending" });
  const written = vm("Suspended", { phase: s.phase, conditions: s.conditions });
  t.false(agentStatusDiffers(written, agentStatus(written, { domain: "running", suspended: false })));
  t.true(agentStatusDiffers(written, agentStatus(written, { domain: "absent", suspended: true })));
});
