// The end-to-end cluster on one machine: a private control plane (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler) and the operator on the host; one or more emulated Xen
// nodes, each with the CRI shim and a real kubelet in dom0; a registry on loopback holding the
// examples' images. Used by `npm run demo` and the *.xen.test.ts scenarios. stop() leaves nothing.
//
//   const cluster = await startCluster();
//   await cluster.kubectl(["apply", "-f", "examples/hello.yaml"]);
//   ...
//   await cluster.stop();
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { logger } from "../../lib/log.js";
import { waitFor } from "../../lib/net.js";
import { K8S_BIN_DIR, k8sBinary, REPO_ROOT } from "../../lib/paths.js";
import { runAsync } from "../../lib/process.js";
import { type CommandResult, type ControlPlane, startControlPlane } from "../harness/control-plane.js";
import { startRegistry, type TestRegistry } from "../harness/registry.js";
import { startXenNode, type XenNode } from "../xen-node/index.js";
import { pushExampleImages, REGISTRY_PORT_IN_DOM0, type ExampleImages } from "./images.js";
import { installChartObjects, nodeAgentToken } from "./chart-objects.js";
import type { Footprint } from "./leftovers.js";
import { dom0Kubeconfig, type Kubelet, startKubelet } from "./kubelet.js";
import { startKubeProxy, type KubeProxy } from "./kube-proxy.js";
import { kubeProxyManifests, waitForKubeProxyRules } from "./kube-proxy-pod.js";
import { type Dom0Containerd, startDom0Containerd } from "./dom0-containerd.js";
import { pushLinuxImages, type LinuxImages } from "./linux-images.js";
import { startOperator, type Operator } from "./operator.js";
import { collectDiagnostics } from "./diagnostics.js";
import { type Shim, startShim } from "./shim.js";

const log = logger("e2e-cluster");
const VIF_BRIDGE_LEAN = join(REPO_ROOT, "e2e", "cluster", "vif-bridge-lean.sh");
/** The host's loopback as every emulated node's dom0 reaches it (QEMU's user network). */
const XEN_NODE_HOST_IP: XenNode["hostIpFromDom0"] = "10.0.2.2";

export interface ClusterOptions {
  /** Number of emulated Xen nodes (default 1). */
  nodes?: number;
  /** Node name prefix (default "xen"): nodes are <prefix>-1, <prefix>-2, ... */
  namePrefix?: string;
  /** Start the operator (default true). */
  operator?: boolean;
  /** QEMU memory per node (MiB). */
  nodeMemoryMiB?: number;
  /** dom0's memory per node (MiB; default the node's, 1,024). */
  dom0MemoryMiB?: number;
  /** The kubelet's maxPods per node (default 1,024: kubelet.ts DEFAULT_MAX_PODS). */
  maxPods?: number;
  /** The kubelet's GOGC (kubelet.ts KubeletOptions.gogc; default 400). */
  kubeletGogc?: number;
  /** The kubelet's feature gates (kubelet.ts KubeletOptions.featureGates). */
  kubeletFeatureGates?: Record<string, boolean>;
  /** Prefix length of each node's pod subnet (default 21, room for 2,046 pods: pod-network.ts). */
  podPrefixLength?: number;
  /**
   * containerd + runc in each dom0 behind the shim (--fallback-runtime-endpoint), as on a real node,
   * and kube-proxy as a DaemonSet pod through it instead of a dom0 process (default false).
   */
  containerd?: boolean;
}

export interface ClusterNode {
  readonly xen: XenNode;
  readonly shim: Shim;
  readonly kubelet: Kubelet;
  /** kube-proxy as a dom0 process (undefined with `containerd`: then it is a DaemonSet pod). */
  readonly kubeProxy: KubeProxy | undefined;
  /** containerd in dom0, the shim's fallback runtime (with `containerd`). */
  readonly containerd: Dom0Containerd | undefined;
  /** The shim's command line, to start it again after a test killed it. */
  readonly shimArgs: string[];
}

/** Milliseconds each bring-up step took (they overlap where they can). */
export interface BringUpTimings {
  controlPlaneMs: number;
  registryAndImagesMs: number;
  nodeBootMs: number[];
  shimStartMs: number[];
  kubeletStartToReadyMs: number[];
  totalMs: number;
}

