// The whole chart as a user installs it, in an e2e cluster whose Xen nodes run containerd
// (`startCluster({ containerd: true })`): `helm install` of charts/superfluid with the project's own
// images (`npm run images`, pushed to the cluster's registry; each dom0's containerd pulls them
// through its localhost:5000 forward), the operator as the chart's Deployment (a pod through the
// shim's fallback to containerd), and the node part in the documented real-host layout
// (docs/node-install.md): shim.enabled=false, nodeCredentials.enabled=true.
//
// What stands in for what on an emulated node (no systemd in dom0):
// - the systemd unit superfluid-cri.service: the shim the harness starts in dom0 (shim.ts), with the
//   flags node-install would write into the unit;
// - the node agent's credentials: the chart's node-credentials DaemonSet writes them to
//   /var/lib/superfluid/agent/ in dom0, and the harness restarts the shim with
//   --kubeconfig=/var/lib/superfluid/agent/kubeconfig (as the unit names it), dropping the token the
//   harness had made for it at bring-up.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { k8sBinary } from "../../lib/paths.js";
import { runAsync } from "../../lib/process.js";
import type { CommandResult } from "../harness/control-plane.js";
import { helmImageValues, pushProjectImages, type ImagesReport } from "../harness/project-images.js";
import { CHART_DIR, CHART_NAMESPACE, RELEASE } from "./chart-objects.js";
import { REGISTRY_PORT_IN_DOM0 } from "./images.js";
import type { ClusterNode, E2ECluster } from "./index.js";
import { SHIM_SOCKET, XEN_TAINT } from "./kubelet.js";
import { startShim } from "./shim.js";

export { CHART_NAMESPACE, RELEASE };
/** Where the chart's node-credentials DaemonSet keeps the node agent's kubeconfig on the host (dom0). */
export const AGENT_KUBECONFIG = "/var/lib/superfluid/agent/kubeconfig";
/** Selects every object of the release, including the pods and ReplicaSets its workloads made. */
export const RELEASE_SELECTOR = `app.kubernetes.io/instance=${RELEASE}`;
/** Kinds the chart makes or its workloads lead to (kubectl names), for "nothing of it is left". */
const RELEASE_KINDS = [
  "deployments",
  "replicasets",
  "daemonsets",
  "pods",
  "serviceaccounts",
  "roles",
  "rolebindings",
  "clusterroles",
  "clusterrolebindings",
  "runtimeclasses",
  "validatingadmissionpolicies",
  "validatingadmissionpolicybindings",
  "configmaps",
  "secrets",
  "services",
].join(",");

export interface ChartImages {
  report: ImagesReport;
  /** `--set` arguments pinning both images by digest, as the nodes pull them. */
  sets: string[];
}

/** `npm run images` into the cluster's registry; the chart values name them at dom0's localhost:5000. */
export async function pushChartImages(cluster: E2ECluster): Promise<ChartImages> {
  const report = await pushProjectImages(cluster.registry.host);
  return { report, sets: helmImageValues(report, `localhost:${REGISTRY_PORT_IN_DOM0}`) };
}

/** The values of the real-host layout: the shim from "systemd", its credentials from the chart. */
export function realHostValues(extra: { replicas: number; logLevel?: string; workers?: number }): object {
  return {
    operator: {
      replicas: extra.replicas,
      leaderElection: true,
      ...(extra.logLevel ? { logLevel: extra.logLevel } : {}),
      ...(extra.workers ? { workers: extra.workers } : {}),
      // The e2e cluster's only node is a Xen node, tainted as kubelet.ts registers it.
      tolerations: [{ key: XEN_TAINT.key, operator: "Exists", effect: XEN_TAINT.effect }],
    },
    shim: { enabled: false },
    nodeCredentials: { enabled: true, intervalSeconds: 10 },
  };
}

