// The migration controller against a real kube-apiserver: the operator runs in-process; the test
// plays the nodes' part as the kubelets and node agents would (pod status, the agents' migration
// conditions applied with their own field managers) and checks the state of the world.
import test from "ava";
import { randomBytes } from "node:crypto";
import { ANNOTATIONS, findCondition, LABELS, MIGRATION_KIND, RESOURCES } from "../../api/index.js";
import { podName } from "../src/desired.js";
import { FAILPOINTS_ENV, failpointsFired, MIGRATION_FAILPOINTS as FP } from "../../lib/failpoints.js";
import { isNotFound, type KubeClient } from "../../lib/kube/client.js";
import { type RunningOperator, startOperator } from "../src/operator.js";
import { main as kubectlSuperfluid } from "../../tools/kubectl-superfluid.js";
import { createXenNode, listPods, reportRunning } from "./kubelet.js";
import { agentCondition, migrationWorld } from "./migration-world.js";
import { until, useOperator } from "./operator-harness.js";

const suffix = randomBytes(3).toString("hex");
// Other test files add Xen nodes of 8Gi to the shared apiserver: ours are bigger, so that a
// migration without a target picks ours.
const nodeA = `xen-mig-a-${suffix}`; // 48Gi
const nodeB = `xen-mig-b-${suffix}`; // 32Gi
const tiny = `xen-mig-tiny-${suffix}`; // 16Mi: nothing fits
const plain = `plain-mig-${suffix}`; // no Xen label
const operator = useOperator(test, "migration", {
  nodes: [nodeA, nodeB, tiny, plain],
  beforeStart: async (c) => {
    await createXenNode(c, nodeA, undefined, "48Gi");
    await createXenNode(c, nodeB, undefined, "32Gi");
    await createXenNode(c, tiny, undefined, "16Mi");
    await createXenNode(c, plain, {}, "64Gi");
  },
});
const cluster = operator.cluster;
let client: KubeClient;
let op: RunningOperator;
test.before(async () => ({ client, op } = await operator.ready()));

const { vmPath, applyVM, getVM } = operator;
const {
  ns,
  getM,
  getPod,
  runningVM,
  createMigration,
  phaseIs,
  agentApply,
  events,
  eventsOnce,
  podsOfVM,
  pluginMigrate,
} = migrationWorld(operator, () => client);

/** Reconciles the migration controller has finished so far, from its metrics. */
async function migrationReconciles(): Promise<number> {
  const text = await op.metrics.registry.metrics();
  const counts = text.matchAll(/superfluid_reconcile_total\{controller="migration",outcome="\w+"\} (\d+)/g);
  return [...counts].reduce((sum, m) => sum + Number(m[1]), 0);
}
/**
 * Makes a change and waits until the migration controller has reconciled since, then until the VM
 * controller is idle. (The migration queue itself is never idle while a deadline timer is armed.)
 */
async function settleAfter(change: () => Promise<unknown>): Promise<void> {
  const before = await migrationReconciles();
  await change();
  await until("the operator reconciled the change", async () => (await migrationReconciles()) > before);
  await op.vms.queue.idle();
}