export interface E2ECluster {
  readonly cp: ControlPlane;
  readonly kubeconfigPath: string;
  readonly nodes: ClusterNode[];
  readonly registry: TestRegistry;
  readonly images: ExampleImages;
  /** With `containerd`: the Linux images pushed (kube-proxy, a busybox web server). */
  readonly linuxImages: LinuxImages | undefined;
  readonly operator: Operator | undefined;
  readonly timings: BringUpTimings;
  kubectl(args: string[], opts?: { input?: string }): Promise<CommandResult>;
  /** Its temp dirs and host loopback ports, for checking after stop() that none is left (leftovers.ts). */
  readonly footprint: Footprint;
  /** Operator, shim and kubelet logs, events, and `kubectl describe` of pods and VMs in `namespace`. */
  diagnostics(namespace?: string): Promise<string>;
  stop(): Promise<void>;
}

/** Runs `fn` for cleanup; collects failures instead of stopping at the first. */
async function stopAll(steps: Array<() => Promise<void>>): Promise<void> {
  const errors: string[] = [];
  for (const step of steps) {
    try {
      await step();
    } catch (err) {
      errors.push((err as Error).message);
    }
  }
  if (errors.length) log.warn("cluster teardown had errors", { errors });
}

async function startNode(
  name: string,
  cp: ControlPlane,
  registryPort: number,
  agentToken: string,
  sizing: Pick<
    ClusterOptions,
    | "nodeMemoryMiB"
    | "dom0MemoryMiB"
    | "maxPods"
    | "podPrefixLength"
    | "containerd"
    | "kubeletGogc"
    | "kubeletFeatureGates"
  >,
): Promise<ClusterNode> {
  // The kubelet advertises dom0's CPUs as the node's; a VM pod requests a share of one (the
  // operator's CPU allocation ratio), and its guest memory from the node's guest-memory resource.
  const xen = await startXenNode({
    name,
    cpus: 4,
    ...(sizing.nodeMemoryMiB ? { memoryMiB: sizing.nodeMemoryMiB } : {}),
    ...(sizing.dom0MemoryMiB ? { dom0MemoryMiB: sizing.dom0MemoryMiB } : {}),
    ...(sizing.podPrefixLength ? { podPrefixLength: sizing.podPrefixLength } : {}),
  });
  try {
    // The examples name images as localhost:5000/...: dom0's loopback port 5000 leads to the host's
    // registry (10.0.2.2 is the host's loopback through QEMU's user network).
    // And Xen's vif hotplug script replaced by a lean one in this dom0 only (vif-bridge-lean.sh says why).
    const fwd = await xen.exec(
      `install -m 755 ${VIF_BRIDGE_LEAN} /etc/xen/scripts/vif-bridge || exit 1\nsetsid socat TCP-LISTEN:${REGISTRY_PORT_IN_DOM0},bind=127.0.0.1,fork,reuseaddr TCP:${xen.hostIpFromDom0}:${registryPort} </dev/null >/dev/null 2>&1 & echo $! >/run/superfluid/registry-forward.pid`,
    );
    if (fwd.code !== 0)
      throw new Error(`vif hotplug script or registry forward in ${name} failed: ${fwd.stderr}`);
    // The pod network is the node's xenbr0 and subnet, so pods on different nodes route to each other.
    // kube-proxy needs only the apiserver: it starts alongside the shim and the kubelet (each Go
    // binary takes minutes to start in a loaded emulated dom0).
    // With containerd, kube-proxy is a DaemonSet pod (started once the nodes are up).
    const kubeProxyPromise =
      !sizing.containerd && existsSync(join(K8S_BIN_DIR, "kube-proxy"))
        ? startKubeProxy(cp, xen).catch((err: Error) => {
            log.warn("kube-proxy did not start; Services are not reachable by ClusterIP on this node", {
              node: name,
              error: err.message,
            });
            return undefined;
          })
        : Promise.resolve(undefined);
    let shim: Shim | undefined;
    let containerd: Dom0Containerd | undefined;
    try {
      containerd = sizing.containerd ? await startDom0Containerd(xen) : undefined;
      // The shim's node agent writes domain id, state and boot time onto its pods and acts on
      // runPolicy, as the chart's shim ServiceAccount (node-agent ClusterRole), not as admin.
      mkdirSync(join(xen.hostDir, "shim"), { recursive: true });
      writeFileSync(join(xen.hostDir, "shim", "kubeconfig"), dom0Kubeconfig(cp, xen, { token: agentToken }), {
        mode: 0o600,
      });
      // The Node's InternalIP is 127.0.0.1 here (the apiserver reaches kubelets through forwards), so
      // tell the agent where the other node reaches it for a migration stream: the segment address.
      const agentArgs = [
        "--kubeconfig",
        `${xen.dom0HostDir}/shim/kubeconfig`,
        "--node-name",
        name,
        "--node-address",
        xen.segmentIp,
      ];
      const shimArgs = [
        "--bridge",
        xen.bridge,
        "--pod-cidr",
        xen.podCidr,
        ...agentArgs,
        ...(containerd ? ["--fallback-runtime-endpoint", containerd.endpoint] : []),
      ];
      shim = await startShim(xen, { args: shimArgs });
      const kubelet = await startKubelet(cp, xen, {
        ...(sizing.maxPods ? { maxPods: sizing.maxPods } : {}),
        ...(sizing.kubeletGogc ? { gogc: sizing.kubeletGogc } : {}),
        ...(sizing.kubeletFeatureGates ? { featureGates: sizing.kubeletFeatureGates } : {}),
      });
      return { xen, shim, shimArgs, kubelet, kubeProxy: await kubeProxyPromise, containerd };
    } catch (err) {
      await (await kubeProxyPromise)?.stop();
      await shim?.stop();
      await containerd?.stop();
      throw err;
    }
  } catch (err) {
    await xen.stop();
    throw err;
  }
}

