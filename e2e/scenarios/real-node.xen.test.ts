// A Xen node as a real cluster has it: the kubelet's only runtime is the shim, and dom0 also runs
// containerd + runc (Debian's), which the shim hands every non-unikernel pod to
// (--fallback-runtime-endpoint). kube-proxy is a DaemonSet pod through that path (not a dom0
// process), an ordinary busybox DaemonSet runs beside it on the pod network, the hello and http
// unikernels run beside both, a Service's ClusterIP reaches http through the pod kube-proxy, and a
// kill -9 of the shim loses neither side's pods. Then the whole chart with `helm install` in the same
// cluster (helm-release.ts): the operator as the chart's Deployment (2 replicas, one leader) in place
// of the host process, the node agent on the chart's node-credentials DaemonSet, hello and http Ready
// through them; `helm upgrade` rolls the operator and loses no VM; VMs deleted, then `helm
// uninstall` leaves nothing of the release, then the CRDs go.
import test, { type ExecutionContext } from "ava";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse, stringify } from "yaml";
import { k8sBinary, REPO_ROOT } from "../../lib/paths.js";
import { CONTAINERD_ENDPOINT } from "../cluster/dom0-containerd.js";
import {
  applyRelease,
  CHART_NAMESPACE,
  helm,
  labelledObjects,
  pushChartImages,
  realHostValues,
  RELEASE,
  releaseObjects,
  useChartNodeCredentials,
  type ChartImages,
} from "../cluster/helm-release.js";
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

// dom0 holds two operator replicas and the node-credentials pod (Node.js each) besides the rest.
const scenario = useE2ECluster(test, "rn", { containerd: true, nodeMemoryMiB: 2816, dom0MemoryMiB: 1536 });
const TEST_TIMEOUT_MS = 20 * 60_000;
const HELM_TIMEOUT_MS = 35 * 60_000;
const OPERATOR_PODS = "app.kubernetes.io/name=superfluid-operator";

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

// Shared by the helm tests (serial, in this order).
let chartImages: ChartImages | undefined;
const helmNamespace = (s: Scenario) => `${s.namespace}-helm`;

/** The Lease's holder and the operator pods' names; the holder's identity is <pod name>_<pid>. */
async function leaderAndPods(s: Scenario): Promise<{ holder: string; pods: PodView[] }> {
  const pods = (await podsOf(s, OPERATOR_PODS, CHART_NAMESPACE)).filter(
    (p) => !(p as { metadata: { deletionTimestamp?: string } }).metadata.deletionTimestamp,
  );
  const lease = await s.cluster.kubectl([
    "get",
    "lease",
    "superfluid-operator",
    "-n",
    CHART_NAMESPACE,
    "-o",
    "jsonpath={.spec.holderIdentity}",
  ]);
  return { holder: lease.code === 0 ? lease.stdout.trim() : "", pods };
}

/** Two ready operator pods on the Xen node, one holding the Lease (its log says so), the other not. */
async function oneLeaderOneStandby(s: Scenario, t: ExecutionContext) {
  const { holder, pods } = await eventually(
    "two ready operator pods, one of them holding the Lease",
    async () => {
      const v = await leaderAndPods(s);
      const ready = v.pods.filter((p) => p.status.containerStatuses?.every((c) => c.ready));
      return ready.length === 2 &&
        v.pods.length === 2 &&
        ready.some((p) => v.holder.startsWith(`${p.metadata.name}_`))
        ? v
        : undefined;
    },
    600_000,
    3000,
  );
  const leader = pods.find((p) => holder.startsWith(`${p.metadata.name}_`))!;
  const standby = pods.find((p) => p !== leader)!;
  for (const p of pods)
    t.is(p.spec.nodeName, s.cluster.nodes[0]!.xen.name, `${p.metadata.name} runs on the Xen node`);
  const logOf = (p: PodView) => s.cluster.kubectl(["logs", "-n", CHART_NAMESPACE, p.metadata.name]);
  const [leaderLog, standbyLog] = await Promise.all([logOf(leader), logOf(standby)]);
  t.regex(leaderLog.stdout, /became leader/, `${leader.metadata.name} says it leads`);
  t.notRegex(standbyLog.stdout, /became leader/, `${standby.metadata.name} stands by`);
  t.log(`Lease holder ${holder}; standby ${standby.metadata.name}`);
  return { leader, standby, pods };
}

