// A real kubelet inside the dom0 of an emulated Xen node, registered with a (host-side) control plane.
//
// Why dom0 and not the host (measured and argued in docs/e2e.md): a kubelet on the host rewrites the
// host's kernel tunables (kernel.panic_on_oops=1, vm.overcommit_memory=1: container_manager_linux.go
// setupKernelTunables) on a machine shared with other work, its probes cannot reach pod IPs (they live
// on the xenbr0 bridge inside QEMU), and its pod log dir would have to be shared with dom0.
//
// The one thing a dom0 kubelet cannot do by itself is be reachable from the apiserver (the host cannot
// route to dom0's 10.0.2.15). So the kubelet runs with --cloud-provider=external, which leaves the
// node's addresses to a cloud controller, and this module acts as that controller: it forwards a host
// loopback port to the kubelet's identical dom0 port and writes InternalIP 127.0.0.1 into the node's
// status. `kubectl logs` then goes apiserver -> 127.0.0.1:<port> -> QEMU hostfwd -> kubelet.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { stringify } from "yaml";
import { LABELS } from "../../api/annotations.js";
import { logger } from "../../lib/log.js";
import { freePort } from "../../lib/net.js";
import { k8sBinary } from "../../lib/paths.js";
import type { ControlPlane } from "../harness/control-plane.js";
import { issueCertificate } from "../harness/pki.js";
import type { XenNode } from "../xen-node/index.js";
import { qmpHumanCommand } from "../xen-node/qmp.js";

const log = logger("e2e-kubelet");

/** Taint on every Xen node: ordinary pods stay off; the chart's RuntimeClass `superfluid` tolerates it. */
export const XEN_TAINT = { key: LABELS.xenNode, value: "true", effect: "NoSchedule" } as const;
const CLOUD_TAINT = "node.cloudprovider.kubernetes.io/uninitialized";
/**
 * Environment for the Go daemons in dom0 (kubelet, kube-proxy). QEMU runs all of dom0's vCPUs on one
 * host thread, so dom0 has at most one host core to share. A kubelet with a P per vCPU was measured
 * at 210 % of dom0's CPU (22 CPU-minutes in 22 minutes, top in dom0) on a loaded machine, starving
 * the shim and Xen's vif hotplug script until libxl killed it ("vif-bridge online because of
 * timeout") and no unikernel came up. One P and a lazier GC leave the rest of dom0 to the VMs.
 */
export const GO_IN_DOM0 = "GOMAXPROCS=1 GOGC=400";
/**
 * The kubelet's environment in dom0: a Go P per dom0 vCPU (nproc, read in dom0; 1 when it has one),
 * GOGC as GO_IN_DOM0. Not one P as for the other Go daemons: at a few hundred pods per node the
 * kubelet's pod config merge is O(pods) per pod update and ran at 100 % of its one P, which paced
 * every create (docs/resources.md, "The kubelet's wall"). The 210 % above was with every P free.
 */
export function kubeletGoEnv(gogc?: number): string {
  const gc = gogc ? `GOGC=${gogc}` : (/GOGC=\d+/.exec(GO_IN_DOM0)?.[0] ?? "GOGC=400");
  return `GOMAXPROCS=$(nproc 2>/dev/null || echo 1) ${gc}`;
}
/** Where the shim listens in dom0 (its default). */
export const SHIM_SOCKET = "/run/superfluid/cri.sock";

export interface KubeletOptions {
  /** Kubelet verbosity (default 2: pod lifecycle lines, not every HTTP call). */
  verbosity?: number;
  /** How long to wait for the Node to become Ready (default 900 s: a loaded 2-core machine under TCG emulation). */
  readyTimeoutMs?: number;
  /** Pods the kubelet admits (default DEFAULT_MAX_PODS); the node's pod subnet must hold as many. */
  maxPods?: number;
  /**
   * The kubelet's GOGC (default 400, GO_IN_DOM0: less collecting on dom0's one host core). A run
   * that measures dom0's memory per pod sets Go's own default, 100, as a real host runs it: at 400
   * the heap may hold five times what is live, which counted as memory per pod.
   */
  gogc?: number;
  /**
   * The kubelet's feature gates, e.g. `{ EventedPLEG: true }`: the kubelet then learns of container
   * starts and exits from the shim's GetContainerEvents stream and relists only every 5 minutes.
   */
  featureGates?: Record<string, boolean>;
}

