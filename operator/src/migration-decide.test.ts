import test from "ava";
import type { V1Pod } from "@kubernetes/client-node";
import {
  ANNOTATIONS,
  API_VERSION,
  type Condition,
  findCondition,
  type MigrationStatus,
  type UnikernelVM,
  type UnikernelVMMigration,
} from "../../api/index.js";
import { domainHash } from "./desired.js";
import {
  checkRequest,
  decide,
  type MigrationObserved,
  operatorStatus,
  PREPARING_TIMEOUT_MS,
  TRANSFERRING_TIMEOUT_MS,
} from "./migration-decide.js";

const T0 = new Date("2026-01-01T00:00:00Z");
const at = (ms: number) => new Date(T0.getTime() + ms);

const vm: UnikernelVM = {
  apiVersion: API_VERSION,
  kind: "UnikernelVM",
  metadata: { name: "web", namespace: "apps", uid: "vm-uid" },
  spec: { image: "r/web:1", memory: "32Mi" },
  status: { phase: "Running", nodeName: "xen-a", podName: "web-src" },
};

function agentCondition(type: string, status: Condition["status"], reason = type, time = T0): Condition {
  return { type, status, reason, message: `${type} says ${reason}`, lastTransitionTime: time.toISOString() };
}

function migration(
  status?: MigrationStatus,
  name = "m1",
  created = "2026-01-01T00:00:00Z",
): UnikernelVMMigration {
  return {
    apiVersion: API_VERSION,
    kind: "UnikernelVMMigration",
    metadata: { name, namespace: "apps", uid: `${name}-uid`, generation: 1, creationTimestamp: created },
    spec: { vmName: "web" },
    ...(status ? { status } : {}),
  };
}

const inFlight = (phase: MigrationStatus["phase"], conditions: Condition[] = []): MigrationStatus => ({
  phase,
  sourceNode: "xen-a",
  targetNode: "xen-b",
  sourcePod: "web-src",
  ...(phase !== "Scheduling" ? { targetPod: "web-src-m1uid" } : {}),
  startTime: T0.toISOString(),
  conditions,
});

function pod(
  name: string,
  o: { node?: string; running?: boolean; phase?: string; deleting?: boolean; hash?: string } = {},
): V1Pod {
  return {
    metadata: {
      name,
      namespace: "apps",
      uid: `${name}-uid`,
      annotations: { [ANNOTATIONS.domainHash]: o.hash ?? domainHash(vm) },
      ...(o.deleting ? { deletionTimestamp: T0 } : {}),
    },
    spec: {
      nodeName: o.node ?? "xen-a",
      containers: [{ name: "unikernel", resources: { requests: { memory: "32Mi" } } }],
    },
    status: {
      phase: o.phase ?? "Running",
      containerStatuses:
        o.running === false
          ? []
          : [
              {
                name: "unikernel",
                image: "",
                imageID: "",
                ready: true,
                restartCount: 0,
                state: { running: {} },
              },
            ],
    },
  };
}

const source = pod("web-src");
const target = pod("web-src-m1uid", { node: "xen-b" });
const observed = (o: Partial<MigrationObserved> & { m: UnikernelVMMigration }): MigrationObserved => ({
  vm,
  sourcePod: source,
  targetPod: target,
  siblings: [],
  now: at(1000),
  ...o,
});

const T = (type: string) => agentCondition(type, "True");
/** Transferring, with the target ready one minute after the start; the clock at nowMs. */
const readyAfterAMinute = (nowMs: number) =>
  observed({
    m: migration(inFlight("Transferring", [agentCondition("TargetReady", "True", "Listening", at(60_000))])),
    now: at(nowMs),
  });
const F = (type: string, reason: string) => agentCondition(type, "False", reason);