test.serial(
  "a live migration driven through the API: target pod, phases, switch to the target pod",
  async (t) => {
    t.timeout(120_000);
    const source = await runningVM("web", nodeA, { ports: [{ containerPort: 8080 }], service: {} });
    const vm = await getVM("web");
    // kubectl superfluid migrate --wait, as a user runs it, while the test plays the nodes.
    const { m, exit: plugin, output } = await pluginMigrate("web", nodeB);
    const name = m.metadata.name!;
    const preparing = await phaseIs(name, "TargetPreparing");
    t.like(preparing.status, { sourceNode: nodeA, targetNode: nodeB, sourcePod: source.metadata!.name });
    t.truthy(preparing.status?.startTime);

    // The target pod: on the chosen node, marked for the shim, owned by the migration, invisible to the VM's Service.
    const target = (await getPod(preparing.status!.targetPod!))!;
    t.is(target.metadata!.name, `${podName(vm)}-${m.metadata.uid!.replace(/-/g, "").slice(0, 5)}`);
    t.is(target.spec!.nodeName, nodeB);
    t.is(target.metadata!.annotations![ANNOTATIONS.migrationTarget], name);
    t.is(target.metadata!.labels![LABELS.migration], name);
    t.is(target.metadata!.labels![LABELS.vm], undefined);
    t.like(target.metadata!.ownerReferences, [
      { kind: MIGRATION_KIND, name, uid: m.metadata.uid, controller: true },
    ]);
    t.is(target.spec!.containers[0]!.resources!.requests![RESOURCES.guestMemoryMiB], "32");
    t.is(target.spec!.containers[0]!.resources!.limits!.memory, "32Mi");
    const migrating = await until("VM Migrating=True", async () => {
      const c = findCondition((await getVM("web")).status?.conditions, "Migrating");
      return c?.status === "True" && c;
    });
    t.regex(migrating.reason, /^Migration(Scheduling|TargetPreparing)$/);

    // Target kubelet starts the container; target agent listens.
    await reportRunning(client, target, { ip: "10.244.2.9", domainId: 3, bootMs: 0 });
    const targetReady = agentCondition("TargetReady", "True", "Listening");
    await agentApply(name, nodeB, {
      targetEndpoint: "10.0.0.12:7443",
      targetCertificateSHA256: "a".repeat(64),
      conditions: [targetReady],
    });
    const transferring = await phaseIs(name, "Transferring");
    t.is(transferring.status?.targetEndpoint, "10.0.0.12:7443"); // the agent's fields stay beside ours

    // The stream ends: the target runs the domain, the source agent confirms and destroyed its copy.
    await agentApply(name, nodeB, {
      targetEndpoint: "10.0.0.12:7443",
      targetCertificateSHA256: "a".repeat(64),
      conditions: [targetReady, agentCondition("TargetRunning", "True", "Unpaused")],
    });
    // Succeeded comes with the target running; the source's figures trail it, and `--wait` waits
    // for them instead of printing "?".
    await phaseIs(name, "Succeeded");
    await new Promise((r) => setTimeout(r, 1500));
    t.notRegex(output.join(""), /migrated to/, "the plugin waits for the source's figures");
    await agentApply(name, nodeA, {
      sourceCertificateSHA256: "b".repeat(64),
      transferredBytes: 4_200_000,
      downtimeMilliseconds: 42,
      conditions: [agentCondition("Transferred", "True", "Transferred")],
    });
    const done = await until("the source's figures", async () => {
      const m = await getM(name);
      return m.status?.downtimeMilliseconds !== undefined && m;
    });
    t.like(done.status, {
      targetPod: target.metadata!.name,
      transferredBytes: 4_200_000,
      downtimeMilliseconds: 42,
    });
    t.true(done.status!.totalMilliseconds! >= 0 && !!done.status!.completionTime);
    t.deepEqual(done.status!.conditions!.map((c) => `${c.type}=${c.status}`).sort(), [
      "Succeeded=True",
      "TargetReady=True",
      "TargetRunning=True",
      "Transferred=True",
    ]);
    t.is(await plugin, 0);
    // Finished: the migration-protection finalizer is gone, so deleting it later is immediate.
    await until("the finalizer released", async () => !(await getM(name)).metadata.finalizers?.length);
    t.regex(output.join(""), new RegExp(`migrated to ${nodeB} in \\d+ ms, downtime 42 ms`));

    // The source pod is gone, the target pod is the VM's now, and the VM says so.
    await until("source pod gone", async () => (await getPod(source.metadata!.name!)) === undefined);
    const adopted = (await getPod(target.metadata!.name!))!;
    t.is(adopted.metadata!.labels![LABELS.vm], "web");
    t.is(adopted.metadata!.labels![LABELS.migration], undefined);
    t.is(adopted.metadata!.annotations![ANNOTATIONS.migrationTarget], undefined);
    t.like(adopted.metadata!.ownerReferences, [{ kind: "UnikernelVM", uid: vm.metadata.uid }]);
    const moved = await until("VM on the target", async () => {
      const v = await getVM("web");
      return v.status?.nodeName === nodeB && v.status.podName === adopted.metadata!.name && v;
    });
    t.like(moved.status, {
      phase: "Running",
      ip: "10.244.2.9",
      lastMigration: {
        name,
        sourceNode: nodeA,
        targetNode: nodeB,
        phase: "Succeeded",
        downtimeMilliseconds: 42,
      },
    });
    t.is(findCondition(moved.status?.conditions, "Migrating")?.reason, "Migrated");

    // The VM controller does not make a replacement pod, now or after its re-checks.
    await op.vms.queue.idle();
    await new Promise((r) => setTimeout(r, 2500));
    await op.vms.queue.idle();
    t.deepEqual(
      (await podsOfVM("web")).map((p) => p.metadata!.name),
      [adopted.metadata!.name],
    );
    t.is(await getPod(podName(vm)), undefined);

    const steps = ["Scheduling", "TargetPreparing", "Transferring", "Switching", "Succeeded"];
    const mReasons = (await eventsOnce(name, (es) => steps.every((r) => es.some((e) => e.reason === r)))).map(
      (e) => e.reason,
    );
    for (const r of steps) t.true(mReasons.includes(r), `${r} in ${mReasons.join(",")}`);
    const vmReasons = (
      await eventsOnce(
        "web",
        (es) => es.some((e) => e.reason === "Migrated") && es.some((e) => e.reason.startsWith("Migration")),
      )
    ).map((e) => e.reason);
    t.true(
      vmReasons.includes("Migrated") && vmReasons.some((r) => r.startsWith("Migration")),
      vmReasons.join(","),
    );

    // Succeeded is history: a late agent write does not make the operator rewrite or undo anything.
    const before = findCondition(done.status?.conditions, "Succeeded");
    await settleAfter(() =>
      agentApply(name, nodeA, { conditions: [agentCondition("Transferred", "False", "LateWrite")] }),
    );
    const after = await getM(name);
    t.is(after.status?.phase, "Succeeded");
    t.deepEqual(findCondition(after.status?.conditions, "Succeeded"), before);
    t.truthy(await getPod(adopted.metadata!.name!));

    // The adopted pod is the VM's pod for everything else too: a runPolicy change patches it in place.
    await applyVM("web", {
      memory: "32Mi",
      ports: [{ containerPort: 8080 }],
      service: {},
      runPolicy: "Paused",
    });
    await until(
      "run-policy Paused on the adopted pod",
      async () =>
        (await getPod(adopted.metadata!.name!))?.metadata?.annotations?.[ANNOTATIONS.runPolicy] === "Paused",
    );
    await op.vms.queue.idle();
    t.deepEqual(
      (await podsOfVM("web")).map((p) => p.metadata!.uid),
      [adopted.metadata!.uid],
    );
  },
);

