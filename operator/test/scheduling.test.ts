// With the real kube-scheduler: a VM that cannot be placed says why (no Xen node at all, a selector
// no node matches, more memory than any node has), and one that fits is bound to the Xen node.
// A private control plane: a scheduler on the shared one would place other test files' pods.
import test from "ava";
import {
  API_VERSION,
  findCondition,
  UNIKERNELVM_PLURAL,
  type UnikernelVM,
  type UnikernelVMSpec,
} from "../../api/index.js";
import { type ControlPlane, startControlPlane } from "../../e2e/harness/control-plane.js";
import { waitFor } from "../../lib/net.js";
import { KubeClient, paths } from "../../lib/kube/client.js";
import { type RunningOperator, startOperator } from "../src/operator.js";
import { createXenNode, prepareNamespace } from "./kubelet.js";

const NS = "sched";
let cp: ControlPlane;
let client: KubeClient;
let op: RunningOperator;

test.before(async () => {
  cp = await startControlPlane();
  client = new KubeClient(cp.kubeConfig);
  await client.request({ method: "POST", path: "/api/v1/namespaces", body: { metadata: { name: NS } } });
  await prepareNamespace(client, NS);
  await cp.startScheduler();
  op = await startOperator({ kubeConfig: cp.kubeConfig, namespace: NS, workers: 4 });
  await op.leading;
});

test.after.always(async () => {
  await op?.stop();
  client?.close();
  await cp?.stop();
});

const applyVM = (name: string, spec: Partial<UnikernelVMSpec>) =>
  client.apply<UnikernelVM>(
    paths.customObject(UNIKERNELVM_PLURAL, NS, name),
    {
      apiVersion: API_VERSION,
      kind: "UnikernelVM",
      metadata: { name },
      spec: { image: "registry.local:5000/hello:1", ...spec },
    },
    "superfluid-test",
  );

async function scheduledCondition(name: string, want: (reason: string, status: string) => boolean) {
  return waitFor(
    `${name}: Scheduled condition`,
    async () => {
      const vm = await client.request<UnikernelVM>({
        method: "GET",
        path: paths.customObject(UNIKERNELVM_PLURAL, NS, name),
      });
      const c = findCondition(vm.status?.conditions, "Scheduled");
      return c && want(c.reason, c.status) ? { condition: c, vm } : undefined;
    },
    90_000,
    200,
  );
}

test.serial("no Xen node in the cluster: NoXenNode with the scheduler's words", async (t) => {
  await applyVM("early", {});
  const { condition, vm } = await scheduledCondition("early", (r) => r === "NoXenNode");
  t.is(condition.status, "False");
  t.regex(condition.message, /superfluid\.dev\/xen=true/);
  t.is(findCondition(vm.status?.conditions, "Ready")?.reason, "NoXenNode");
});

test.serial(
  "a Xen node joins: the waiting VM is scheduled onto it; impossible placements say why",
  async (t) => {
    await createXenNode(client, "xen-sched-1");
    const { condition, vm } = await scheduledCondition("early", (_r, s) => s === "True");
    t.is(vm.status?.nodeName, "xen-sched-1");
    t.regex(condition.message, /xen-sched-1/);

    await applyVM("elsewhere", { nodeSelector: { zone: "nowhere" } });
    const sel = await scheduledCondition("elsewhere", (r) => r === "Unschedulable");
    t.regex(sel.condition.message, /node affinity\/selector|didn't match/);

    await applyVM("huge", { memory: "60Gi" });
    const mem = await scheduledCondition("huge", (r) => r === "Unschedulable");
    t.regex(mem.condition.message, /Insufficient superfluid\.dev\/guest-memory-mib/);
    t.is(findCondition(mem.vm.status?.conditions, "Ready")?.status, "False");
  },
);
