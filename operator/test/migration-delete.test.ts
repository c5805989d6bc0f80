// Deleting a UnikernelVMMigration against a real kube-apiserver, the operator in-process and the test
// playing the kubelets and node agents: before the stream it is cancelled (the VM stays where it
// was), mid-stream the deletion waits for the agents, and a finished one goes at once. No
// kube-controller-manager runs here, so no garbage collector: what the test checks is who owns the
// pods when the migration object is gone (a pod owned by the VM is out of the collector's reach).
import test from "ava";
import { randomBytes } from "node:crypto";
import {
  findCondition,
  LABELS,
  MIGRATION_FINALIZER,
  MIGRATION_KIND,
  MIGRATION_PLURAL,
  type UnikernelVMMigration,
} from "../../api/index.js";
import { isNotFound, type KubeClient, paths } from "../../lib/kube/client.js";
import type { RunningOperator } from "../src/operator.js";
import { createXenNode, reportRunning } from "./kubelet.js";
import { agentCondition, migrationWorld } from "./migration-world.js";
import { until, useOperator } from "./operator-harness.js";

const suffix = randomBytes(3).toString("hex");
const nodeA = `xen-del-a-${suffix}`;
const nodeB = `xen-del-b-${suffix}`;
const operator = useOperator(test, "migration-delete", {
  nodes: [nodeA, nodeB],
  beforeStart: async (c) => {
    await createXenNode(c, nodeA, undefined, "16Gi");
    await createXenNode(c, nodeB, undefined, "16Gi");
  },
});
let client: KubeClient;
let op: RunningOperator;
test.before(async () => ({ client, op } = await operator.ready()));

const world = migrationWorld(operator, () => client);
const {
  ns,
  mPath,
  getM,
  getPod,
  runningVM,
  createMigration,
  phaseIs,
  agentApply,
  events,
  eventsOnce,
  podsOfVM,
} = world;
/** Another controller's finalizer: it keeps a deleted migration readable after ours is released. */
const INSPECT = "test.superfluid.dev/inspect";

const deleteM = (name: string) => client.request({ method: "DELETE", path: mPath(name) });
const gone = (name: string) =>
  until(`${name} gone`, () =>
    getM(name).then(
      () => false,
      (e: unknown) => isNotFound(e),
    ),
  );
const eventOf = (name: string, reason: string) =>
  until(`${name}'s ${reason} event`, async () => (await events(name)).find((e) => e.reason === reason));

/** Up to Transferring: the target pod runs its receiving container and the target agent listens. */
async function transferring(name: string): Promise<UnikernelVMMigration> {
  const preparing = await phaseIs(name, "TargetPreparing");
  const target = (await getPod(preparing.status!.targetPod!))!;
  await reportRunning(client, target, { ip: "10.244.2.7", domainId: 3, bootMs: 0 });
  await agentApply(name, nodeB, {
    targetEndpoint: "10.0.0.12:7443",
    conditions: [agentCondition("TargetReady", "True", "Listening")],
  });
  return phaseIs(name, "Transferring");
}

test.serial(
  "deleted before the transfer: Cancelled, the target pod goes, the VM stays on its source pod",
  async (t) => {
    t.timeout(90_000);
    const source = await runningVM("stay", nodeA);

    // As a user does it: `kubectl superfluid migrate --wait`, then `kubectl delete uvmm` meanwhile.
    const { m, exit: plugin, output } = await world.pluginMigrate("stay", nodeB);
    const name = m.metadata.name!;
    const preparing = await phaseIs(name, "TargetPreparing");
    t.deepEqual(preparing.metadata.finalizers, [MIGRATION_FINALIZER]);
    const target = (await getPod(preparing.status!.targetPod!))!;
    t.like(target.metadata!.ownerReferences, [{ kind: MIGRATION_KIND, uid: m.metadata.uid }]);

    await deleteM(name);
    await gone(name);
    const cancelled = await eventOf(name, "Cancelled");
    t.is(cancelled.type, "Warning");
    t.regex(cancelled.message, /deleted by the user before the transfer started \(phase TargetPreparing\)/);
    await until("target pod gone", async () => (await getPod(target.metadata!.name!)) === undefined);
    const still = (await getPod(source.metadata!.name!))!;
    t.is(still.metadata!.uid, source.metadata!.uid);
    t.falsy(still.metadata!.deletionTimestamp);
    t.is(still.metadata!.labels![LABELS.vm], "stay");
    t.is((await operator.getVM("stay")).status?.nodeName, nodeA);
    t.is(await plugin, 1);
    t.regex(output.join(""), /was deleted \(last phase seen: \w+\)|migration failed \(Cancelled\)/);

    // Held by another finalizer too, the cancelled migration can be read: Failed, reason Cancelled.
    await client.request({
      method: "POST",
      path: paths.custom(MIGRATION_PLURAL, ns()),
      body: {
        apiVersion: m.apiVersion,
        kind: MIGRATION_KIND,
        metadata: { name: "held", finalizers: [INSPECT] },
        spec: { vmName: "stay", targetNode: nodeB },
      },
    });
    const heldTarget = (await phaseIs("held", "TargetPreparing")).status!.targetPod!;
    await deleteM("held");
    const failed = await until("held Failed without our finalizer", async () => {
      const h = await getM("held");
      return h.status?.phase === "Failed" && !h.metadata.finalizers?.includes(MIGRATION_FINALIZER) && h;
    });
    t.deepEqual(failed.metadata.finalizers, [INSPECT]);
    t.like(findCondition(failed.status?.conditions, "Succeeded"), { status: "False", reason: "Cancelled" });
    t.regex(failed.status!.message!, /deleted by the user before the transfer started.*stays on xen-del-a/);
    await until("held's target pod gone", async () => (await getPod(heldTarget)) === undefined);
    await client.request({
      method: "PATCH",
      path: mPath("held"),
      body: { metadata: { finalizers: null } },
      contentType: "application/merge-patch+json",
    });
    await gone("held");
    t.is((await getPod(source.metadata!.name!))?.metadata?.uid, source.metadata!.uid);
  },
);