/** `helm <args>` against the cluster, in the chart's namespace. */
export function helm(cluster: E2ECluster, args: string[], timeoutMs = 30 * 60_000): Promise<CommandResult> {
  return runAsync(
    k8sBinary("helm"),
    [...args, "--kubeconfig", cluster.kubeconfigPath, "--namespace", CHART_NAMESPACE],
    { timeoutMs },
  );
}

/**
 * `helm install` (or `upgrade`) of the release with `values` in a values file, the images pinned,
 * waiting until its workloads are ready. Throws with helm's own message when it fails.
 */
export async function applyRelease(
  cluster: E2ECluster,
  verb: "install" | "upgrade",
  values: object,
  images: ChartImages,
  timeout = "20m",
): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "sf-helm-values-"));
  try {
    const file = join(dir, "values.yaml");
    writeFileSync(file, stringify(values));
    const r = await helm(cluster, [
      verb,
      RELEASE,
      CHART_DIR,
      "-f",
      file,
      ...images.sets,
      "--wait",
      "--timeout",
      timeout,
    ]);
    if (r.code !== 0) throw new Error(`helm ${verb} ${RELEASE} failed (${r.code}): ${r.stderr.trim()}`);
    return r.stdout;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** kind/name of every object in the release's manifest (`helm get manifest`). */
export async function releaseObjects(cluster: E2ECluster): Promise<string[]> {
  const r = await helm(cluster, ["get", "manifest", RELEASE], 60_000);
  if (r.code !== 0) throw new Error(`helm get manifest ${RELEASE}: ${r.stderr.trim()}`);
  const out: string[] = [];
  for (const doc of r.stdout.split(/^---$/m)) {
    const kind = /^kind: (\S+)$/m.exec(doc)?.[1];
    const name = /^metadata:\n(?: {2}.*\n)*? {2}name: (\S+)$/m.exec(doc)?.[1];
    if (kind && name) out.push(`${kind}/${name}`);
  }
  return out;
}

/** Objects with the release's label in any namespace (`kubectl get -o name`). */
export async function labelledObjects(cluster: E2ECluster): Promise<string[]> {
  const r = await cluster.kubectl(["get", RELEASE_KINDS, "-A", "-l", RELEASE_SELECTOR, "-o", "name"]);
  if (r.code !== 0) throw new Error(`listing the release's objects: ${r.stderr.trim()}`);
  return r.stdout.split("\n").filter(Boolean);
}

/**
 * The shim as the systemd unit of docs/node-install.md runs it: restarted with the node agent's
 * kubeconfig from the chart's node-credentials DaemonSet, once that has written it. The bring-up's
 * token kubeconfig is removed, so only the chart's credentials remain. Returns ms until serving.
 */
export async function useChartNodeCredentials(node: ClusterNode, waitMs = 900_000): Promise<number> {
  const shimDir = `${node.xen.dom0HostDir}/shim`;
  const waited = await node.xen.exec(
    `i=0; while [ ! -s ${AGENT_KUBECONFIG} ] || [ ! -s ${AGENT_KUBECONFIG.replace(/kubeconfig$/, "token")} ]; do [ $i -ge ${Math.ceil(waitMs / 2000)} ] && exit 1; sleep 2; i=$((i+1)); done`,
    { timeoutMs: waitMs + 60_000 },
  );
  if (waited.code !== 0) throw new Error(`${AGENT_KUBECONFIG} did not appear in ${node.xen.name}'s dom0`);
  const at = node.shimArgs.indexOf("--kubeconfig");
  if (at < 0) throw new Error("the shim was started without --kubeconfig");
  node.shimArgs[at + 1] = AGENT_KUBECONFIG;
  const stopped = await node.xen.exec(
    `kill -9 $(cat ${shimDir}/shim.pid) && rm -f ${SHIM_SOCKET} ${shimDir}/kubeconfig`,
  );
  if (stopped.code !== 0) throw new Error(`stopping the shim: ${stopped.stderr}`);
  const started = Date.now();
  await startShim(node.xen, { args: node.shimArgs });
  return Date.now() - started;
}
