import test from "ava";
import type { V1Pod } from "@kubernetes/client-node";
import {
  ANNOTATIONS,
  API_VERSION,
  findCondition,
  type MigrationStatus,
  type UnikernelVM,
  type UnikernelVMMigration,
} from "../../api/index.js";
import { computeStatus } from "./status.js";
import {
  ADOPTION_GRACE_MS,
  currentPod,
  lastMigrationOf,
  migratingCondition,
  migrationHoldsPods,
  migrationsOf,
  summarize,
} from "./vm-migrations.js";

const T0 = new Date("2026-01-01T00:00:00Z");
const vm: UnikernelVM = {
  apiVersion: API_VERSION,
  kind: "UnikernelVM",
  metadata: { name: "web", namespace: "apps", uid: "vm-uid", generation: 1 },
  spec: { image: "r/web:1" },
};

function migration(
  name: string,
  status?: MigrationStatus,
  o: { vmName?: string; ns?: string } = {},
): UnikernelVMMigration {
  return {
    apiVersion: API_VERSION,
    kind: "UnikernelVMMigration",
    metadata: { name, namespace: o.ns ?? "apps" },
    spec: { vmName: o.vmName ?? "web" },
    ...(status ? { status } : {}),
  };
}
const done = (
  name: string,
  phase: "Succeeded" | "Failed",
  completionTime: string,
  extra: MigrationStatus = {},
) =>
  migration(name, {
    phase,
    completionTime,
    sourceNode: "xen-a",
    targetNode: "xen-b",
    message: `${name} ${phase}`,
    ...extra,
  });

function pod(name: string, hash: string, deleting = false): V1Pod {
  return {
    metadata: {
      name,
      annotations: { [ANNOTATIONS.domainHash]: hash },
      ...(deleting ? { deletionTimestamp: T0 } : {}),
    },
  };
}

test("migrationsOf: only the ones naming this VM in its namespace", (t) => {
  const all = [
    migration("a"),
    migration("b", undefined, { vmName: "other" }),
    migration("c", undefined, { ns: "elsewhere" }),
  ];
  t.deepEqual(
    migrationsOf(vm, all).map((m) => m.metadata.name),
    ["a"],
  );
});

test("summarize: the one in flight, and the one that finished last", (t) => {
  const s = summarize([
    done("old", "Succeeded", "2026-01-01T00:00:00Z"),
    migration("now", { phase: "Transferring" }),
    done("newer", "Failed", "2026-01-01T00:05:00Z"),
    migration("waiting", { phase: "Pending" }),
  ]);
  t.is(s.inFlight?.metadata.name, "now");
  t.is(s.last?.metadata.name, "newer");
  t.deepEqual(summarize([migration("waiting")]), {});
});

const conditions: [string, UnikernelVMMigration[], string, string][] = [
  ["no migration", [], "False", "NotMigrating"],
  ["a request not admitted yet", [migration("m", { phase: "Pending" })], "False", "NotMigrating"],
  [
    "one transferring",
    [migration("m", { phase: "Transferring", message: "streaming" })],
    "True",
    "MigrationTransferring",
  ],
  ["one switching", [migration("m", { phase: "Switching" })], "True", "MigrationSwitching"],
  ["the last one failed", [done("m", "Failed", "2026-01-01T00:00:00Z")], "False", "MigrationFailed"],
  ["the last one succeeded", [done("m", "Succeeded", "2026-01-01T00:00:00Z")], "False", "Migrated"],
];
for (const [name, ms, status, reason] of conditions) {
  test(`Migrating: ${name} -> ${status}/${reason}`, (t) => {
    const c = migratingCondition(summarize(ms));
    t.deepEqual([c.status, c.reason], [status, reason]);
    t.true(c.message.length > 0);
  });
}

test("computeStatus derives Migrating and lastMigration from the VM's migrations", (t) => {
  const failed = done("m2", "Failed", "2026-01-01T00:02:00Z", {
    message: "TargetOutOfMemory: node xen-b has 0Mi",
  });
  const s = computeStatus(
    {
      vm,
      xenNodeCount: 2,
      migrations: summarize([
        done("m1", "Succeeded", "2026-01-01T00:01:00Z", { downtimeMilliseconds: 35 }),
        failed,
      ]),
    },
    T0,
  );
  const c = findCondition(s.conditions, "Migrating")!;
  t.deepEqual([c.status, c.reason], ["False", "MigrationFailed"]);
  t.regex(c.message, /m2 failed: TargetOutOfMemory/);
  t.deepEqual(s.lastMigration, {
    name: "m2",
    sourceNode: "xen-a",
    targetNode: "xen-b",
    phase: "Failed",
    completionTime: "2026-01-01T00:02:00Z",
  });
  t.deepEqual(
    lastMigrationOf(
      summarize([done("m1", "Succeeded", "2026-01-01T00:01:00Z", { downtimeMilliseconds: 35 })]),
    )?.downtimeMilliseconds,
    35,
  );
  const inFlight = computeStatus(
    { vm, xenNodeCount: 2, migrations: summarize([migration("m3", { phase: "Scheduling" })]) },
    T0,
  );
  t.is(findCondition(inFlight.conditions, "Migrating")!.status, "True");
});

test("currentPod: podName(vm) first, else the live pod with the same domain hash (an adopted target)", (t) => {
  const named = pod("web-h1", "h1");
  const adopted = pod("web-h1-abcde", "h1");
  t.is(currentPod([adopted, named], "web-h1", "h1"), named);
  t.is(currentPod([adopted], "web-h1", "h1"), adopted);
  // The source pod being deleted while the adopted target runs: the live one is current.
  t.is(currentPod([pod("web-h1", "h1", true), adopted], "web-h1", "h1"), adopted);
  // Only a pod being deleted: it is still the current one (its replacement waits for it).
  const going = pod("web-h1", "h1", true);
  t.is(currentPod([going], "web-h1", "h1"), going);
  // A pod of another spec is not current.
  t.is(currentPod([pod("web-h0-abcde", "h0")], "web-h1", "h1"), undefined);
});

test("migrationHoldsPods: while switching, and until the adopted target shows in the cache", (t) => {
  const target = "web-h1-abcde";
  t.true(migrationHoldsPods(summarize([migration("m", { phase: "Switching", targetPod: target })]), [], T0));
  t.false(
    migrationHoldsPods(summarize([migration("m", { phase: "Transferring", targetPod: target })]), [], T0),
  );
  const succeeded = summarize([done("m", "Succeeded", "2026-01-01T00:00:00Z", { targetPod: target })]);
  t.true(migrationHoldsPods(succeeded, [pod("web-h1", "h1", true)], new Date(T0.getTime() + 1000)));
  t.false(migrationHoldsPods(succeeded, [pod(target, "h1")], new Date(T0.getTime() + 1000)));
  t.false(migrationHoldsPods(succeeded, [], new Date(T0.getTime() + ADOPTION_GRACE_MS + 1)));
  t.false(
    migrationHoldsPods(
      summarize([done("m", "Failed", "2026-01-01T00:00:00Z", { targetPod: target })]),
      [],
      T0,
    ),
  );
});