const table: [string, MigrationObserved, string, string?][] = [
  ["Succeeded is history", observed({ m: migration({ phase: "Succeeded" }) }), "none"],
  ["Failed is history", observed({ m: migration({ phase: "Failed" }) }), "none"],
  ["a new request is validated", observed({ m: migration() }), "validate"],
  ["Pending is validated", observed({ m: migration({ phase: "Pending" }) }), "validate"],
  ["Scheduling creates the target pod", observed({ m: migration(inFlight("Scheduling")) }), "createTarget"],
  [
    "the VM deleted mid-way",
    observed({ m: migration(inFlight("Transferring")), vm: undefined }),
    "fail",
    "VMDeleted",
  ],
  [
    "the VM being deleted",
    observed({
      m: migration(inFlight("TargetPreparing")),
      vm: { ...vm, metadata: { ...vm.metadata, deletionTimestamp: T0.toISOString() } },
    }),
    "fail",
    "VMDeleted",
  ],
  [
    "TargetPreparing waits for the container",
    observed({
      m: migration(inFlight("TargetPreparing", [T("TargetReady")])),
      targetPod: pod("t", { node: "xen-b", running: false, phase: "Pending" }),
    }),
    "wait",
  ],
  ["TargetPreparing waits for TargetReady", observed({ m: migration(inFlight("TargetPreparing")) }), "wait"],
  [
    "container running + TargetReady=True -> Transferring",
    observed({ m: migration(inFlight("TargetPreparing", [T("TargetReady")])) }),
    "advance",
    "Transferring",
  ],
  [
    "TargetReady=False fails with the agent's reason",
    observed({ m: migration(inFlight("TargetPreparing", [F("TargetReady", "InsufficientMemory")])) }),
    "fail",
    "InsufficientMemory",
  ],
  [
    "the target pod failed (kubelet OutOfmemory)",
    observed({
      m: migration(inFlight("TargetPreparing")),
      targetPod: pod("t", { node: "xen-b", phase: "Failed" }),
    }),
    "fail",
    "TargetPodFailed",
  ],
  [
    "the target pod was deleted",
    observed({ m: migration(inFlight("TargetPreparing")), targetPod: undefined }),
    "fail",
    "TargetPodDeleted",
  ],
  [
    "the source pod went away",
    observed({ m: migration(inFlight("TargetPreparing")), sourcePod: undefined }),
    "fail",
    "SourcePodGone",
  ],
  ["Transferring waits", observed({ m: migration(inFlight("Transferring", [T("TargetReady")])) }), "wait"],
  [
    "Transferred=True -> Switching",
    observed({
      m: migration(inFlight("Transferring", [T("TargetReady"), T("TargetRunning"), T("Transferred")])),
    }),
    "advance",
    "Switching",
  ],
  [
    "Transferred=True while the operator lagged in TargetPreparing -> Switching",
    observed({ m: migration(inFlight("TargetPreparing", [T("TargetReady"), T("Transferred")])) }),
    "advance",
    "Switching",
  ],
  [
    "Transferred=False fails with the source agent's reason",
    observed({
      m: migration(inFlight("Transferring", [T("TargetReady"), F("Transferred", "StreamBroken")])),
    }),
    "fail",
    "StreamBroken",
  ],
  [
    "TargetRunning=False fails with the target agent's reason",
    observed({
      m: migration(inFlight("Transferring", [T("TargetReady"), F("TargetRunning", "RestoreFailed")])),
    }),
    "fail",
    "RestoreFailed",
  ],
  ["Switching switches", observed({ m: migration(inFlight("Switching", [T("Transferred")])) }), "switch"],
  [
    "Switching even when the source pod is already gone",
    observed({ m: migration(inFlight("Switching", [T("Transferred")])), sourcePod: undefined }),
    "switch",
  ],
  [
    "Scheduling past 5 minutes",
    observed({ m: migration(inFlight("Scheduling")), now: at(PREPARING_TIMEOUT_MS + 1) }),
    "fail",
    "Timeout",
  ],
  [
    "TargetPreparing past 5 minutes",
    observed({ m: migration(inFlight("TargetPreparing")), now: at(PREPARING_TIMEOUT_MS + 1) }),
    "fail",
    "Timeout",
  ],
  [
    "Transferring counts from TargetReady, not from the start",
    readyAfterAMinute(TRANSFERRING_TIMEOUT_MS + 30_000),
    "wait",
  ],
  ["Transferring past 10 minutes", readyAfterAMinute(TRANSFERRING_TIMEOUT_MS + 61_000), "fail", "Timeout"],
  [
    "past the point of no return a timeout switches instead of failing",
    observed({
      m: migration(inFlight("Transferring", [T("TargetReady"), T("TargetRunning")])),
      now: at(TRANSFERRING_TIMEOUT_MS + 1),
    }),
    "advance",
    "Switching",
  ],
  [
    "past the point of no return a vanished source pod does not fail it: the target runs, so switch",
    observed({
      m: migration(inFlight("Transferring", [T("TargetReady"), T("TargetRunning")])),
      sourcePod: undefined,
    }),
    "advance",
    "Switching",
  ],
  // The commit point (Committed, the source agent's) and the bugs it closes.
  [
    "TargetRunning=True with Transferred=False is past the commit: never fail (the target has the only copy)",
    observed({
      m: migration(
        inFlight("Transferring", [T("TargetReady"), T("TargetRunning"), F("Transferred", "StreamFailed")]),
      ),
    }),
    "advance",
    "Switching",
  ],
  [
    "committed, the target not running yet: wait, no failure",
    observed({
      m: migration(inFlight("Transferring", [T("TargetReady"), T("TargetRestored"), T("Committed")])),
    }),
    "wait",
  ],
  [
    "committed, past the deadline: still waits (never fails after the commit)",
    observed({
      m: migration(inFlight("Transferring", [T("TargetReady"), T("TargetRestored"), T("Committed")])),
      now: at(TRANSFERRING_TIMEOUT_MS + 3_600_000),
    }),
    "wait",
  ],
  [
    "committed, the target's unpause failed: waits for its retry, does not fail",
    observed({
      m: migration(
        inFlight("Transferring", [T("TargetReady"), T("Committed"), F("TargetRunning", "UnpauseFailed")]),
      ),
    }),
    "wait",
  ],
  [
    "committed, the target pod vanished: no failure (its copy is the VM)",
    observed({
      m: migration(inFlight("Transferring", [T("TargetReady"), T("Committed")])),
      targetPod: undefined,
    }),
    "wait",
  ],
  [
    "committed and TargetRunning=True -> Switching",
    observed({
      m: migration(inFlight("Transferring", [T("TargetReady"), T("Committed"), T("TargetRunning")])),
    }),
    "advance",
    "Switching",
  ],
  [
    "Committed=False (aborted) fails with the source's reason",
    observed({
      m: migration(
        inFlight("Transferring", [T("TargetReady"), T("TargetRestored"), F("Committed", "SourceRestarted")]),
      ),
    }),
    "fail",
    "SourceRestarted",
  ],
  [
    "restored paused, not committed, past the deadline: fails (the source still holds its copy)",
    observed({
      m: migration(inFlight("Transferring", [T("TargetReady"), T("TargetRestored")])),
      now: at(TRANSFERRING_TIMEOUT_MS + 1),
    }),
    "fail",
    "Timeout",
  ],
];
for (const [name, o, action, detail] of table) {
  test(`decide: ${name} -> ${action}${detail ? ` ${detail}` : ""}`, (t) => {
    const d = decide(o);
    t.is(d.action as string, action);
    if (d.action === "fail") {
      t.is(d.reason as string | undefined, detail);
      t.true(d.message.length > 0);
    }
    if (d.action === "advance") t.is(d.phase as string | undefined, detail);
  });
}