test.serial(
  "Transferred=False fails the migration: the target pod goes, the source pod stays untouched",
  async (t) => {
    t.timeout(60_000);
    const [source] = await podsOfVM("web"); // the pod adopted by the previous migration, on nodeB
    await createMigration("back", "web", nodeA);
    const preparing = await phaseIs("back", "TargetPreparing");
    t.is(preparing.status?.sourceNode, nodeB);
    const target = (await getPod(preparing.status!.targetPod!))!;
    t.is(target.spec!.nodeName, nodeA);
    await reportRunning(client, target, { ip: "10.244.1.9", domainId: 4, bootMs: 0 });
    await agentApply("back", nodeA, {
      targetEndpoint: "10.0.0.11:7443",
      conditions: [agentCondition("TargetReady", "True", "Listening")],
    });
    await phaseIs("back", "Transferring");
    await agentApply("back", nodeB, {
      conditions: [
        agentCondition("Transferred", "False", "StreamBroken", "connection reset by peer; domain resumed"),
      ],
    });
    const failed = await phaseIs("back", "Failed");
    const c = findCondition(failed.status?.conditions, "Succeeded")!;
    t.deepEqual([c.status, c.reason], ["False", "StreamBroken"]);
    t.regex(c.message, /connection reset by peer/);
    t.regex(failed.status!.message!, /connection reset by peer/);
    await until("target pod gone", async () => (await getPod(target.metadata!.name!)) === undefined);
    const still = (await getPod(source!.metadata!.name!))!;
    t.is(still.metadata!.uid, source!.metadata!.uid);
    t.falsy(still.metadata!.deletionTimestamp);
    t.is(still.metadata!.labels![LABELS.vm], "web");
    const vm = await until("VM Migrating=False MigrationFailed", async () => {
      const v = await getVM("web");
      return findCondition(v.status?.conditions, "Migrating")?.reason === "MigrationFailed" && v;
    });
    t.is(vm.status?.nodeName, nodeB);
    t.regex(findCondition(vm.status?.conditions, "Migrating")!.message, /StreamBroken|connection reset/);
    const back = await eventsOnce("back", (es) =>
      es.some((e) => e.type === "Warning" && e.reason === "StreamBroken"),
    );
    t.true(back.some((e) => e.type === "Warning" && e.reason === "StreamBroken"));

    // Failed is history too: a late TargetRunning neither revives it nor brings a target pod back.
    await settleAfter(() =>
      agentApply("back", nodeA, {
        conditions: [
          agentCondition("TargetReady", "True", "Listening"),
          agentCondition("TargetRunning", "True", "Late"),
        ],
      }),
    );
    const later = await getM("back");
    t.is(later.status?.phase, "Failed");
    t.deepEqual(findCondition(later.status?.conditions, "Succeeded"), c);
    t.deepEqual(await listPods(client, ns(), `${LABELS.migration}=back`), []);
  },
);