/** Each VM's pod uid, container id and restarts, and its domain id, in the given namespaces. */
async function vmSnapshot(s: Scenario, namespaces: string[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const ns of namespaces) {
    const vms = await s.cluster.kubectl(["get", "uvm", "-n", ns, "-o", "json"]);
    const list = JSON.parse(vms.stdout) as {
      items: Array<{ metadata: { name: string }; status?: { domainId?: number; podName?: string } }>;
    };
    const pods = await s.cluster.kubectl(["get", "pods", "-n", ns, "-l", "superfluid.dev/vm", "-o", "json"]);
    const byVm = new Map<string, string>();
    for (const p of (
      JSON.parse(pods.stdout) as {
        items: Array<PodView & { metadata: { uid: string; labels?: Record<string, string> } }>;
      }
    ).items) {
      const c = p.status.containerStatuses?.[0];
      byVm.set(
        p.metadata.labels?.["superfluid.dev/vm"] ?? "",
        `${p.metadata.uid} ${c?.containerID} #${c?.restartCount}`,
      );
    }
    for (const vm of list.items)
      out[`${ns}/${vm.metadata.name}`] =
        `${byVm.get(vm.metadata.name) ?? "no pod"} domain ${vm.status?.domainId}`;
  }
  return out;
}

/** examples/<name>.yaml under another name. */
function renamedExample(name: string, as: string): string {
  const doc = parse(readFileSync(example(name), "utf8")) as { metadata: { name: string } };
  doc.metadata.name = as;
  return stringify(doc);
}

/** The VM's domain id once it shows: the node agent annotates the pod, the operator copies it to status (after Ready, maybe). */
async function domainIdOf(s: Scenario, ns: string, vm: string): Promise<string> {
  return eventually(
    `uvm ${ns}/${vm}'s domain id`,
    async () => {
      const r = await s.cluster.kubectl(["get", "uvm", vm, "-n", ns, "-o", "jsonpath={.status.domainId}"]);
      return r.stdout.trim() || undefined;
    },
    120_000,
    2000,
  ).catch(() => "");
}

