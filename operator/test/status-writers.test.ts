// One writer per status field, against the real apiserver: the operator owns phase and its
// conditions (server-side apply under its field manager); the node agent owns Paused and Suspended,
// domainId and domainState (server-side apply under its own). With the kubelet silent (node NotReady, pod status frozen) the
// agent pauses the VM: the operator derives phase Paused from the agent's condition, and the status
// does not flap, nor does either write erase the other's.
import test from "ava";
import { randomBytes } from "node:crypto";
import {
  API_VERSION,
  FIELD_MANAGER,
  findCondition,
  LABELS,
  nodeAgentFieldManager,
  UNIKERNELVM_KIND,
  type UnikernelVM,
} from "../../api/index.js";
import type { KubeClient } from "../../lib/kube/client.js";
import { bind, createXenNode, listPods, reportRunning } from "./kubelet.js";
import { until, useOperator } from "./operator-harness.js";

const node = `xen-${randomBytes(3).toString("hex")}`;
const AGENT = nodeAgentFieldManager(node);
const operator = useOperator(test, "writers", { nodes: [node] });
let client: KubeClient;
test.before(async () => ({ client } = await operator.ready()));

/** What the node agent writes: its conditions and the domain's id and state, under its own field manager. */
function agentWrites(name: string, paused: boolean) {
  const ns = operator.cluster().namespace;
  const c = (type: string, status: string, reason: string) => ({
    type,
    status,
    reason,
    message: `test agent: ${reason}`,
    lastTransitionTime: new Date().toISOString().replace(/\.\d{3}Z$/, "Z"),
  });
  return client.apply<UnikernelVM>(
    operator.vmPath(name),
    {
      apiVersion: API_VERSION,
      kind: UNIKERNELVM_KIND,
      metadata: { name, namespace: ns },
      status: {
        domainId: 3,
        domainState: paused ? "paused" : "running",
        conditions: [
          paused ? c("Paused", "True", "Paused") : c("Paused", "False", "NotPaused"),
          c("Suspended", "False", "NotSuspended"),
        ],
      },
    },
    AGENT,
    "status",
  );
}

/** Which manager owns which status field, from managedFields. */
function owners(
  vm: UnikernelVM & {
    metadata: { managedFields?: { manager?: string; subresource?: string; fieldsV1?: unknown }[] };
  },
) {
  const of = (needle: string) =>
    (vm.metadata.managedFields ?? [])
      .filter((f) => f.subresource === "status" && JSON.stringify(f.fieldsV1 ?? {}).includes(needle))
      .map((f) => f.manager);
  return {
    phase: of('"f:phase"'),
    domainId: of('"f:domainId"'),
    domainState: of('"f:domainState"'),
    paused: of('{\\"type\\":\\"Paused\\"}'),
    ready: of('{\\"type\\":\\"Ready\\"}'),
  };
}

test("the kubelet silent, the agent pauses: phase Paused from the agent's condition, no flapping, no field with two writers", async (t) => {
  await createXenNode(client, node);
  await operator.applyVM("gamma", {});
  const [pod] = await until("gamma's pod", async () => {
    const pods = await listPods(client, operator.cluster().namespace, `${LABELS.vm}=gamma`);
    return pods.length === 1 && pods;
  });
  await bind(client, pod!, node);
  await reportRunning(client, pod!, { ip: "10.244.0.9", domainId: 3, bootMs: 20 });
  await agentWrites("gamma", false);
  await until("Running", async () => (await operator.getVM("gamma")).status?.phase === "Running");

  // The kubelet stops posting: the node goes NotReady, the pod's status stays as it was.
  await client.request({
    method: "PATCH",
    path: `/api/v1/nodes/${node}/status`,
    contentType: "application/merge-patch+json",
    body: {
      status: {
        conditions: [
          {
            type: "Ready",
            status: "Unknown",
            reason: "NodeStatusUnknown",
            message: "Kubelet stopped posting node status.",
          },
        ],
      },
    },
  });
  await until(
    "Ready=False NodeNotReady",
    async () =>
      findCondition((await operator.getVM("gamma")).status?.conditions, "Ready")?.reason === "NodeNotReady",
  );
  t.is((await operator.getVM("gamma")).status?.phase, "Running");

  await agentWrites("gamma", true);
  await until("phase Paused", async () => (await operator.getVM("gamma")).status?.phase === "Paused");
  // No flapping: sampled for three seconds, the phase stays, the agent's condition stays.
  const seen = new Set<string>();
  for (let i = 0; i < 30; i++) {
    const vm = await operator.getVM("gamma");
    seen.add(`${vm.status?.phase}/${findCondition(vm.status?.conditions, "Paused")?.status}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  t.deepEqual([...seen], ["Paused/True"]);

  const vm = await client.request<Parameters<typeof owners>[0]>({
    method: "GET",
    path: operator.vmPath("gamma"),
  });
  const o = owners(vm);
  t.deepEqual(o.phase, [FIELD_MANAGER], "phase has one writer: the operator");
  t.deepEqual(o.paused, [AGENT], "Paused has one writer: the agent");
  t.deepEqual(o.domainId, [AGENT], "domainId has one writer: the agent");
  t.deepEqual(o.domainState, [AGENT], "domainState has one writer: the agent");
  t.like(vm.status, { domainId: 3, domainState: "paused" });
  t.deepEqual(o.ready, [FIELD_MANAGER], "Ready has one writer: the operator");
  t.is(findCondition(vm.status?.conditions, "Ready")?.reason, "NodeNotReady");
});