test.serial(
  "deleted mid-transfer: the deletion waits for the agents; after Succeeded the target pod is the VM's",
  async (t) => {
    t.timeout(90_000);
    const source = await runningVM("busy", nodeA);
    const vm = await operator.getVM("busy");
    const m = await createMigration("mid", "busy", nodeB);
    const during = await transferring("mid");
    const targetName = during.status!.targetPod!;

    await deleteM("mid");
    const deferred = await eventOf("mid", "DeletionDeferred");
    t.is(deferred.type, "Warning");
    t.regex(deferred.message, /deletion waits for the transfer to end \(phase Transferring/);
    // The operator looked at the deleted object and left it, its target pod and the stream alone.
    const waiting = await getM("mid");
    t.truthy(waiting.metadata.deletionTimestamp);
    t.deepEqual(waiting.metadata.finalizers, [MIGRATION_FINALIZER]);
    t.is(waiting.status?.phase, "Transferring");
    const target = (await getPod(targetName))!;
    t.falsy(target.metadata!.deletionTimestamp);
    t.like(target.metadata!.ownerReferences, [{ kind: MIGRATION_KIND, uid: m.metadata.uid }]);

    // The agents finish the move: the domain runs on the target, the source confirms.
    await agentApply("mid", nodeB, {
      targetEndpoint: "10.0.0.12:7443",
      conditions: [
        agentCondition("TargetReady", "True", "Listening"),
        agentCondition("TargetRunning", "True", "Unpaused"),
      ],
    });
    await agentApply("mid", nodeA, {
      downtimeMilliseconds: 20,
      conditions: [agentCondition("Transferred", "True", "Transferred")],
    });
    await gone("mid");
    const mid = await eventsOnce("mid", (es) => es.some((e) => e.reason === "Succeeded"));
    t.true(mid.some((e) => e.reason === "Succeeded"));
    t.is(mid.filter((e) => e.reason === "DeletionDeferred").length, 1);

    // The pod that runs the VM now is the VM's, not the deleted migration's: no collector can take it.
    const adopted = (await getPod(targetName))!;
    t.is(adopted.metadata!.uid, target.metadata!.uid);
    t.falsy(adopted.metadata!.deletionTimestamp);
    t.is(adopted.metadata!.labels![LABELS.vm], "busy");
    t.deepEqual(
      adopted.metadata!.ownerReferences!.map((r) => [r.kind, r.uid]),
      [["UnikernelVM", vm.metadata.uid]],
    );
    await until("source pod gone", async () => (await getPod(source.metadata!.name!)) === undefined);
    const moved = await until("VM on the target pod", async () => {
      const v = await operator.getVM("busy");
      return v.status?.podName === targetName && v;
    });
    t.is(moved.status?.nodeName, nodeB);
    // The migration vanished right after its success: the VM controller still made no second pod.
    await op.vms.queue.idle();
    t.deepEqual(
      (await podsOfVM("busy")).map((p) => p.metadata!.name),
      [targetName],
    );
  },
);

test.serial("a finished migration carries no finalizer and goes at once", async (t) => {
  t.timeout(60_000);
  await createMigration("ghost", "no-such-vm");
  const failed = await phaseIs("ghost", "Failed");
  t.is(findCondition(failed.status?.conditions, "Succeeded")?.reason, "VMNotFound");
  t.falsy(failed.metadata.finalizers?.length);
  await deleteM("ghost");
  // No finalizer to wait on: the apiserver removes it in the delete call itself.
  t.true(
    isNotFound(
      await getM("ghost").then(
        () => undefined,
        (e: unknown) => e,
      ),
    ),
  );
});

test.serial(
  "deleted mid-transfer and then its VM: it fails as VMDeleted and releases, so nothing is held up",
  async (t) => {
    t.timeout(90_000);
    const source = await runningVM("doomed", nodeA);
    await createMigration("orphaned", "doomed", nodeB);
    const during = await transferring("orphaned");
    await deleteM("orphaned");
    await eventOf("orphaned", "DeletionDeferred");
    await client.request({ method: "DELETE", path: operator.vmPath("doomed") });
    await gone("orphaned");
    const reasons = (await eventsOnce("orphaned", (es) => es.some((e) => e.reason === "VMDeleted"))).map(
      (e) => e.reason,
    );
    t.true(reasons.includes("VMDeleted"), reasons.join(","));
    await until("target pod gone", async () => (await getPod(during.status!.targetPod!)) === undefined);
    await until("source pod gone", async () => (await getPod(source.metadata!.name!)) === undefined);
    await until("VM gone", () =>
      operator.getVM("doomed").then(
        () => false,
        (e: unknown) => isNotFound(e),
      ),
    );
    t.pass();
  },
);
