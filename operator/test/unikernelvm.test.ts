// The UnikernelVM reconciler against a real kube-apiserver: the operator runs in-process, the test
// plays the kubelet (bindings, pod status, final pod removal) and checks the state of the world.
import test from "ava";
import type { V1Pod, V1Service } from "@kubernetes/client-node";
import { randomBytes } from "node:crypto";
import {
  API_VERSION,
  FINALIZER,
  findCondition,
  LABELS,
  MIGRATION_KIND,
  MIGRATION_PLURAL,
  parseSandboxAnnotations,
  RESOURCES,
  RUNTIME_CLASS,
  type UnikernelVMMigration,
} from "../../api/index.js";
import { podName } from "../src/desired.js";
import { isNotFound, type KubeClient, paths } from "../../lib/kube/client.js";
import type { RunningOperator } from "../src/operator.js";
import { bind, createXenNode, listPods, reportRunning, reportWaiting } from "./kubelet.js";
import { until, useOperator } from "./operator-harness.js";

const node = `xen-${randomBytes(3).toString("hex")}`;
const operator = useOperator(test, "operator", { nodes: [node] });
const cluster = operator.cluster;
let client: KubeClient;
let op: RunningOperator;
test.before(async () => ({ client, op } = await operator.ready()));

const { vmPath, applyVM, getVM } = operator;
const vmPods = async (name: string) =>
  (await listPods(client, cluster().namespace, `${LABELS.vm}=${name}`)).filter(
    (p) => !p.metadata?.deletionTimestamp,
  );

async function condition(name: string, type: string) {
  return findCondition((await getVM(name)).status?.conditions, type);
}

test.serial(
  "a UnikernelVM gets one pod shaped for the shim, a finalizer, and an honest Pending status",
  async (t) => {
    const vm = await applyVM("alpha", {
      memory: "32Mi",
      vcpus: 2,
      args: ["-v"],
      env: [{ name: "MODE", value: "fast" }],
    });
    const [pod] = await until(
      "alpha's pod",
      async () => (await vmPods("alpha")).length === 1 && vmPods("alpha"),
    );
    t.is(pod!.metadata!.name, podName(vm));
    t.is(pod!.spec!.runtimeClassName, RUNTIME_CLASS);
    t.deepEqual(pod!.spec!.nodeSelector, { [LABELS.xenNode]: "true" });
    t.deepEqual(pod!.spec!.containers[0]!.resources, {
      requests: { cpu: "20m", memory: "0", [RESOURCES.guestMemoryMiB]: "32" },
      limits: { memory: "32Mi", [RESOURCES.guestMemoryMiB]: "32" },
    });
    t.is(pod!.metadata!.ownerReferences?.[0]?.uid, vm.metadata.uid);
    t.like(parseSandboxAnnotations(pod!.metadata!.annotations), {
      args: ["-v"],
      env: { MODE: "fast" },
      memoryMiB: 32,
      vcpus: 2,
      runPolicy: "Running",
    });
    const withStatus = await until("alpha's status", async () => {
      const v = await getVM("alpha");
      return v.status?.podName === pod!.metadata!.name && v;
    });
    t.true(withStatus.metadata.finalizers?.includes(FINALIZER));
    t.is(withStatus.status?.phase, "Pending");
    const scheduled = findCondition(withStatus.status?.conditions, "Scheduled")!;
    t.is(scheduled.status, "False");
    t.true(["NoXenNode", "Scheduling"].includes(scheduled.reason), scheduled.reason);
    t.is(scheduled.observedGeneration, withStatus.metadata.generation);
  },
);

test.serial(
  "with the pod bound and running, status follows and kubectl wait --for=condition=Ready returns",
  async (t) => {
    await createXenNode(client, node);
    const [pod] = await vmPods("alpha");
    await bind(client, pod!, node);
    await until("Scheduled=True", async () => (await condition("alpha", "Scheduled"))?.status === "True");
    t.is((await getVM("alpha")).status?.phase, "Scheduled");
    const waiter = cluster().kubectl(["wait", "--for=condition=Ready", "--timeout=60s", "uvm/alpha"]);
    await reportRunning(client, pod!, { ip: "10.244.0.7", domainId: 12, bootMs: 41 });
    const waited = await waiter;
    t.is(waited.code, 0, waited.stderr);
    const vm = await getVM("alpha");
    t.like(vm.status, {
      phase: "Running",
      nodeName: node,
      ip: "10.244.0.7",
      domainId: 12,
      bootTimeMilliseconds: 41,
      podName: pod!.metadata!.name,
    });
    // Events are sent after the writes they tell of, asynchronously: wait for both.
    const reasons = await until("the PodCreated and Running events", async () => {
      const events = await client.request<{ items: { reason: string; involvedObject: { name: string } }[] }>({
        method: "GET",
        path: paths.events(cluster().namespace),
      });
      const r = events.items.filter((e) => e.involvedObject.name === "alpha").map((e) => e.reason);
      return r.includes("PodCreated") && r.includes("Running") && r;
    });
    t.true(reasons.includes("PodCreated") && reasons.includes("Running"), reasons.join(","));
  },
);

