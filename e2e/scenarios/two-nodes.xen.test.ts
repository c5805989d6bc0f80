// Two emulated Xen nodes in one cluster, each with its own kubelet, shim and kube-proxy, pod subnets
// 10.244.8.0/21 and 10.244.16.0/21 routed to each other over the nodes' shared segment: what live
// migration needs. A user's view: the HTTP unikernel, placed by the scheduler on one node, answers
// through its Service and on its pod IP from the dom0 of the OTHER node.
import test from "ava";
import { join } from "node:path";
import type { UnikernelVM } from "../../api/index.js";
import { REPO_ROOT } from "../../lib/paths.js";
import { eventually, logTiming, useE2ECluster } from "./helpers.js";
import { inCidr } from "../xen-node/pod-network.js";

const scenario = useE2ECluster(test, "two", { nodes: 2 });
const TEST_TIMEOUT_MS = 20 * 60_000;

test.serial("two Ready Xen nodes with their own pod subnets", async (t) => {
  const s = await scenario(t, 5 * 60_000);
  const nodes = JSON.parse(await s.ok(["get", "nodes", "-o", "json"])) as {
    items: Array<{
      metadata: { name: string; labels: Record<string, string> };
      status: { conditions: Array<{ type: string; status: string }> };
    }>;
  };
  const ready = nodes.items
    .filter((n) => n.status.conditions.some((c) => c.type === "Ready" && c.status === "True"))
    .map((n) => n.metadata.name);
  t.deepEqual(ready.sort(), s.cluster.nodes.map((n) => n.xen.name).sort());
  const cidrs = s.cluster.nodes.map((n) => n.xen.podCidr);
  t.is(new Set(cidrs).size, 2, `two distinct pod subnets: ${cidrs.join(", ")}`);
  t.true(
    cidrs.every((c) => c.endsWith("/21")),
    "a /21 per node: room for maxPods 1,024",
  );
  t.true(
    s.cluster.nodes.every((n) => n.kubeProxy !== undefined),
    "kube-proxy runs on both nodes",
  );
});

test.serial(
  "http on one node answers through its Service and its pod IP from the other node's dom0",
  async (t) => {
    const s = await scenario(t, TEST_TIMEOUT_MS);
    const applied = Date.now();
    await s.ok(["apply", "-f", join(REPO_ROOT, "examples", "http.yaml")]);
    await s.ok(["wait", "--for=condition=Ready", "uvm/http", "--timeout=900s"]);
    logTiming(t, "http: kubectl apply -> Ready", Date.now() - applied);

    const vm = JSON.parse(await s.ok(["get", "uvm", "http", "-o", "json"])) as UnikernelVM;
    const host = s.cluster.nodes.find((n) => n.xen.name === vm.status?.nodeName);
    const other = s.cluster.nodes.find((n) => n.xen.name !== vm.status?.nodeName);
    if (!host || !other) return t.fail(`http placed on ${vm.status?.nodeName}, not one of the two nodes`);
    const podIp = vm.status?.ip ?? "";
    t.true(
      inCidr(podIp, host.xen.podCidr),
      `pod IP ${podIp} is in ${host.xen.name}'s subnet ${host.xen.podCidr}`,
    );
    const clusterIp = (await s.ok(["get", "svc", "http", "-o", "jsonpath={.spec.clusterIP}"])).trim();
    t.log(`http on ${host.xen.name} (${podIp}); requests from ${other.xen.name}`);

    // Pod IP first: the route across the segment. Then the ClusterIP: the other node's kube-proxy.
    const get = (url: string) =>
      eventually(
        `GET ${url} from ${other.xen.name}`,
        async () => {
          const r = await other.xen.exec(`curl -sf -m 10 ${url}`);
          return r.code === 0 ? r.stdout : undefined;
        },
        120_000,
        2000,
      );
    for (const url of [`http://${podIp}:8080/`, `http://${clusterIp}:8080/`]) {
      const answer = JSON.parse(await get(url)) as { address: string; requests: number };
      t.is(answer.address.split(":")[0], podIp, `${url} reached the VM: ${JSON.stringify(answer)}`);
      t.log(`${url} from ${other.xen.name}: ${JSON.stringify(answer)}`);
    }
    // And from its own node too, so both dom0s' kube-proxies are exercised.
    const local = await host.xen.exec(`curl -sf -m 10 http://${clusterIp}:8080/`);
    t.is(local.code, 0, `from ${host.xen.name}: ${local.stderr}`);

    await s.ok(["delete", "uvm", "http", "--wait=true", "--timeout=300s"]);
  },
);
