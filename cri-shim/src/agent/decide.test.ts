// decide() over every combination that matters, the agent's conditions and its domain fields.
import test from "ava";
import type { Condition, UnikernelVM } from "../../../api/index.js";
import {
  type AgentObservation,
  agentConditions,
  agentConditionsDiffer,
  agentStatus,
  agentStatusDiffers,
} from "./conditions.js";
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
const cond = (s: Condition[], type: string) => s.find((c) => c.type === type)!;

test("conditions: the agent's slice is Paused and Suspended only, never another condition or the phase", (t) => {
  const ready = {
    type: "Ready",
    status: "False",
    reason: "Paused",
    message: "x",
    lastTransitionTime: "2026-01-01T00:00:00Z",
  } as const;
  const s = agentConditions(vm("Paused", { phase: "Running", conditions: [ready] }), {
    domain: "paused",
    suspended: false,
  });
  t.deepEqual(
    s.map((c) => c.type),
    ["Paused", "Suspended"],
  );
  t.like(cond(s, "Paused"), { status: "True", reason: "Paused", observedGeneration: 4 });
  t.like(cond(s, "Suspended"), { status: "False", reason: "NotSuspended" });
});

test("conditions: suspended, then a failed restore keeps Suspended=True with the failure as reason", (t) => {
  const s = agentConditions(vm("Suspended"), { domain: "absent", suspended: true });
  t.like(cond(s, "Suspended"), { status: "True", reason: "Suspended" });
  t.like(cond(s, "Paused"), { status: "False", reason: "NotPaused" });
  const f = agentConditions(vm("Running"), {
    domain: "absent",
    suspended: true,
    failure: { op: "restore", reason: "RestoreFailed", message: "restore failed: bad stream" },
  });
  t.like(cond(f, "Suspended"), {
    status: "True",
    reason: "RestoreFailed",
    message: "restore failed: bad stream",
  });
});

test("conditions: on the way (Pausing, Suspending) and failures (PauseFailed) are False with their reason", (t) => {
  t.like(cond(agentConditions(vm("Paused"), { domain: "running", suspended: false }), "Paused"), {
    status: "False",
    reason: "Pausing",
  });
  const failed = agentConditions(vm("Paused"), {
    domain: "running",
    suspended: false,
    failure: { op: "pause", reason: "PauseFailed", message: "pause failed: no" },
  });
  t.like(cond(failed, "Paused"), { status: "False", reason: "PauseFailed" });
  t.like(cond(agentConditions(vm("Suspended"), { domain: "paused", suspended: false }), "Suspended"), {
    status: "False",
    reason: "Suspending",
  });
});

test("conditions: lastTransitionTime holds while status holds; no write when nothing changed", (t) => {
  const t0 = new Date("2026-01-01T00:00:00Z");
  const s = agentConditions(vm("Suspended"), { domain: "running", suspended: false }, t0);
  const written = vm("Suspended", { phase: "Running", conditions: s });
  const again = agentConditions(
    written,
    { domain: "running", suspended: false },
    new Date("2026-01-02T00:00:00Z"),
  );
  t.false(agentConditionsDiffer(written, again));
  t.is(cond(again, "Suspended").lastTransitionTime, "2026-01-01T00:00:00Z");
  const saved = agentConditions(
    written,
    { domain: "absent", suspended: true },
    new Date("2026-01-02T00:00:00Z"),
  );
  t.true(agentConditionsDiffer(written, saved));
  t.is(cond(saved, "Suspended").lastTransitionTime, "2026-01-02T00:00:00Z");
  t.is(cond(saved, "Paused").lastTransitionTime, "2026-01-01T00:00:00Z", "Paused stayed False");
});

const domainCases: [
  string,
  AgentObservation,
  number | undefined,
  { domainId?: number; domainState?: string },
][] = [
  [
    "running: its id and state",
    { domain: "running", suspended: false },
    7,
    { domainId: 7, domainState: "running" },
  ],
  [
    "paused: its id and state",
    { domain: "paused", suspended: false },
    7,
    { domainId: 7, domainState: "paused" },
  ],
  [
    "suspended: no domain, no id",
    { domain: "absent", suspended: true },
    undefined,
    { domainState: "suspended" },
  ],
  [
    "suspended with a stale domid: still no id",
    { domain: "absent", suspended: true },
    7,
    { domainState: "suspended" },
  ],
  ["vanished (crashed, dying): neither", { domain: "absent", suspended: false }, 7, {}],
  [
    "running, no domid known: the state alone",
    { domain: "running", suspended: false },
    undefined,
    { domainState: "running" },
  ],
];
for (const [name, o, domid, want] of domainCases)
  test(`domain fields: ${name}`, (t) => {
    const s = agentStatus(vm("Running"), o, domid);
    t.deepEqual(
      { domainId: s.domainId, domainState: s.domainState },
      { domainId: undefined, domainState: undefined, ...want },
    );
    t.false(
      "domainId" in s && s.domainId === undefined,
      "an absent field is left out, so the apply removes it",
    );
    t.deepEqual(
      s.conditions.map((c) => c.type),
      ["Paused", "Suspended"],
    );
  });

test("domain fields: a new domain id or state is a write; the same ones are not", (t) => {
  const t0 = new Date("2026-01-01T00:00:00Z");
  const running = { domain: "running", suspended: false } as const;
  const s = agentStatus(vm("Running"), running, 3, t0);
  const written = vm("Running", { phase: "Running", ...s });
  t.false(agentStatusDiffers(written, agentStatus(written, running, 3)));
  t.true(agentStatusDiffers(written, agentStatus(written, running, 4)), "a new domain (restored, restarted)");
  t.true(agentStatusDiffers(written, agentStatus(written, { domain: "absent", suspended: false }, 3)));
  // The operator's write of the same VM (no domain fields) does not hide the agent's from it.
  t.true(agentStatusDiffers(vm("Running", { phase: "Running", conditions: s.conditions }), s));
});