/**
 * A thousand unikernels per Xen node: the kubelet's default of 110 pods would stop it first. Each
 * pod takes an address of the node's pod subnet, hence the /21 per node (pod-network.ts).
 */
export const DEFAULT_MAX_PODS = 1024;

export interface Kubelet {
  readonly nodeName: string;
  /** Host loopback port that reaches the kubelet's HTTPS port (the same number in dom0). */
  readonly port: number;
  /** Milliseconds from launching the kubelet in dom0 to the Node's Ready condition. */
  readonly startToReadyMs: number;
  /** The kubelet log, read through the host share. */
  log(lines?: number): string;
  /** The whole log, on the host share. */
  readonly logPath: string;
  /**
   * Stops the kubelet and starts it again with the same configuration, keeping its Node: as an
   * upgrade or a crash does. Resolves once the Node is Ready again, with the ms that took.
   */
  restart(): Promise<number>;
  stop(): Promise<void>;
}

/** Who a dom0 kubeconfig authenticates as: a client certificate (files) or a bearer token. */
export type Dom0Credentials = { cert: string; key: string } | { token: string };

/** A kubeconfig that works from inside dom0 (the apiserver via the host's loopback, 10.0.2.2). */
export function dom0Kubeconfig(cp: ControlPlane, node: XenNode, credentials: Dom0Credentials): string {
  const b64 = (path: string) => readFileSync(path).toString("base64");
  const user =
    "token" in credentials
      ? { token: credentials.token }
      : { "client-certificate-data": b64(credentials.cert), "client-key-data": b64(credentials.key) };
  return stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [
      {
        name: "superfluid",
        // The apiserver's certificate names localhost, not 10.0.2.2: verify it under that name.
        cluster: {
          server: `https://${node.hostIpFromDom0}:${cp.port}`,
          "certificate-authority-data": b64(cp.pki.caCert),
          "tls-server-name": "localhost",
        },
      },
    ],
    users: [{ name: "dom0", user }],
    contexts: [{ name: "dom0", context: { cluster: "superfluid", user: "dom0" } }],
    "current-context": "dom0",
  });
}

function kubeletConfig(
  port: number,
  dom0Dir: string,
  maxPods: number,
  featureGates: Record<string, boolean> = {},
): string {
  return stringify({
    apiVersion: "kubelet.config.k8s.io/v1beta1",
    kind: "KubeletConfiguration",
    port,
    maxPods,
    ...(Object.keys(featureGates).length > 0 ? { featureGates } : {}),
    podsPerCore: 0,
    address: "0.0.0.0",
    readOnlyPort: 0,
    healthzPort: 0,
    tlsCertFile: `${dom0Dir}/serving.crt`,
    tlsPrivateKeyFile: `${dom0Dir}/serving.key`,
    authentication: {
      x509: { clientCAFile: `${dom0Dir}/ca.crt` },
      webhook: { enabled: false },
      anonymous: { enabled: false },
    },
    // The apiserver is the only client (it presents the admin certificate the CA signed).
    authorization: { mode: "AlwaysAllow" },
    containerRuntimeEndpoint: `unix://${SHIM_SOCKET}`,
    imageServiceEndpoint: `unix://${SHIM_SOCKET}`,
    // dom0 has no systemd and no QoS cgroup tree to manage: the unikernels are not Linux processes.
    cgroupDriver: "cgroupfs",
    cgroupsPerQOS: false,
    enforceNodeAllocatable: [],
    failSwapOn: false,
    localStorageCapacityIsolation: false,
    // dom0's root is a tmpfs overlay: keep disk-pressure eviction and image GC from firing on it.
    evictionHard: { "memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%" },
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    registerWithTaints: [XEN_TAINT],
    resolvConf: "",
    nodeStatusUpdateFrequency: "10s",
    shutdownGracePeriod: "0s",
    // CreateContainer builds the domain; in a loaded emulated dom0 that outlasted the 2 min default
    // ("context deadline exceeded" while the shim was still working).
    runtimeRequestTimeout: "10m",
    serializeImagePulls: false,
  });
}

