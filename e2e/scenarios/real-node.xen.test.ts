// A Xen node as a real cluster has it: the kubelet's only runtime is the shim, and dom0 also runs
// containerd + runc (Debian's), which the shim hands every non-unikernel pod to
// (--fallback-runtime-endpoint). kube-proxy is a DaemonSet pod through that path (not a dom0
// process), an ordinary busybox DaemonSet runs beside it on the pod network, the hello and http
// unikernels run beside both, a Service's ClusterIP reaches http through the pod kube-proxy, and a
// kill -9 of the shim loses neither side's pods.
import test from "ava";
import { stringify } from "yaml";
import { k8sBinary } from "../../lib/paths.js";
import { CONTAINERD_ENDPOINT } from "../cluster/dom0-containerd.js";
import { SHIM_SOCKET } from "../cluster/kubelet.js";
import { KUBE_PROXY_NAMESPACE } from "../cluster/kube-proxy-pod.js";
import { startShim } from "../cluster/shim.js";
import { inCidr } from "../xen-node/pod-network.js";
import {
  eventually,
  example,
  guestDomains,
  logTiming,
  useE2ECluster,
  type PodView,
  type Scenario,
} from "./helpers.js";

const scenario = useE2ECluster(test, "rn", { containerd: true });
const TEST_TIMEOUT_MS = 20 * 60_000;

function busyboxDaemonSet(image: string): string {
  const labels = { app: "busybox-web" };
  return stringify({
    apiVersion: "apps/v1",
    kind: "DaemonSet",
    metadata: { name: "busybox-web", labels },
    spec: {
      selector: { matchLabels: labels },
      template: {
        metadata: { labels },
        spec: {
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          tolerations: [{ operator: "Exists" }],
          terminationGracePeriodSeconds: 1,
          containers: [
            { name: "web", image, imagePullPolicy: "IfNotPresent", ports: [{ containerPort: 8080 }] },
          ],
        },
      },
    },
  });
}

async function podsOf(s: Scenario, selector: string, namespace?: string): Promise<PodView[]> {
  const ns = namespace ? ["--namespace", namespace] : [];
  const out = await s.cluster.kubectl(["get", "pods", ...ns, "-l", selector, "-o", "json"]);
  if (out.code !== 0) throw new Error(out.stderr);
  return (JSON.parse(out.stdout) as { items: PodView[] }).items;
}

async function runningPod(s: Scenario, what: string, selector: string, namespace: string): Promise<PodView> {
  return eventually(
    what,
    async () => (await podsOf(s, selector, namespace)).find((p) => p.status.phase === "Running"),
    900_000,
    3000,
  );
}

/** Names of the running containers a CRI endpoint in dom0 lists (crictl ps). */
async function criContainers(s: Scenario, endpoint: string): Promise<string[]> {
  const r = await s.cluster.nodes[0]!.xen.exec(
    `${k8sBinary("crictl")} --runtime-endpoint ${endpoint} --timeout 60s ps -o json`,
    { timeoutMs: 180_000 },
  );
  if (r.code !== 0) throw new Error(`crictl ps on ${endpoint} failed: ${r.stderr}`);
  const list = JSON.parse(r.stdout) as { containers: Array<{ metadata: { name: string }; state: string }> };
  return list.containers
    .filter((c) => c.state === "CONTAINER_RUNNING")
    .map((c) => c.metadata.name)
    .sort();
}

/** Container ids of every pod the test watches, by pod name prefix. */
async function containerIds(s: Scenario): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [ns, sel] of [
    [KUBE_PROXY_NAMESPACE, "k8s-app=kube-proxy"],
    [s.namespace, "app=busybox-web"],
  ] as const)
    for (const p of await podsOf(s, sel, ns))
      out[p.metadata.name] = p.status.containerStatuses?.[0]?.containerID ?? "";
  const all = await s.cluster.kubectl(["get", "pods", "--namespace", s.namespace, "-o", "json"]);
  for (const p of (JSON.parse(all.stdout) as { items: PodView[] }).items)
    for (const c of p.status.containerStatuses ?? [])
      out[`${p.metadata.name}/${c.name}`] = `${c.containerID}#${c.restartCount}`;
  return out;
}

async function clusterIpAnswer(s: Scenario): Promise<{ clusterIp: string; answer: string }> {
  const clusterIp = (await s.ok(["get", "svc", "http", "-o", "jsonpath={.spec.clusterIP}"])).trim();
  const answer = await eventually(
    `GET http://${clusterIp}:8080/ from dom0`,
    async () => {
      const r = await s.cluster.nodes[0]!.xen.exec(`curl -sf -m 10 http://${clusterIp}:8080/`);
      return r.code === 0 ? r.stdout : undefined;
    },
    180_000,
    3000,
  );
  return { clusterIp, answer };
}