test.serial("a spec change that needs a new domain replaces the pod; a Service follows the VM", async (t) => {
  const before = (await vmPods("alpha"))[0]!.metadata!.name!;
  const vm = await applyVM("alpha", {
    memory: "64Mi",
    vcpus: 2,
    args: ["-v"],
    env: [{ name: "MODE", value: "fast" }],
    ports: [{ containerPort: 8080 }],
    service: { type: "ClusterIP" },
  });
  const pods = await until("the new pod alone", async () => {
    const p = await vmPods("alpha");
    return p.length === 1 && p[0]!.metadata!.name === podName(vm) && p;
  });
  t.not(pods[0]!.metadata!.name, before);
  t.is(pods[0]!.spec!.containers[0]!.resources!.limits!.memory, "64Mi");
  const svc = await until("the service", () =>
    client
      .request<V1Service>({ method: "GET", path: paths.service(cluster().namespace, "alpha") })
      .catch(() => undefined),
  );
  t.deepEqual(svc.spec!.selector, { [LABELS.vm]: "alpha" });
  t.deepEqual(
    svc.spec!.ports?.map((p) => [p.port, p.protocol]),
    [[8080, "TCP"]],
  );
  // The status write trails the pod swap: wait for a Ready condition about this generation. The old pod
  // still runs until the kubelet (the test) removes it, but it is not this spec's: never Ready.
  const ready = await until("Ready observed for the new generation", async () => {
    const c = await condition("alpha", "Ready");
    return c?.observedGeneration === vm.metadata.generation && c;
  });
  t.is(ready.status, "False", `${ready.reason}: ${ready.message}`);
  // Dropping the service from the spec deletes it.
  await applyVM("alpha", {
    memory: "64Mi",
    vcpus: 2,
    args: ["-v"],
    env: [{ name: "MODE", value: "fast" }],
    ports: [{ containerPort: 8080 }],
  });
  await until("service gone", async () =>
    client.request({ method: "GET", path: paths.service(cluster().namespace, "alpha") }).then(
      () => false,
      (e: unknown) => isNotFound(e),
    ),
  );
  t.pass();
});

test.serial("runPolicy Stopped removes the pod and says Stopped; Running brings it back", async (t) => {
  await applyVM("alpha", { memory: "64Mi", runPolicy: "Stopped" });
  await until(
    "no pods",
    async () =>
      (await vmPods("alpha")).length === 0 &&
      (await listPods(client, cluster().namespace, `${LABELS.vm}=alpha`)).length === 0,
  );
  await until("phase Stopped", async () => (await getVM("alpha")).status?.phase === "Stopped");
  t.is((await condition("alpha", "Ready"))?.reason, "Stopped");
  await applyVM("alpha", { memory: "64Mi", runPolicy: "Running" });
  const pods = await until(
    "a pod again",
    async () => (await vmPods("alpha")).length === 1 && vmPods("alpha"),
  );
  t.is(pods.length, 1);
});

test.serial("restartPolicy Always: a pod that failed (evicted) is replaced by a new one", async (t) => {
  const [pod] = await until(
    "alpha's pod",
    async () => (await vmPods("alpha")).length === 1 && vmPods("alpha"),
  );
  await bind(client, pod!, node);
  await client.request({
    method: "PATCH",
    path: `${paths.pod(cluster().namespace, pod!.metadata!.name!)}/status`,
    contentType: "application/merge-patch+json",
    body: {
      status: { phase: "Failed", reason: "Evicted", message: "The node was low on resource: memory." },
    },
  });
  const replacement = await until("a new pod", async () => {
    const p = await vmPods("alpha");
    return p.length === 1 && p[0]!.metadata!.uid !== pod!.metadata!.uid && p[0];
  });
  // Same spec, same name: a new pod object, not a second pod.
  t.is(replacement.metadata!.name, pod!.metadata!.name);
  // Events go out after the writes they tell of (held while the work queue is busy): wait for it.
  const restart = await until("the Restarting event", async () => {
    const events = await client.request<{
      items: { reason: string; message: string; involvedObject: { name: string } }[];
    }>({
      method: "GET",
      path: paths.events(cluster().namespace),
    });
    return events.items.find((e) => e.involvedObject.name === "alpha" && e.reason === "Restarting");
  });
  t.regex(restart.message, /Evicted/);
});

test.serial(
  "an image that cannot be pulled shows Ready=False with the kubelet's reason and message",
  async (t) => {
    await applyVM("badimage", { image: "registry.local:5000/nope:1" });
    const [pod] = await until(
      "pod",
      async () => (await vmPods("badimage")).length === 1 && vmPods("badimage"),
    );
    await bind(client, pod!, node);
    await reportWaiting(
      client,
      pod!,
      "ImagePullBackOff",
      'Back-off pulling image "registry.local:5000/nope:1"',
    );
    const ready = await until("ImagePullBackOff", async () => {
      const c = await condition("badimage", "Ready");
      return c?.reason === "ImagePullBackOff" && c;
    });
    t.is(ready.status, "False");
    t.regex(ready.message, /nope:1/);
  },
);