test.serial(
  "requests that cannot go ahead fail at once with a clear reason and an Event, and leave no pod",
  async (t) => {
    t.timeout(60_000);
    const cases: [string, string, string | undefined, string, RegExp][] = [
      [
        "to-tiny",
        "web",
        tiny,
        "TargetOutOfMemory",
        /16Mi.*needs 32Mi|0Mi of memory free.*needs 32Mi|needs 32Mi/,
      ],
      ["to-plain", "web", plain, "TargetNotXenNode", /superfluid\.dev\/xen=true/],
      ["to-same", "web", nodeB, "SameNode", new RegExp(`already runs on ${nodeB}`)],
      ["to-nowhere", "web", "no-such-node", "TargetNodeNotFound", /does not exist/],
      ["ghost", "no-such-vm", undefined, "VMNotFound", /no-such-vm does not exist/],
    ];
    for (const [name, vmName, to] of cases) await createMigration(name, vmName, to);
    for (const [name, , , reason, message] of cases) {
      const failed = await phaseIs(name, "Failed");
      const c = findCondition(failed.status?.conditions, "Succeeded")!;
      t.deepEqual([c.status, c.reason], ["False", reason], name);
      t.regex(c.message, message, name);
      await until(`${name}'s Warning event`, async () =>
        (await events(name)).some((e) => e.type === "Warning" && e.reason === reason),
      );
      t.deepEqual(await listPods(client, ns(), `${LABELS.migration}=${name}`), [], name);
    }
    // The plugin's --wait says the same and exits 1.
    const output: string[] = [];
    const code = await kubectlSuperfluid(
      ["migrate", "web", "--to", tiny, "--wait", "--kubeconfig", cluster().cp.kubeconfigPath, "-n", ns()],
      (s) => output.push(s),
    );
    t.is(code, 1);
    t.regex(output.join(""), /migration failed \(TargetOutOfMemory\): node xen-mig-tiny-\w+ has 16Mi/);
    // The VM did not move.
    t.is((await getVM("web")).status?.nodeName, nodeB);
  },
);

test.serial(
  "without a target the roomiest Xen node is picked; a second request is refused; deleting the VM fails it",
  async (t) => {
    t.timeout(60_000);
    const source = await runningVM("roamer", nodeB);
    await createMigration("roam", "roamer");
    const preparing = await phaseIs("roam", "TargetPreparing");
    t.is(preparing.status?.targetNode, nodeA); // 48Gi: more free memory than nodeB and the others' 8Gi nodes
    t.regex(findCondition(preparing.status?.conditions, "Succeeded")!.message, /created on/);

    await createMigration("roam-again", "roamer", nodeA);
    const refused = await phaseIs("roam-again", "Failed");
    t.is(findCondition(refused.status?.conditions, "Succeeded")?.reason, "AlreadyMigrating");

    await client.request({ method: "DELETE", path: vmPath("roamer") });
    const failed = await phaseIs("roam", "Failed");
    t.is(findCondition(failed.status?.conditions, "Succeeded")?.reason, "VMDeleted");
    await until("target pod gone", async () => (await getPod(preparing.status!.targetPod!)) === undefined);
    await until("source pod gone", async () => (await getPod(source.metadata!.name!)) === undefined);
    await until("VM gone", () =>
      getVM("roamer").then(
        () => false,
        (e: unknown) => isNotFound(e),
      ),
    );
    t.pass();
  },
);

