// `npm run demo`: a whole superfluid cluster on this machine (control plane, scheduler, one emulated
// Xen node with the CRI shim, containerd and a real kubelet, a registry with the examples' images),
// the chart installed with `helm install` (the project's images from `npm run images`, the operator
// as its Deployment, the node agent on its node-credentials DaemonSet: e2e/cluster/helm-release.ts),
// then examples/hello.yaml and examples/http.yaml applied and shown working.
// SUPERFLUID_DEMO_OPERATOR=host: the operator as a host process instead of the chart (as does
// SUPERFLUID_DEMO_CONTAINERD=0, where the node has no containerd to run the chart's pods). It keeps running until
// Ctrl-C or `npm run demo:down` (`node dist/e2e/demo.js down`), and tears everything down on the way
// out, then checks that nothing is left.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { CACHE_DIR, k8sBinary, REPO_ROOT } from "../lib/paths.js";
import { type E2ECluster, startCluster } from "./cluster/index.js";
import {
  applyRelease,
  CHART_NAMESPACE,
  pushChartImages,
  realHostValues,
  RELEASE,
  useChartNodeCredentials,
} from "./cluster/helm-release.js";
import { findLeftovers } from "./cluster/leftovers.js";

const STATE_FILE = join(CACHE_DIR, "demo.json");
/** The running demo's teardown verdict, for `down` (in another shell) to print. */
const TEARDOWN_FILE = join(CACHE_DIR, "demo-teardown.txt");
const EXAMPLES = ["hello", "http"] as const;

interface DemoState {
  pid: number;
  kubeconfig: string;
}

const say = (line = "") => process.stdout.write(line + "\n");
const indent = (text: string) =>
  text
    .trimEnd()
    .split("\n")
    .map((l) => "    " + l)
    .join("\n");

function running(): DemoState | undefined {
  if (!existsSync(STATE_FILE)) return undefined;
  const state = JSON.parse(readFileSync(STATE_FILE, "utf8")) as DemoState;
  try {
    process.kill(state.pid, 0);
    return state;
  } catch {
    rmSync(STATE_FILE, { force: true }); // a demo that died without cleaning up its state file
    return undefined;
  }
}

async function down(): Promise<number> {
  const state = running();
  if (!state) {
    say("no demo is running");
    return 0;
  }
  say(`stopping the demo (pid ${state.pid})...`);
  rmSync(TEARDOWN_FILE, { force: true });
  process.kill(state.pid, "SIGINT");
  for (let i = 0; i < 600; i++) {
    try {
      process.kill(state.pid, 0);
    } catch {
      const verdict = existsSync(TEARDOWN_FILE)
        ? readFileSync(TEARDOWN_FILE, "utf8").trimEnd()
        : "the demo exited without reporting its teardown";
      rmSync(TEARDOWN_FILE, { force: true });
      say(verdict);
      return verdict.startsWith("done:") ? 0 : 1;
    }
    await sleep(200);
  }
  say(`the demo (pid ${state.pid}) did not stop within 120 s`);
  return 1;
}

async function kubectlOk(cluster: E2ECluster, args: string[]): Promise<string> {
  const r = await cluster.kubectl(args);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(" ")}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** The chart as a user installs it, the operator and the node agent's credentials from it. */
async function installChart(cluster: E2ECluster): Promise<void> {
  say("\n$ npm run images -- --registry <the cluster's registry>");
  const images = await pushChartImages(cluster);
  for (const i of images.report.images)
    say(`    ${i.name}: ${(i.sizeBytes / 1e6).toFixed(1)} MB (${i.digest.slice(0, 19)}...)`);
  say(
    `$ helm install ${RELEASE} charts/superfluid -n ${CHART_NAMESPACE} --set shim.enabled=false --set nodeCredentials.enabled=true <image digests> --wait`,
  );
  const started = Date.now();
  await applyRelease(cluster, "install", realHostValues({ replicas: 1 }), images);
  say(
    `    deployed in ${((Date.now() - started) / 1000).toFixed(1)} s (images pulled into dom0's containerd)`,
  );
  say(indent(await kubectlOk(cluster, ["get", "pods", "-n", CHART_NAMESPACE, "-o", "wide"])));
  say("# the shim (systemd's part on a real host) restarted with the node agent's kubeconfig from the chart");
  await useChartNodeCredentials(cluster.nodes[0]!);
}