test.serial("a spec the schema accepts but the shim would refuse gets InvalidSpec and no pod", async (t) => {
  // Each word passes the CRD; together they are longer than Xen's command line.
  await applyVM("invalid", { args: [`a=${"x".repeat(600)}`, `b=${"y".repeat(600)}`] });
  const ready = await until("InvalidSpec", async () => {
    const c = await condition("invalid", "Ready");
    return c?.reason === "InvalidSpec" && c;
  });
  t.regex(ready.message, /Xen allows 1024/);
  t.is((await getVM("invalid")).status?.phase, "Failed");
  t.is((await vmPods("invalid")).length, 0);
  // Fixing the spec clears it.
  await applyVM("invalid", { env: [{ name: "GREETING", value: "hello" }] });
  await until("a pod", async () => (await vmPods("invalid")).length === 1);
  const cleared = await until("InvalidSpec cleared", async () => {
    const c = await condition("invalid", "Ready");
    return c?.reason !== "InvalidSpec" && c;
  });
  t.is(cleared.status, "False");
});

test.serial(
  "a migration that cannot go ahead fails with a reason and leaves the VM where it is",
  async (t) => {
    // The full migration flow is operator/test/migration.test.ts; here: the VM controller's side of a refusal.
    const ns = cluster().namespace;
    const create = (name: string, vmName: string, targetNode?: string) =>
      client.request({
        method: "POST",
        path: paths.custom(MIGRATION_PLURAL, ns),
        body: {
          apiVersion: API_VERSION,
          kind: MIGRATION_KIND,
          metadata: { name },
          spec: { vmName, ...(targetNode ? { targetNode } : {}) },
        },
      });
    await create("to-nowhere", "no-such-vm");
    await create("move-alpha", "alpha", node);
    const get = (name: string) =>
      client.request<UnikernelVMMigration>({
        method: "GET",
        path: paths.customObject(MIGRATION_PLURAL, ns, name),
      });
    const verdict = (name: string) =>
      until(`${name} Failed`, async () => {
        const m = await get(name);
        return m.status?.phase === "Failed" && findCondition(m.status.conditions, "Succeeded");
      });
    t.is((await verdict("to-nowhere")).reason, "VMNotFound");
    // alpha's pod was replaced by the previous tests and is not bound to a node: nothing to move.
    const notRunning = await verdict("move-alpha");
    t.is(notRunning.reason, "VMNotRunning");
    t.regex(notRunning.message, /only a Running or Paused VM/);
    // The VM is untouched: still one pod, and its Migrating condition tells what happened.
    t.is((await vmPods("alpha")).length, 1);
    const migrating = await until("Migrating=False MigrationFailed", async () => {
      const c = await condition("alpha", "Migrating");
      return c?.reason === "MigrationFailed" && c;
    });
    t.is(migrating.status, "False");
  },
);

test.serial("deleting a VM runs the finalizer: pods and service go, then the VM", async (t) => {
  await applyVM("gone", { ports: [{ containerPort: 80 }], service: {} });
  await until(
    "pod and service",
    async () =>
      (await vmPods("gone")).length === 1 &&
      client.request({ method: "GET", path: paths.service(cluster().namespace, "gone") }).then(
        () => true,
        () => false,
      ),
  );
  // Pods first: the finalizer goes on in the pass after the pod's. Deleted before that, the VM goes
  // at once and the garbage collector takes its pod by the owner reference (the first test checks
  // it); this test is about the finalizer's path.
  await until("the finalizer", async () => (await getVM("gone")).metadata.finalizers?.includes(FINALIZER));
  await client.request({ method: "DELETE", path: vmPath("gone") });
  await until("vm gone", () =>
    getVM("gone").then(
      () => false,
      (e: unknown) => isNotFound(e),
    ),
  );
  t.deepEqual(await listPods(client, cluster().namespace, `${LABELS.vm}=gone`), []);
  const svc = await client
    .request<V1Service>({ method: "GET", path: paths.service(cluster().namespace, "gone") })
    .then(
      () => "exists",
      (e: unknown) => (isNotFound(e) ? "gone" : String(e)),
    );
  t.is(svc, "gone");
});

test.serial("metrics count reconciles and VMs by phase", async (t) => {
  const text = await op.metrics.registry.metrics();
  t.regex(text, /superfluid_reconcile_total\{controller="unikernelvm",outcome="success"\} [1-9]/);
  t.regex(text, /superfluid_reconcile_duration_seconds_count\{controller="unikernelvm"\} [1-9]/);
  const pods: V1Pod[] = await listPods(client, cluster().namespace);
  t.true(pods.length >= 1);
});
