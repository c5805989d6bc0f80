// The resource model as the scheduler sees it, against a real kube-apiserver with the chart's
// RuntimeClass, the real kube-scheduler and the operator: a Xen node (a Node object; no kubelet is
// needed to be scheduled onto) with 1 CPU and 48 MiB of guest memory takes three 16 MiB VMs, not one
// (the old model asked a whole CPU per vCPU), and the fourth waits for guest memory, not dom0's.
import test from "ava";
import type { V1Pod } from "@kubernetes/client-node";
import { setTimeout as sleep } from "node:timers/promises";
import { LABELS, RESOURCES } from "../../api/index.js";
import { paths } from "../../lib/kube/client.js";
import { type ControlPlane, startControlPlane } from "../harness/control-plane.js";
import { operatorBed } from "./operator-bed.js";
import { XEN_TAINT } from "./kubelet.js";

let cp: ControlPlane | undefined;
test.after.always(async () => {
  await cp?.stop();
});

test("the scheduler places VM pods by guest memory and a CPU share, with the RuntimeClass overhead", async (t) => {
  t.timeout(5 * 60_000);
  cp = await startControlPlane();
  await cp.startScheduler();
  const { client, createVM } = await operatorBed(t, cp, { resources: { cpuAllocationRatio: 100 } });

  const node = "xen-sched";
  await client.request({
    method: "POST",
    path: paths.nodes(),
    body: {
      apiVersion: "v1",
      kind: "Node",
      metadata: { name: node, labels: { [LABELS.xenNode]: "true", "kubernetes.io/hostname": node } },
      spec: { taints: [XEN_TAINT] },
    },
  });
  // What the kubelet (cpu, memory, pods) and the node agent (guest memory) would report.
  const capacity = { cpu: "1", memory: "910Mi", pods: "1024", [RESOURCES.guestMemoryMiB]: "48" };
  await client.request({
    method: "PATCH",
    path: `${paths.nodes()}/${node}/status`,
    body: {
      status: {
        capacity,
        allocatable: capacity,
        conditions: [
          {
            type: "Ready",
            status: "True",
            reason: "KubeletReady",
            message: "ready",
            lastHeartbeatTime: new Date().toISOString().replace(/\.\d{3}Z$/, "Z"),
            lastTransitionTime: new Date().toISOString().replace(/\.\d{3}Z$/, "Z"),
          },
        ],
      },
    },
    contentType: "application/merge-patch+json",
  });
  // The apiserver taints a new Node not-ready (TaintNodesByCondition); the node lifecycle controller
  // would lift it once Ready. None runs here: lift it as it would.
  await client.request({
    method: "PATCH",
    path: `${paths.nodes()}/${node}`,
    body: { spec: { taints: [XEN_TAINT] } },
    contentType: "application/merge-patch+json",
  });

  for (const name of ["v1", "v2", "v3", "v4"])
    await createVM(name, { image: "registry.test/hello:1", memory: "16Mi", vcpus: 2 });
  const pods = async () =>
    (
      await client.request<{ items: V1Pod[] }>({
        method: "GET",
        path: paths.pods("default"),
        query: { labelSelector: LABELS.vm },
      })
    ).items;
  const deadline = Date.now() + 120_000;
  let list: V1Pod[] = [];
  for (;;) {
    list = await pods();
    const bound = list.filter((p) => p.spec?.nodeName === node).length;
    const unschedulable = list.filter((p) =>
      p.status?.conditions?.some((c) => c.type === "PodScheduled" && c.reason === "Unschedulable"),
    );
    if (list.length === 4 && bound === 3 && unschedulable.length === 1) break;
    if (Date.now() > deadline)
      throw new Error(
        `pods: ${JSON.stringify(list.map((p) => [p.metadata?.name, p.spec?.nodeName, p.status?.conditions]))}\n${cp.logs(20)}`,
      );
    await sleep(250);
  }
  for (const p of list) {
    const c = p.spec!.containers[0]!;
    t.deepEqual(c.resources?.requests, { cpu: "20m", memory: "0", [RESOURCES.guestMemoryMiB]: "16" });
    t.deepEqual(c.resources?.limits, { memory: "16Mi", [RESOURCES.guestMemoryMiB]: "16" });
    // The chart's RuntimeClass adds the dom0 cost per VM (its admission plugin, at creation).
    t.deepEqual(p.spec?.overhead, { cpu: "1m", memory: "1Mi" });
  }
  const waiting = list.find((p) => !p.spec?.nodeName)!;
  const why = waiting.status!.conditions!.find((c) => c.type === "PodScheduled")!.message ?? "";
  t.log(`the fourth VM's pod: ${why}`);
  t.regex(why, new RegExp(`Insufficient ${RESOURCES.guestMemoryMiB.replace(/[./]/g, "\\$&")}`));
  t.notRegex(why, /Insufficient (cpu|memory)\b/);
});