test("decide: waiting in a phase with a deadline asks to be looked at again when it passes", (t) => {
  const d = decide(observed({ m: migration(inFlight("TargetPreparing")), now: at(60_000) }));
  t.deepEqual(d, { action: "wait", requeueAfterMs: PREPARING_TIMEOUT_MS - 60_000 + 100 });
});

const requests: [string, MigrationObserved, string][] = [
  ["no such VM", observed({ m: migration(), vm: undefined }), "VMNotFound"],
  [
    "a VM still Creating",
    observed({ m: migration(), vm: { ...vm, status: { ...vm.status, phase: "Creating" } } }),
    "VMNotRunning",
  ],
  [
    "a Suspended VM",
    observed({ m: migration(), vm: { ...vm, status: { ...vm.status, phase: "Suspended" } } }),
    "VMNotRunning",
  ],
  [
    "a VM whose pod is not bound",
    observed({ m: migration(), sourcePod: { ...source, spec: { containers: [] } } }),
    "VMNotRunning",
  ],
  [
    "a VM being recreated for a new spec",
    observed({ m: migration(), sourcePod: pod("web-src", { hash: "old" }) }),
    "VMNotRunning",
  ],
  [
    "a VM another migration moves",
    observed({ m: migration(), siblings: [migration(inFlight("Transferring"), "m0")] }),
    "AlreadyMigrating",
  ],
  ["a name too long for a label", observed({ m: migration(undefined, "m".repeat(64)) }), "InvalidName"],
  ["a name with dots", observed({ m: migration(undefined, "move.web") }), "InvalidName"],
];
for (const [name, o, reason] of requests) {
  test(`checkRequest: ${name} -> ${reason}`, (t) => {
    const r = checkRequest(o);
    t.like(r, { reason });
  });
}