async function showExamples(cluster: E2ECluster): Promise<void> {
  // One after the other: two domain builds at once (and the HTTP guest's Linux booting) starve an
  // emulated dom0, and libxl gives up on a vif hotplug script that runs longer than its timeout.
  const readyMs: number[] = [];
  for (const name of EXAMPLES) {
    say(`\n$ kubectl apply -f examples/${name}.yaml`);
    const applied = Date.now();
    say(indent(await kubectlOk(cluster, ["apply", "-f", join(REPO_ROOT, "examples", `${name}.yaml`)])));
    await kubectlOk(cluster, ["wait", "--for=condition=Ready", `uvm/${name}`, "--timeout=900s"]);
    readyMs.push(Date.now() - applied);
    say(
      `$ kubectl wait --for=condition=Ready uvm/${name}   # Ready ${(readyMs.at(-1)! / 1000).toFixed(1)} s after apply`,
    );
  }

  if (cluster.nodes[0]?.containerd) {
    say(
      "\n$ kubectl get pods -n kube-system -o wide     # kube-proxy: a Linux pod, through the shim to containerd",
    );
    say(indent(await kubectlOk(cluster, ["get", "pods", "-n", "kube-system", "-o", "wide"])));
  }

  say("\n$ kubectl get uvm -o wide");
  say(indent(await kubectlOk(cluster, ["get", "uvm", "-o", "wide"])));

  say("\n$ kubectl logs -l superfluid.dev/vm=hello --tail=5      # the unikernel's console");
  await sleep(2000); // a few counter lines after the ready line
  say(indent(await kubectlOk(cluster, ["logs", "-l", "superfluid.dev/vm=hello", "--tail=5"])));

  const clusterIp = (
    await kubectlOk(cluster, ["get", "svc", "http", "-o", "jsonpath={.spec.clusterIP}"])
  ).trim();
  const node = cluster.nodes[0]!;
  say(`\n$ curl http://${clusterIP(clusterIp)}:8080/     # from the Xen node, through Service 'http'`);
  if (!node.kubeProxy && !node.containerd) {
    say(
      "    (skipped: kube-proxy is not running in dom0 (not built, or its rules not programmed in time; see the log above), so ClusterIPs lead nowhere)",
    );
    return;
  }
  // kube-proxy programs the Service's rules a moment after its EndpointSlice appears: retry briefly.
  let r = await node.xen.exec(`curl -sf -m 20 http://${clusterIp}:8080/`);
  for (let attempt = 1; r.code !== 0 && attempt < 10; attempt++) {
    await sleep(3000);
    r = await node.xen.exec(`curl -sf -m 20 http://${clusterIp}:8080/`);
  }
  if (r.code !== 0)
    throw new Error(
      `curl http://${clusterIp}:8080/ from ${node.xen.name} failed (${r.code}): ${r.stderr.trim()}`,
    );
  say(indent(r.stdout));
}

const clusterIP = (ip: string) => ip || "<none>";

async function up(): Promise<number> {
  const other = running();
  if (other) {
    say(`a demo is already running (pid ${other.pid}); stop it with: npm run demo:down`);
    return 1;
  }
  say(
    "bringing up: control plane, scheduler, controller-manager, registry, one emulated Xen node (kubelet + CRI shim + containerd in dom0, kube-proxy as a DaemonSet pod), then the chart with helm",
  );
  say("(Xen runs under QEMU TCG emulation here: this takes a few minutes on 2 cores)");
  // containerd + runc in dom0 behind the shim, as on a real node, and kube-proxy as a DaemonSet pod
  // through it (docs/e2e.md "A real node"); SUPERFLUID_DEMO_CONTAINERD=0: kube-proxy in dom0 instead.
  const containerd = process.env.SUPERFLUID_DEMO_CONTAINERD !== "0";
  const chart = containerd && process.env.SUPERFLUID_DEMO_OPERATOR !== "host";
  const cluster = await startCluster({ containerd, operator: !chart });
  let stopping = false;
  /** `signalled`: asked to stop (Ctrl-C, `npm run demo:down`), so someone may wait for the verdict. */
  const stop = async (code: number, signalled = false) => {
    if (stopping) return;
    stopping = true;
    say("\ntearing down...");
    await cluster.stop();
    rmSync(STATE_FILE, { force: true });
    // Said only after looking: the cluster's temp dirs, processes naming them, its ports.
    const left = await findLeftovers(cluster.footprint);
    const verdict =
      left.length === 0
        ? `done: checked that no process, temp dir (${cluster.footprint.dirs.length}) or port (${cluster.footprint.ports.length}) of the demo is left`
        : `teardown left behind:\n${indent(left.join("\n"))}`;
    if (signalled) writeFileSync(TEARDOWN_FILE, verdict + "\n");
    say(verdict);
    process.exit(left.length === 0 ? code : 1);
  };
  process.on("SIGINT", () => void stop(0, true));
  process.on("SIGTERM", () => void stop(0, true));
  mkdirSync(CACHE_DIR, { recursive: true });
  writeFileSync(
    STATE_FILE,
    JSON.stringify({ pid: process.pid, kubeconfig: cluster.kubeconfigPath } satisfies DemoState),
  );
  const t = cluster.timings;
  say(
    `cluster up in ${(t.totalMs / 1000).toFixed(1)} s (control plane ${(t.controlPlaneMs / 1000).toFixed(1)} s, Xen node boot ${(t.nodeBootMs[0]! / 1000).toFixed(1)} s, CRI shim start ${(t.shimStartMs[0]! / 1000).toFixed(1)} s, kubelet start to node Ready ${(t.kubeletStartToReadyMs[0]! / 1000).toFixed(1)} s)`,
  );
  try {
    if (chart) await installChart(cluster);
    await showExamples(cluster);
  } catch (err) {
    say(`\nthe demo failed: ${(err as Error).message}`);
    say(await cluster.diagnostics());
    await stop(1);
    return 1;
  }
  say(`
The cluster keeps running. Try:
    export KUBECONFIG=${cluster.kubeconfigPath}
    ${k8sBinary("kubectl")} get uvm,pods,svc,nodes -o wide
Tear it down with Ctrl-C here, or from another shell:
    cd ${REPO_ROOT} && npm run demo:down`);
  setInterval(() => undefined, 1 << 30); // stay up until a signal
  return 0;
}

const command = process.argv[2];
if (command === "down") process.exitCode = await down();
else if (command === undefined || command === "up") process.exitCode = await up();
else {
  say(`usage: node dist/e2e/demo.js [up|down]   (unknown command ${JSON.stringify(command)})`);
  process.exitCode = 2;
}