test.serial(
  "helm install: the operator as the chart's Deployment (2 replicas, one leader), the node agent on the chart's credentials, hello and http Ready",
  async (t) => {
    const s = await scenario(t, HELM_TIMEOUT_MS);
    const node = s.cluster.nodes[0]!;
    const pushStarted = Date.now();
    chartImages = await pushChartImages(s.cluster);
    logTiming(t, "npm run images into the cluster's registry", Date.now() - pushStarted);
    for (const i of chartImages.report.images)
      t.log(
        `${i.name}: ${(i.sizeBytes / 1e6).toFixed(1)} MB compressed, ${(i.unpackedBytes / 1e6).toFixed(1)} MB unpacked`,
      );
    // One operator at a time: the host process the cluster started steps down for the chart's.
    const hostOperator = s.cluster.operator!;
    await hostOperator.stop();
    t.log(`host operator process ended (${String(await hostOperator.process.exited)})`);

    const installStarted = Date.now();
    await applyRelease(s.cluster, "install", realHostValues({ replicas: 2 }), chartImages);
    const installMs = Date.now() - installStarted;
    logTiming(t, "helm install --wait (both images pulled into dom0's containerd, pods ready)", installMs);
    const listed = await helm(s.cluster, ["list", "-o", "json"]);
    const releases = JSON.parse(listed.stdout) as Array<{ name: string; status: string }>;
    t.deepEqual(
      releases.map((r) => [r.name, r.status]),
      [[RELEASE, "deployed"]],
    );
    await oneLeaderOneStandby(s, t);
    const creds = await runningPod(
      s,
      "the node-credentials DaemonSet pod Running",
      "app.kubernetes.io/name=superfluid-node-credentials",
      CHART_NAMESPACE,
    );
    t.is(creds.spec.nodeName, node.xen.name);
    // Through containerd, like kube-proxy: the shim's fallback runtime.
    const inContainerd = await criContainers(s, CONTAINERD_ENDPOINT);
    t.true(
      inContainerd.filter((n) => n === "operator").length === 2 && inContainerd.includes("credentials"),
      `containerd runs ${inContainerd.join(", ")}`,
    );

    const restartMs = await useChartNodeCredentials(node);
    logTiming(t, "shim restarted on the chart's node-agent kubeconfig -> serving", restartMs);
    t.true(node.shimArgs.includes("/var/lib/superfluid/agent/kubeconfig"));

    const ns = helmNamespace(s);
    await s.cluster.kubectl(["create", "namespace", ns]);
    await eventually(
      `the default ServiceAccount in ${ns}`,
      async () =>
        (await s.cluster.kubectl(["get", "sa", "default", "-n", ns])).code === 0 ? true : undefined,
      60_000,
    );
    const applied = Date.now();
    await s.ok(["apply", "-n", ns, "-f", example("hello")]);
    await s.ok(["apply", "-n", ns, "-f", example("http")]);
    await s.ok(["wait", "-n", ns, "--for=condition=Ready", "uvm/hello", "--timeout=900s"]);
    logTiming(t, "hello: apply -> Ready through the helm-installed operator", Date.now() - applied);
    logTiming(
      t,
      "helm install -> hello Ready (install, credentials switch, apply, Ready)",
      Date.now() - installStarted,
    );
    await s.ok(["wait", "-n", ns, "--for=condition=Ready", "uvm/http", "--timeout=900s"]);
    logTiming(t, "http: apply -> Ready", Date.now() - applied);
    // The domain ids come from the pods' annotations, which only the node agent writes: it reached
    // the apiserver with the chart's credentials.
    for (const vm of ["hello", "http"])
      t.regex(await domainIdOf(s, ns, vm), /^\d+$/, `${vm} has a domain id from the node agent`);
  },
);

test.serial("helm upgrade to changed values rolls the operator and loses no VM", async (t) => {
  const s = await scenario(t, HELM_TIMEOUT_MS);
  if (!chartImages) return t.fail("helm install did not run");
  const namespaces = [s.namespace, helmNamespace(s)];
  const vmsBefore = await vmSnapshot(s, namespaces);
  const domainsBefore = await guestDomains(s);
  const podsBefore = (await podsOf(s, OPERATOR_PODS, CHART_NAMESPACE)).map((p) => p.metadata.name);
  t.log(`VMs before: ${JSON.stringify(vmsBefore)}`);

  const upgraded = Date.now();
  await applyRelease(
    s.cluster,
    "upgrade",
    realHostValues({ replicas: 2, logLevel: "debug", workers: 8 }),
    chartImages,
  );
  logTiming(t, "helm upgrade --wait", Date.now() - upgraded);
  const { pods } = await eventually(
    "the old operator pods gone",
    async () => {
      const v = await leaderAndPods(s);
      const all = await podsOf(s, OPERATOR_PODS, CHART_NAMESPACE);
      return all.some((p) => podsBefore.includes(p.metadata.name)) ? undefined : v;
    },
    300_000,
    3000,
  );
  const rolled = await oneLeaderOneStandby(s, t);
  t.deepEqual(rolled.pods.map((p) => p.metadata.name).sort(), pods.map((p) => p.metadata.name).sort());
  const spec = JSON.parse(
    await s.cluster
      .kubectl(["get", "deploy", `${RELEASE}-operator`, "-n", CHART_NAMESPACE, "-o", "json"])
      .then((r) => r.stdout),
  ) as {
    spec: {
      template: {
        spec: { containers: Array<{ args: string[]; env: Array<{ name: string; value?: string }> }> };
      };
    };
  };
  const container = spec.spec.template.spec.containers[0]!;
  t.true(container.args.includes("--workers=8"), container.args.join(" "));
  t.is(container.env.find((e) => e.name === "LOG_LEVEL")?.value, "debug");
  t.deepEqual(await vmSnapshot(s, namespaces), vmsBefore, "same pods, containers and domains, no restarts");
  t.deepEqual(await guestDomains(s), domainsBefore, "the same Xen domains");

  const ns = helmNamespace(s);
  const applied = Date.now();
  await s.ok(["apply", "-n", ns, "-f", "-"], renamedExample("hello", "hello-after-upgrade"));
  await s.ok(["wait", "-n", ns, "--for=condition=Ready", "uvm/hello-after-upgrade", "--timeout=900s"]);
  logTiming(t, "a new VM after the roll: apply -> Ready", Date.now() - applied);
  t.regex(await domainIdOf(s, ns, "hello-after-upgrade"), /^\d+$/);
});