test.serial(
  "past the commit the operator never fails the migration (the target pod holds the VM's copy); killed at the switch, it carries on",
  async (t) => {
    t.timeout(90_000);
    await runningVM("committed", nodeA);
    await createMigration("commit", "committed", nodeB);
    const preparing = await phaseIs("commit", "TargetPreparing");
    const target = (await getPod(preparing.status!.targetPod!))!;
    await reportRunning(client, target, { ip: "10.244.2.30", domainId: 6, bootMs: 0 });
    const ready = agentCondition("TargetReady", "True", "Listening");
    const restored = agentCondition("TargetRestored", "True", "RestoredPaused");
    await agentApply("commit", nodeB, { targetEndpoint: "10.0.0.12:7445", conditions: [ready] });
    await phaseIs("commit", "Transferring");
    // The source agent recorded the commit; then an old-style Transferred=False, and the target's
    // unpause failing: before the commit point each of these failed the migration and deleted the
    // target pod, the only copy that may run.
    await agentApply("commit", nodeA, {
      conditions: [
        agentCondition("Committed", "True", "Committed"),
        agentCondition("Transferred", "False", "StreamFailed"),
      ],
    });
    await settleAfter(() =>
      agentApply("commit", nodeB, {
        targetEndpoint: "10.0.0.12:7445",
        conditions: [ready, restored, agentCondition("TargetRunning", "False", "UnpauseFailed")],
      }),
    );
    await new Promise((r) => setTimeout(r, 1500));
    t.is((await getM("commit")).status?.phase, "Transferring", "not Failed");
    t.truthy(await getPod(target.metadata!.name!), "the target pod is kept");

    // The operator dies right where it acts on the commit, once; the reconcile after it finishes the job.
    process.env[FAILPOINTS_ENV] = `${FP.operatorAfterCommit}=crash*1`;
    t.teardown(() => delete process.env[FAILPOINTS_ENV]);
    await agentApply("commit", nodeB, {
      targetEndpoint: "10.0.0.12:7445",
      conditions: [ready, restored, agentCondition("TargetRunning", "True", "Running")],
    });
    await phaseIs("commit", "Succeeded");
    t.is(failpointsFired().get(FP.operatorAfterCommit), 1, "the failpoint fired");
    // The VM's status is the VM controller's to write, after the migration's: read it once it moved
    // (it never does if the operator stopped at the crash), not in a race with that write.
    const moved = await until("the VM's status names the target node", async () => {
      const vm = await getVM("committed");
      return vm.status?.nodeName === nodeB && vm;
    });
    t.is(moved.status?.nodeName, nodeB);
  },
);

test.serial("an operator restarted mid-migration carries on from what the API says", async (t) => {
  t.timeout(90_000);
  const source = await runningVM("mover", nodeA);
  await createMigration("move", "mover", nodeB);
  const preparing = await phaseIs("move", "TargetPreparing");
  const target = (await getPod(preparing.status!.targetPod!))!;
  // The operator goes away; meanwhile the target's kubelet and agent get ready.
  await op.stop();
  await reportRunning(client, target, { ip: "10.244.2.20", domainId: 5, bootMs: 0 });
  await agentApply("move", nodeB, {
    targetEndpoint: "10.0.0.12:7444",
    conditions: [agentCondition("TargetReady", "True", "Listening")],
  });
  // The one that takes over (as after a leader change) has only the API to go by.
  const successor = await startOperator({ kubeConfig: cluster().cp.kubeConfig, namespace: ns(), workers: 4 });
  t.teardown(() => successor.stop());
  await successor.leading;
  await phaseIs("move", "Transferring");
  await agentApply("move", nodeA, {
    downtimeMilliseconds: 12,
    conditions: [agentCondition("Transferred", "True", "Transferred")],
  });
  await phaseIs("move", "Succeeded");
  // The same target pod (a restarted operator applies the same name, never a second pod).
  const adopted = await until("the adopted target pod", async () => {
    const pods = await podsOfVM("mover");
    return pods.length === 1 && pods[0]!.metadata!.name === target.metadata!.name && pods[0]!;
  });
  t.is(adopted.metadata!.uid, target.metadata!.uid);
  await until("source pod gone", async () => (await getPod(source.metadata!.name!)) === undefined);
  t.is((await getVM("mover")).status?.nodeName, nodeB);
});