test.serial(
  "kube-proxy and a busybox DaemonSet run in containerd beside hello and http unikernels",
  async (t) => {
    const s = await scenario(t, TEST_TIMEOUT_MS);
    const node = s.cluster.nodes[0]!;
    t.truthy(node.containerd, "the cluster started containerd in dom0");
    t.is(node.kubeProxy, undefined, "no kube-proxy process started by the harness in dom0");
    const kp = await runningPod(
      s,
      "the kube-proxy DaemonSet pod Running",
      "k8s-app=kube-proxy",
      KUBE_PROXY_NAMESPACE,
    );
    t.is(kp.spec.nodeName, node.xen.name);
    t.log(`kube-proxy image: ${JSON.stringify(s.cluster.linuxImages?.kubeProxy)}`);

    const applied = Date.now();
    await s.ok(["apply", "-f", "-"], busyboxDaemonSet(s.cluster.linuxImages!.busyboxWeb));
    await s.ok(["apply", "-f", example("hello")]);
    await s.ok(["apply", "-f", example("http")]);
    const bb = await runningPod(s, "the busybox DaemonSet pod Running", "app=busybox-web", s.namespace);
    logTiming(t, "busybox DaemonSet: apply -> Running", Date.now() - applied);
    const [first, last] = node.containerd!.podRange;
    t.true(
      inCidr(bb.status.podIP ?? "", node.xen.podCidr),
      `busybox pod IP ${bb.status.podIP} in ${node.xen.podCidr}`,
    );
    t.log(`busybox pod IP ${bb.status.podIP} (containerd's range ${first}-${last})`);
    const web = await node.xen.exec(`curl -sf -m 10 http://${bb.status.podIP}:8080/`);
    t.is(web.code, 0, `dom0 reaches the busybox pod: ${web.stderr}`);
    t.regex(web.stdout, /^linux pod /);

    // containerd itself runs both Linux pods' containers (not the shim, not a dom0 process).
    const inContainerd = await criContainers(s, CONTAINERD_ENDPOINT);
    t.true(
      inContainerd.includes("kube-proxy") && inContainerd.includes("web"),
      `containerd runs ${inContainerd.join(", ")}`,
    );

    await s.ok(["wait", "--for=condition=Ready", "uvm/hello", "uvm/http", "--timeout=900s"]);
    logTiming(t, "hello + http beside them: apply -> Ready", Date.now() - applied);
    t.true((await guestDomains(s)).length >= 2, "both unikernels are Xen domains");
    const podIp = (await s.ok(["get", "uvm", "http", "-o", "jsonpath={.status.ip}"])).trim();
    const { clusterIp, answer } = await clusterIpAnswer(s);
    const status = JSON.parse(answer) as { address: string; requests: number };
    t.is(status.address.split(":")[0], podIp, `the ClusterIP led to http's pod IP: ${answer}`);
    t.log(`through Service http (${clusterIp}:8080), rules by the kube-proxy pod: ${answer.trim()}`);

    // Through the front: the kubelet's endpoint lists both runtimes' containers.
    const viaShim = await criContainers(s, `unix://${SHIM_SOCKET}`);
    for (const name of ["kube-proxy", "web"])
      t.true(viaShim.includes(name), `the shim lists ${name}: ${viaShim.join(", ")}`);
    t.true(
      viaShim.length >= inContainerd.length + 2,
      `the shim lists the unikernels too: ${viaShim.join(", ")}`,
    );
  },
);

test.serial("kill -9 of the shim loses neither containerd's pods nor the VMs", async (t) => {
  const s = await scenario(t, TEST_TIMEOUT_MS);
  const node = s.cluster.nodes[0]!;
  const before = await containerIds(s);
  const domainsBefore = await guestDomains(s);
  const killed = await node.xen.exec(
    `kill -9 $(cat ${node.xen.dom0HostDir}/shim/shim.pid) && rm -f ${SHIM_SOCKET}`,
  );
  t.is(killed.code, 0, killed.stderr);
  // While the shim is down: containerd still runs the Linux containers, Xen the domains.
  const whileDown = await criContainers(s, CONTAINERD_ENDPOINT);
  t.true(
    whileDown.includes("kube-proxy") && whileDown.includes("web"),
    `containerd runs ${whileDown.join(", ")}`,
  );
  t.deepEqual(await guestDomains(s), domainsBefore, "the domains run on");

  const restarted = Date.now();
  await startShim(node.xen, { args: node.shimArgs });
  logTiming(t, "shim restart -> serving", Date.now() - restarted);
  const viaShim = await criContainers(s, `unix://${SHIM_SOCKET}`);
  for (const name of ["kube-proxy", "web"])
    t.true(viaShim.includes(name), `the restarted shim lists ${name}: ${viaShim.join(", ")}`);
  t.true(viaShim.length >= whileDown.length + 2, `and the unikernels: ${viaShim.join(", ")}`);
  // Give the kubelet a few syncs against the restarted shim: nothing restarted, nothing replaced.
  await new Promise((r) => setTimeout(r, 30_000));
  t.deepEqual(await containerIds(s), before, "same containers, no restarts");
  t.deepEqual(await guestDomains(s), domainsBefore);
  const { answer } = await clusterIpAnswer(s);
  t.regex(answer, /"requests"/);
});