test.serial(
  "VMs deleted, then helm uninstall: nothing of the release is left, the CRDs stay until deleted",
  async (t) => {
    const s = await scenario(t, HELM_TIMEOUT_MS);
    const manifest = await releaseObjects(s.cluster);
    t.true(manifest.includes(`Deployment/${RELEASE}-operator`), manifest.join(", "));
    t.true(manifest.length >= 15, `the release's objects: ${manifest.join(", ")}`);
    // 1. The VMs first: their finalizer is the operator's to remove (and their domains the shim's).
    const del = await s.cluster.kubectl(["delete", "uvm", "--all", "-A", "--wait=true", "--timeout=600s"]);
    t.is(del.code, 0, del.stderr);
    t.is((await s.cluster.kubectl(["get", "uvm", "-A", "-o", "name"])).stdout.trim(), "");
    await eventually(
      "no guest domain left",
      async () => ((await guestDomains(s)).length === 0 ? true : undefined),
      300_000,
      3000,
    );
    // 2. The release.
    const un = await helm(s.cluster, ["uninstall", RELEASE, "--wait", "--timeout", "10m"]);
    t.is(un.code, 0, un.stderr);
    const leftover = await eventually(
      "no object labelled with the release",
      async () => {
        const left = await labelledObjects(s.cluster);
        return left.length === 0 ? left : undefined;
      },
      300_000,
      3000,
    );
    t.deepEqual(leftover, []);
    for (const obj of manifest) {
      const r = await s.cluster.kubectl(["get", obj, "-n", CHART_NAMESPACE, "-o", "name"]);
      t.regex(r.stderr, /NotFound|not found/, `${obj} is gone`);
    }
    t.deepEqual(JSON.parse((await helm(s.cluster, ["list", "-o", "json"])).stdout), []);
    // 3. Helm keeps crds/ by design: they go last, by hand.
    const crds = ["unikernelvms.superfluid.dev", "unikernelvmmigrations.superfluid.dev"];
    t.is(
      (await s.cluster.kubectl(["get", "crd", ...crds, "-o", "name"])).code,
      0,
      "CRDs kept by helm uninstall",
    );
    const gone = await s.cluster.kubectl([
      "delete",
      "-f",
      join(REPO_ROOT, "charts", "superfluid", "crds"),
      "--wait=true",
    ]);
    t.is(gone.code, 0, gone.stderr);
    t.regex((await s.cluster.kubectl(["get", "crd", ...crds])).stderr, /NotFound|not found/);
  },
);