test("checkRequest: a valid request yields the source and the memory its pod requests", (t) => {
  t.deepEqual(checkRequest(observed({ m: migration() })), {
    sourcePod: "web-src",
    sourceNode: "xen-a",
    memoryBytes: 32 * 2 ** 20,
  });
  // Paused VMs move too; the VM's nodeSelector travels to the target check.
  const paused = {
    ...vm,
    spec: { ...vm.spec, nodeSelector: { zone: "a" } },
    status: { ...vm.status, phase: "Paused" as const },
  };
  const pausedPod = pod("web-src", { hash: domainHash(paused) });
  t.like(checkRequest(observed({ m: migration(), vm: paused, sourcePod: pausedPod })), {
    nodeSelector: { zone: "a" },
  });
});

test("checkRequest: of two undecided requests for one VM the older goes first, the newer waits", (t) => {
  const older = migration(undefined, "m0", "2025-12-31T00:00:00Z");
  t.is(checkRequest(observed({ m: migration(), siblings: [older] })), "wait");
  t.like(checkRequest(observed({ m: older, siblings: [migration()] })), { sourceNode: "xen-a" });
  // Finished ones do not count.
  t.like(
    checkRequest(
      observed({ m: migration(), siblings: [migration({ phase: "Failed" }, "m0", "2025-12-31T00:00:00Z")] }),
    ),
    { sourceNode: "xen-a" },
  );
});

test("operatorStatus carries the operator's fields, never an agent's, and times the end", (t) => {
  const m = migration({
    ...inFlight("Switching", [T("TargetReady"), T("Transferred")]),
    targetEndpoint: "10.0.0.2:4000",
    transferredBytes: 123,
    downtimeMilliseconds: 40,
  });
  const s = operatorStatus(m, { phase: "Succeeded", reason: "Succeeded", message: "done" }, at(2500));
  t.like(s, {
    phase: "Succeeded",
    sourceNode: "xen-a",
    targetNode: "xen-b",
    targetPod: "web-src-m1uid",
    totalMilliseconds: 2500,
    completionTime: "2026-01-01T00:00:02Z",
    observedGeneration: 1,
  });
  t.is(s.targetEndpoint, undefined);
  t.is(s.transferredBytes, undefined);
  t.is(s.downtimeMilliseconds, undefined);
  t.deepEqual(
    s.conditions?.map((c) => [c.type, c.status, c.reason]),
    [["Succeeded", "True", "Succeeded"]],
  );
});

test("operatorStatus keeps Succeeded's lastTransitionTime while it stays Unknown", (t) => {
  const first = operatorStatus(migration(), { phase: "Scheduling", reason: "Scheduling", message: "a" }, T0);
  const second = operatorStatus(
    migration(first),
    { phase: "TargetPreparing", reason: "TargetPreparing", message: "b" },
    at(5000),
  );
  const c = findCondition(second.conditions, "Succeeded")!;
  t.deepEqual(
    [c.status, c.reason, c.lastTransitionTime],
    ["Unknown", "TargetPreparing", "2026-01-01T00:00:00Z"],
  );
  const failed = operatorStatus(
    migration(second),
    { phase: "Failed", reason: "Timeout", message: "c" },
    at(9000),
  );
  t.is(findCondition(failed.conditions, "Succeeded")!.lastTransitionTime, "2026-01-01T00:00:09Z");
});
