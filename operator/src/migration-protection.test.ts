import test from "ava";
import type { V1Pod } from "@kubernetes/client-node";
import {
  API_VERSION,
  FINALIZER,
  LABELS,
  MIGRATION_FINALIZER,
  MIGRATION_PHASES,
  type MigrationPhase,
  type UnikernelVMMigration,
} from "../../api/index.js";
import { decide } from "./migration-decide.js";
import { BEFORE_STREAM_PHASES, isProtected, protection, type Protection } from "./migration-protection.js";

const T0 = new Date("2026-01-01T00:00:00Z");

function migration(
  phase: MigrationPhase | undefined,
  o: { finalizers?: string[]; deleting?: boolean } = {},
): UnikernelVMMigration {
  return {
    apiVersion: API_VERSION,
    kind: "UnikernelVMMigration",
    metadata: {
      name: "m1",
      namespace: "apps",
      uid: "m1-uid",
      ...(o.finalizers ? { finalizers: o.finalizers } : {}),
      ...(o.deleting ? { deletionTimestamp: T0.toISOString() } : {}),
    },
    spec: { vmName: "web" },
    ...(phase ? { status: { phase, sourceNode: "xen-a", targetNode: "xen-b", targetPod: "web-x" } } : {}),
  };
}

const mine = [MIGRATION_FINALIZER];
type Row = [
  label: string,
  phase: MigrationPhase | undefined,
  o: { finalizers?: string[]; deleting?: boolean },
  vmPresent: boolean,
  want: Protection["action"],
];
const rows: Row[] = [
  // Not deleted: protected from the first in-flight phase on, released once finished.
  ["new request", undefined, {}, true, "none"],
  ["Pending", "Pending", {}, true, "none"],
  ["Scheduling, unprotected", "Scheduling", {}, true, "protect"],
  ["Scheduling, someone else's finalizer only", "Scheduling", { finalizers: [FINALIZER] }, true, "protect"],
  ["Scheduling, protected", "Scheduling", { finalizers: mine }, true, "none"],
  ["Transferring, unprotected (made by an older operator)", "Transferring", {}, true, "protect"],
  ["Switching, protected", "Switching", { finalizers: mine }, true, "none"],
  ["Succeeded, protected", "Succeeded", { finalizers: mine }, true, "release"],
  ["Failed, protected", "Failed", { finalizers: [FINALIZER, ...mine] }, true, "release"],
  ["Failed, unprotected", "Failed", {}, true, "none"],
  // Deleted before the stream: cancelled, whatever holds the object.
  [
    "deleted Pending (another finalizer)",
    "Pending",
    { finalizers: [FINALIZER], deleting: true },
    true,
    "cancel",
  ],
  ["deleted Scheduling", "Scheduling", { finalizers: mine, deleting: true }, true, "cancel"],
  ["deleted TargetPreparing", "TargetPreparing", { finalizers: mine, deleting: true }, true, "cancel"],
  [
    "deleted TargetPreparing, VM gone",
    "TargetPreparing",
    { finalizers: mine, deleting: true },
    false,
    "cancel",
  ],
  // Deleted mid-stream: held while the VM exists; never a new finalizer on a deleted object.
  ["deleted Transferring", "Transferring", { finalizers: mine, deleting: true }, true, "hold"],
  ["deleted Switching", "Switching", { finalizers: mine, deleting: true }, true, "hold"],
  ["deleted Transferring, VM gone", "Transferring", { finalizers: mine, deleting: true }, false, "none"],
  [
    "deleted Transferring, unprotected",
    "Transferring",
    { finalizers: [FINALIZER], deleting: true },
    true,
    "none",
  ],
  // Deleted and finished: released at once.
  ["deleted Succeeded", "Succeeded", { finalizers: mine, deleting: true }, true, "release"],
  ["deleted Failed", "Failed", { finalizers: mine, deleting: true }, false, "release"],
];

for (const [label, phase, o, vmPresent, want] of rows)
  test(`protection: ${label} -> ${want}`, (t) => {
    t.is(protection(migration(phase, o), { vmPresent }).action, want);
  });

test("every phase is either before the stream, under way, or finished", (t) => {
  const underWay: MigrationPhase[] = ["Transferring", "Switching"];
  const finished: MigrationPhase[] = ["Succeeded", "Failed"];
  t.deepEqual([...BEFORE_STREAM_PHASES, ...underWay, ...finished].sort(), [...MIGRATION_PHASES].sort());
});

test("a cancel says who ended it, before what, and where the VM stays", (t) => {
  const p = protection(migration("TargetPreparing", { finalizers: mine, deleting: true }), {
    vmPresent: true,
  });
  t.deepEqual(p, {
    action: "cancel",
    reason: "Cancelled",
    message: "deleted by the user before the transfer started (phase TargetPreparing); web stays on xen-a",
  });
});

test("a hold says that deletion waits for the transfer and what releases it", (t) => {
  const p = protection(migration("Transferring", { finalizers: mine, deleting: true }), {
    vmPresent: true,
  });
  t.is(p.action, "hold");
  t.is(p.action === "hold" && p.reason, "DeletionDeferred");
  t.regex(
    p.action === "hold" ? p.message : "",
    /waits for the transfer to end.*xen-a -> xen-b.*succeeds or fails/,
  );
});

test("a deleted mid-stream migration whose VM is gone is failed by decide(), then released", (t) => {
  const m = migration("Transferring", { finalizers: mine, deleting: true });
  t.is(protection(m, { vmPresent: false }).action, "none");
  const d = decide({ m, siblings: [], now: T0 });
  t.like(d, { action: "fail", reason: "VMDeleted" });
  const failed = { ...m, status: { ...m.status, phase: "Failed" as const } };
  t.is(protection(failed, { vmPresent: false }).action, "release");
});

test("isProtected looks for our finalizer only", (t) => {
  t.true(isProtected(migration("Scheduling", { finalizers: [FINALIZER, MIGRATION_FINALIZER] })));
  t.false(isProtected(migration("Scheduling", { finalizers: [FINALIZER] })));
  t.false(isProtected(migration("Scheduling")));
});

test("after a success the finalizer stays until the pod cache shows the target pod as the VM's", (t) => {
  const done = migration("Succeeded", { finalizers: mine, deleting: true });
  const pod = (labels: Record<string, string>): V1Pod => ({ metadata: { name: "web-x", labels } });
  const cases: [string, V1Pod | undefined, Protection["action"]][] = [
    ["still labelled for the migration", pod({ [LABELS.migration]: "m1" }), "none"],
    ["labelled for another VM", pod({ [LABELS.vm]: "other" }), "none"],
    ["adopted", pod({ [LABELS.vm]: "web" }), "release"],
    ["not in the cache (deleted since)", undefined, "release"],
  ];
  for (const [label, cachedTargetPod, want] of cases)
    t.is(
      protection(done, { vmPresent: true, ...(cachedTargetPod ? { cachedTargetPod } : {}) }).action,
      want,
      label,
    );
  // A failed migration's target pod is never handed over: nothing to wait for.
  const failed = migration("Failed", { finalizers: mine, deleting: true });
  t.is(protection(failed, { vmPresent: true, cachedTargetPod: pod({}) }).action, "release");
});
