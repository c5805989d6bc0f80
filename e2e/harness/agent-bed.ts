// What the node agent's in-Xen tests and bench/migrate.ts share: a real apiserver on the host, a real
// registry with the example images, one emulated Xen node whose dom0 runs the real shim with the
// agent (reaching the apiserver at 10.0.2.2, QEMU's path to the host's loopback), and helpers to
// run a UnikernelVM's pod through crictl as the kubelet would, flip its runPolicy, and read its ticks.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { stringify } from "yaml";
import { k8sBinary } from "../../lib/paths.js";
import type { RunPolicy, UnikernelVM } from "../../api/index.js";
import { pushExampleImages } from "../cluster/images.js";
import { SHIM_SOCKET } from "../cluster/kubelet.js";
import { startShim, type Shim } from "../cluster/shim.js";
import { type ControlPlane, startControlPlane } from "./control-plane.js";
import { startRegistry, type TestRegistry } from "./registry.js";
import { startXenNode, type XenNode } from "../xen-node/index.js";

export const CHECKPOINT_DIR = "/var/lib/superfluid/checkpoints";
const CRICTL = `${k8sBinary("crictl")} --runtime-endpoint unix://${SHIM_SOCKET} --image-endpoint unix://${SHIM_SOCKET} --timeout 120s`;

/** One emulated Xen node running the real shim with the node agent. */
export interface AgentNode {
  node: XenNode;
  shim: Shim;
  sh(cmd: string, timeoutMs?: number): Promise<string>;
  crictl(args: string, timeoutMs?: number): Promise<string>;
}

export interface AgentBed extends AgentNode {
  cp: ControlPlane;
  registry: TestRegistry;
  /** The hello image as dom0 names it. */
  hello: string;
  kubectl(args: string[], input?: string): Promise<string>;
  stop(): Promise<void>;
}

/** A kubeconfig dom0 can use: the apiserver through 10.0.2.2, its certificate checked as localhost. */
function dom0Kubeconfig(cp: ControlPlane, server: string): string {
  const b64 = (path: string) => readFileSync(path).toString("base64");
  return stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [
      {
        name: "c",
        cluster: { server, "certificate-authority-data": b64(cp.pki.caCert), "tls-server-name": "localhost" },
      },
    ],
    users: [
      {
        name: "agent",
        user: { "client-certificate-data": b64(cp.pki.adminCert), "client-key-data": b64(cp.pki.adminKey) },
      },
    ],
    contexts: [{ name: "agent", context: { cluster: "c", user: "agent" } }],
    "current-context": "agent",
  });
}

/**
 * The shim + node agent in an already booted node, reaching the apiserver from dom0; `stops` gets its
 * cleanup. --node-address: the node's segment address, where the other nodes of the test reach it.
 */
export async function startAgentOnNode(
  cp: ControlPlane,
  node: XenNode,
  stops: Array<() => Promise<void>>,
): Promise<AgentNode> {
  writeFileSync(
    join(node.hostDir, "agent.kubeconfig"),
    dom0Kubeconfig(cp, `https://${node.hostIpFromDom0}:${cp.port}`),
    { mode: 0o600 },
  );
  const shim = await startShim(node, {
    args: [
      "--bridge",
      node.bridge,
      "--pod-cidr",
      node.podCidr,
      "--plain-http-registries",
      node.hostIpFromDom0,
      "--kubeconfig",
      `${node.dom0HostDir}/agent.kubeconfig`,
      "--node-name",
      node.name,
      "--node-address",
      node.segmentIp,
      "--migration-timeout",
      "300",
      "--log-level",
      "debug",
    ],
    readyTimeoutMs: 600_000,
  });
  stops.push(() => shim.stop());
  // The Node object a kubelet would register: a migration's source sends only to its addresses.
  const nodeObject = `{"apiVersion":"v1","kind":"Node","metadata":{"name":"${node.name}"}}`;
  const created = await cp.kubectl(["apply", "-f", "-"], { input: nodeObject });
  const addressed = await cp.kubectl([
    "patch",
    "node",
    node.name,
    "--subresource=status",
    "--type=merge",
    "-p",
    JSON.stringify({ status: { addresses: [{ type: "InternalIP", address: node.segmentIp }] } }),
  ]);
  if (created.code !== 0 || addressed.code !== 0)
    throw new Error(`registering node ${node.name}: ${created.stderr}${addressed.stderr}`);
  const sh = async (cmd: string, timeoutMs = 180_000) => {
    const r = await node.exec(cmd, { timeoutMs });
    if (r.code !== 0)
      throw new Error(
        `dom0 of ${node.name}: ${cmd}\nexit ${r.code}\n${r.stderr}${r.stdout}\n--- shim log:\n${shim.log(40)}`,
      );
    return r.stdout.trim();
  };
  return { node, shim, sh, crictl: (a, t) => sh(`${CRICTL} ${a}`, t) };
}