async function waitForNode(
  cp: ControlPlane,
  name: string,
  jsonpath: string,
  want: (v: string) => boolean,
  timeoutMs: number,
  kubeletLog: () => string,
): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    const r = await cp.kubectl(["get", "node", name, "-o", `jsonpath=${jsonpath}`]);
    last = r.code === 0 ? r.stdout : r.stderr;
    if (r.code === 0 && want(r.stdout)) return r.stdout;
    await sleep(1000);
  }
  throw new Error(
    `node ${name}: timed out after ${timeoutMs} ms waiting for ${jsonpath} (last: ${last.slice(0, 200)})\n--- kubelet log ---\n${kubeletLog()}`,
  );
}

/**
 * Starts a kubelet in `node`'s dom0 against `cp` and waits for its Node to be Ready. The CRI shim must
 * already be serving SHIM_SOCKET in dom0 (the kubelet exits at start without a runtime).
 */
export async function startKubelet(
  cp: ControlPlane,
  node: XenNode,
  opts: KubeletOptions = {},
): Promise<Kubelet> {
  const nodeName = node.name;
  const dir = join(node.hostDir, "kubelet");
  const dom0Dir = `${node.dom0HostDir}/kubelet`;
  await node.exec(`mkdir -p ${dom0Dir}`);
  const client = issueCertificate(
    cp.dir,
    `kubelet-${nodeName}-${process.pid}`,
    `/O=system:nodes/CN=system:node:${nodeName}`,
    { client: true },
  );
  const serving = issueCertificate(cp.dir, `kubelet-serving-${nodeName}-${process.pid}`, `/CN=${nodeName}`, {
    serverNames: [nodeName, "localhost"],
    ips: ["127.0.0.1", "10.0.2.15"],
  });
  writeFileSync(join(dir, "ca.crt"), readFileSync(cp.pki.caCert));
  writeFileSync(join(dir, "serving.crt"), readFileSync(serving.cert));
  writeFileSync(join(dir, "serving.key"), readFileSync(serving.key), { mode: 0o600 });
  writeFileSync(join(dir, "kubeconfig"), dom0Kubeconfig(cp, node, client), { mode: 0o600 });

  // The same port number on both sides: the apiserver dials the port the kubelet reports.
  const port = await freePort();
  writeFileSync(
    join(dir, "config.yaml"),
    kubeletConfig(port, dom0Dir, opts.maxPods ?? DEFAULT_MAX_PODS, opts.featureGates),
  );
  const fwd = await qmpHumanCommand(
    join(node.stateDir, "qmp.sock"),
    `hostfwd_add net0 tcp:127.0.0.1:${port}-10.0.2.15:${port}`,
  );
  if (fwd.trim() !== "") throw new Error(`kubelet port forward refused by QEMU: ${fwd.trim()}`);

  const logPath = join(dir, "kubelet.log");
  const kubeletLog = (lines = 60) => {
    try {
      return readFileSync(logPath, "utf8").split("\n").slice(-lines).join("\n");
    } catch {
      return "(no kubelet log)";
    }
  };
  const flags = [
    `--config=${dom0Dir}/config.yaml`,
    `--kubeconfig=${dom0Dir}/kubeconfig`,
    "--root-dir=/var/lib/kubelet",
    `--hostname-override=${nodeName}`,
    `--node-labels=${LABELS.xenNode}=true`,
    "--cloud-provider=external",
    `--v=${opts.verbosity ?? 2}`,
  ];
  // cgroup2 for the kubelet's container manager and cAdvisor; dom0-init does not mount it.
  const launch = [
    "set -e",
    "mountpoint -q /sys/fs/cgroup || mount -t cgroup2 none /sys/fs/cgroup",
    "mkdir -p /var/lib/kubelet /var/log/pods",
    // As for the shim's image store: a filesystem cAdvisor can size (dom0's root is an overlay).
    "mountpoint -q /var/lib/kubelet || mount -t tmpfs -o size=256m tmpfs /var/lib/kubelet",
    `${kubeletGoEnv(opts.gogc)} setsid ${k8sBinary("kubelet")} ${flags.join(" ")} </dev/null >${dom0Dir}/kubelet.log 2>&1 & echo $! >${dom0Dir}/kubelet.pid`,
  ].join("\n");
  const started = Date.now();
  const r = await node.exec(launch);
  if (r.code !== 0) throw new Error(`starting kubelet in ${nodeName} failed: ${r.stderr}`);
  log.info("kubelet launched in dom0", { node: nodeName, port });

  const kill = () =>
    node.exec(
      `kill $(cat ${dom0Dir}/kubelet.pid) 2>/dev/null; for i in $(seq 50); do kill -0 $(cat ${dom0Dir}/kubelet.pid) 2>/dev/null || exit 0; sleep 0.2; done; kill -9 $(cat ${dom0Dir}/kubelet.pid)`,
    );
  const stop = async () => {
    await kill().catch(() => undefined);
    await cp.kubectl(["delete", "node", nodeName, "--ignore-not-found", "--wait=false"]);
  };
  const READY =
    '{.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].lastHeartbeatTime}';
  const restart = async () => {
    // dom0's clock stamps the heartbeats: compare them with each other, not with the host's clock.
    const before = await cp.kubectl(["get", "node", nodeName, "-o", `jsonpath=${READY}`]);
    if (before.code !== 0) throw new Error(`reading node ${nodeName} failed: ${before.stderr}`);
    const lastBeat = Date.parse(before.stdout.split(" ")[1] ?? "");
    const r0 = await kill();
    if (r0.code !== 0) throw new Error(`stopping the kubelet in ${nodeName} failed: ${r0.stderr}`);
    // The same launch appends to the same log: the restart's lines follow the first run's.
    const from = Date.now();
    const r = await node.exec(launch.replace(`>${dom0Dir}/kubelet.log`, `>>${dom0Dir}/kubelet.log`));
    if (r.code !== 0) throw new Error(`restarting the kubelet in ${nodeName} failed: ${r.stderr}`);
    // Ready again once this kubelet has posted its own heartbeat (it posts one as it starts).
    await waitForNode(
      cp,
      nodeName,
      READY,
      (v) => {
        const [status, beat] = v.split(" ");
        return status === "True" && (Number.isNaN(lastBeat) || Date.parse(beat ?? "") > lastBeat);
      },
      opts.readyTimeoutMs ?? 900_000,
      kubeletLog,
    );
    return Date.now() - from;
  };
  try {
    const timeoutMs = opts.readyTimeoutMs ?? 900_000;
    await waitForNode(cp, nodeName, "{.metadata.name}", (v) => v === nodeName, timeoutMs, kubeletLog);
    // Our stand-in for a cloud controller's node-address loop (see the header comment).
    const addresses = {
      status: {
        addresses: [
          { type: "InternalIP", address: "127.0.0.1" },
          // Where the other nodes reach this one (migration streams): the source agent sends only
          // to an address of the target Node.
          { type: "InternalIP", address: node.segmentIp },
          { type: "Hostname", address: nodeName },
        ],
      },
    };
    const patched = await cp.kubectl([
      "patch",
      "node",
      nodeName,
      "--subresource=status",
      "--type=merge",
      "-p",
      JSON.stringify(addresses),
    ]);
    if (patched.code !== 0) throw new Error(`setting node ${nodeName}'s addresses failed: ${patched.stderr}`);
    const untainted = await cp.kubectl(["taint", "node", nodeName, `${CLOUD_TAINT}-`]);
    if (untainted.code !== 0 && !/not found/.test(untainted.stderr))
      throw new Error(`removing ${CLOUD_TAINT} failed: ${untainted.stderr}`);
    await waitForNode(
      cp,
      nodeName,
      '{.status.conditions[?(@.type=="Ready")].status}',
      (v) => v === "True",
      timeoutMs,
      kubeletLog,
    );
  } catch (err) {
    await stop();
    throw err;
  }
  const startToReadyMs = Date.now() - started;
  log.info("node Ready", { node: nodeName, startToReadyMs });
  return { nodeName, port, startToReadyMs, log: kubeletLog, logPath, restart, stop };
}