export async function startCluster(opts: ClusterOptions = {}): Promise<E2ECluster> {
  const t0 = Date.now();
  const nodeCount = opts.nodes ?? 1;
  const prefix = opts.namePrefix ?? "xen";
  const cleanups: Array<() => Promise<void>> = [];
  const teardown = () => stopAll([...cleanups].reverse());
  try {
    // Control plane, registry + images and node boot are independent: overlap them.
    const cpStarted = Date.now();
    // With containerd, Linux pods may use in-cluster config (the chart's operator and node DaemonSet):
    // the `kubernetes` Service then leads, through the kube-proxy pod's rules, to where dom0
    // reaches the host's apiserver.
    const cpPromise = startControlPlane(opts.containerd ? { advertiseAddress: XEN_NODE_HOST_IP } : {}).then(
      (cp) => {
        cleanups.push(() => cp.stop());
        return { cp, ms: Date.now() - cpStarted };
      },
    );
    const registryPromise = startRegistry().then(async (registry) => {
      cleanups.push(() => registry.stop());
      const images = await pushExampleImages(registry);
      const linuxImages = opts.containerd ? await pushLinuxImages(registry) : undefined;
      return { registry, images, linuxImages, ms: Date.now() - cpStarted };
    });
    const { cp, ms: controlPlaneMs } = await cpPromise;
    await cp.startScheduler();
    // Service endpoints (EndpointSlices), namespace and garbage collection of the operator's pods.
    await cp.startControllerManager({
      controllers: [
        "endpointslice-controller",
        "namespace-controller",
        "garbage-collector-controller",
        "serviceaccount-controller",
        "node-lifecycle-controller",
        // kube-proxy, the scenarios' Linux DaemonSets and the chart's workloads (its operator's
        // Deployment; kube-root-ca.crt for the ServiceAccount tokens of in-cluster pods), on
        // nodes with containerd.
        ...(opts.containerd
          ? [
              "daemonset-controller",
              "deployment-controller",
              "replicaset-controller",
              "root-ca-certificate-publisher-controller",
            ]
          : []),
      ],
    });
    // The chart's RuntimeClass (placement onto the tainted Xen nodes) and RBAC (the node agent's identity).
    await installChartObjects(cp);
    const agentToken = await nodeAgentToken(cp);
    // Pods are refused until their namespace's `default` ServiceAccount exists: proof that the
    // controller-manager runs, before anything depends on it.
    await waitFor(
      "the default ServiceAccount (kube-controller-manager)",
      async () =>
        (await cp.kubectl(["get", "serviceaccount", "default", "-n", "default"])).code === 0
          ? true
          : undefined,
      180_000,
      1000,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n${cp.logs(20)}`);
    });
    // The operator needs only the apiserver: it watches while the nodes come up.
    let operator: Operator | undefined;
    if (opts.operator ?? true) {
      operator = await startOperator(cp);
      cleanups.push(() => operator!.stop());
    }
    const { registry, images, linuxImages, ms: registryAndImagesMs } = await registryPromise;

    const names = Array.from({ length: nodeCount }, (_, i) => `${prefix}-${i + 1}`);
    const settled = await Promise.allSettled(
      names.map((n) => startNode(n, cp, registry.port, agentToken, opts)),
    );
    const nodes: ClusterNode[] = [];
    for (const s of settled) {
      if (s.status === "fulfilled") {
        nodes.push(s.value);
        cleanups.push(async () => {
          await s.value.kubeProxy?.stop();
          await s.value.kubelet.stop();
          await s.value.shim.stop();
          await s.value.containerd?.stop();
          await s.value.xen.stop();
        });
      }
    }
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
    if (failed) throw failed.reason;
    if (linuxImages) await startKubeProxyDaemonSet(cp, nodes, linuxImages.kubeProxy.ref);

    const timings: BringUpTimings = {
      controlPlaneMs,
      registryAndImagesMs,
      nodeBootMs: nodes.map((n) => n.xen.bootMs),
      shimStartMs: nodes.map((n) => n.shim.startMs),
      kubeletStartToReadyMs: nodes.map((n) => n.kubelet.startToReadyMs),
      totalMs: Date.now() - t0,
    };
    log.info("e2e cluster up", { ...timings });
    // Not cp.kubectl: that one kills kubectl after 3 min, and `kubectl wait` on an emulated node may
    // legitimately take longer (its own --timeout bounds it).
    const kubectl = (args: string[], o?: { input?: string }) =>
      runAsync(k8sBinary("kubectl"), ["--kubeconfig", cp.kubeconfigPath, ...args], {
        ...(o?.input !== undefined ? { input: o.input } : {}),
        timeoutMs: 30 * 60_000,
      });
    return {
      cp,
      kubeconfigPath: cp.kubeconfigPath,
      nodes,
      registry,
      images,
      linuxImages,
      operator,
      timings,
      footprint: {
        dirs: [cp.dir, registry.dir, ...nodes.map((n) => n.xen.stateDir)],
        ports: [
          cp.port,
          registry.port,
          ...(operator ? [operator.httpPort] : []),
          ...nodes.flatMap((n) => [n.xen.agentPort, n.kubelet.port]),
        ],
      },
      kubectl,
      diagnostics: (namespace = "default") => collectDiagnostics(kubectl, nodes, operator, namespace),
      stop: teardown,
    };
  } catch (err) {
    await teardown();
    throw err;
  }
}

/** kube-proxy as a DaemonSet through each node's containerd; waits until every node has its rules. */
async function startKubeProxyDaemonSet(cp: ControlPlane, nodes: ClusterNode[], image: string): Promise<void> {
  const first = nodes[0];
  if (!first) return;
  const applied = await cp.kubectl(["apply", "-f", "-"], { input: kubeProxyManifests(cp, first.xen, image) });
  if (applied.code !== 0) throw new Error(`applying the kube-proxy DaemonSet failed: ${applied.stderr}`);
  const ready = await Promise.all(nodes.map((n) => waitForKubeProxyRules(n.xen, 900)));
  const late = nodes.filter((_, i) => !ready[i]).map((n) => n.xen.name);
  if (late.length) {
    const pods = await cp.kubectl(["get", "pods", "-n", "kube-system", "-o", "wide"]);
    throw new Error(`kube-proxy pods did not program their rules on ${late.join(", ")}:\n${pods.stdout}`);
  }
  log.info("kube-proxy DaemonSet has programmed every node", { nodes: nodes.length });
}