export async function startAgentBed(name: string): Promise<AgentBed> {
  const stops: Array<() => Promise<void>> = [];
  const stop = async () => {
    for (const s of stops.reverse()) await s().catch(() => undefined);
  };
  try {
    const [cp, registry] = await Promise.all([startControlPlane(), startRegistry()]);
    stops.push(
      () => cp.stop(),
      () => registry.stop(),
    );
    const pushed = await pushExampleImages(registry);
    const node = await startXenNode({ name, memoryMiB: 2048, bootTimeoutMs: 1_200_000 });
    stops.push(() => node.stop());
    const { shim, sh, crictl } = await startAgentOnNode(cp, node, stops);
    const kubectl = async (args: string[], input?: string) => {
      const r = await cp.kubectl(args, input === undefined ? {} : { input });
      if (r.code !== 0) throw new Error(`kubectl ${args.join(" ")}: ${r.stderr}`);
      return r.stdout;
    };
    const hello = pushed.hello!.hostRef.replace(registry.host, `${node.hostIpFromDom0}:${registry.port}`);
    return { cp, registry, node, shim, hello, sh, crictl, kubectl, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

export interface VmPod {
  vm: string;
  uid: string;
  pod: string;
  ctr: string;
}

/**
 * A UnikernelVM in the apiserver placed on the node (status.nodeName, as the operator writes it) and
 * its pod run through crictl with the annotations the operator puts on a pod: the kubelet's part.
 */
export async function runVmPod(bed: AgentBed, vm: string): Promise<VmPod> {
  await bed.kubectl(
    ["apply", "-f", "-"],
    JSON.stringify({
      apiVersion: "superfluid.dev/v1alpha1",
      kind: "UnikernelVM",
      metadata: { name: vm, namespace: "default" },
      spec: { image: "localhost/hello:1", runPolicy: "Running" },
    }),
  );
  await bed.kubectl([
    "patch",
    "unikernelvm",
    vm,
    "--subresource=status",
    "--type=merge",
    "-p",
    JSON.stringify({ status: { nodeName: bed.node.name, phase: "Running" } }),
  ]);
  const uid = (await getVm(bed, vm)).metadata.uid!;
  const file = (n: string, v: unknown) => {
    writeFileSync(join(bed.node.hostDir, n), JSON.stringify(v));
    return `${bed.node.dom0HostDir}/${n}`;
  };
  const podCfg = file(`pod-${vm}.json`, {
    metadata: { name: vm, namespace: "default", uid: `uid-${vm}`, attempt: 0 },
    hostname: vm,
    log_directory: `/var/log/pods/${vm}`,
    // As the operator writes them: the node binds the sandbox to the VM by namespace, name and uid.
    annotations: { "superfluid.dev/vm": `default/${vm}`, "superfluid.dev/vm-uid": uid },
  });
  const ctrCfg = file(`ctr-${vm}.json`, {
    metadata: { name: "main" },
    image: { image: bed.hello },
    log_path: "main/0.log",
  });
  await bed.crictl(`pull ${bed.hello}`);
  const pod = await bed.crictl(`runp ${podCfg}`);
  let ctr: string;
  try {
    ctr = await bed.crictl(`create ${pod} ${ctrCfg} ${podCfg}`);
  } catch (err) {
    // The first vif hotplug on a cold, loaded node can outlast libxl's timeout; the kubelet retries too.
    if (!/hotplug|timeout/i.test(String(err))) throw err;
    ctr = await bed.crictl(`create ${pod} ${ctrCfg} ${podCfg}`);
  }
  await bed.crictl(`start ${ctr}`);
  return { vm, uid, pod, ctr };
}

export async function getVm(bed: AgentBed, vm: string): Promise<UnikernelVM> {
  return JSON.parse(await bed.kubectl(["get", "unikernelvm", vm, "-o", "json"])) as UnikernelVM;
}

export async function setRunPolicy(bed: AgentBed, vm: string, runPolicy: RunPolicy): Promise<void> {
  await bed.kubectl([
    "patch",
    "unikernelvm",
    vm,
    "--type=merge",
    "-p",
    JSON.stringify({ spec: { runPolicy } }),
  ]);
}

/** Polls the VM until `want` holds; returns the VM. Fast polling: the bench times through this. */
export async function waitForVm(
  bed: AgentBed,
  vm: string,
  what: string,
  want: (v: UnikernelVM) => boolean,
  timeoutMs = 300_000,
  pollMs = 200,
): Promise<UnikernelVM> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await getVm(bed, vm);
    if (want(v)) return v;
    if (Date.now() > deadline)
      throw new Error(
        `timed out waiting for ${vm}: ${what}\nstatus: ${JSON.stringify(v.status)}\n--- shim log:\n${bed.shim.log(40)}`,
      );
    await sleep(pollMs);
  }
}

export const condition = (v: UnikernelVM, type: string) => v.status?.conditions?.find((c) => c.type === type);

export interface Tick {
  /** CRI log timestamp (ms since the epoch, dom0's clock). */
  at: number;
  n: number;
}

/** `hello: tick N` lines from the CRI log, with their timestamps. */
export async function ticks(bed: AgentBed, vm: string): Promise<Tick[]> {
  const text = await bed.sh(`cat /var/log/pods/${vm}/main/0.log`);
  const out: Tick[] = [];
  for (const line of text.split("\n")) {
    const m = /^(\S+) (?:stdout|stderr) \S+ hello: tick (\d+)/.exec(line);
    if (m) out.push({ at: Date.parse(m[1]!), n: Number(m[2]) });
  }
  return out;
}
