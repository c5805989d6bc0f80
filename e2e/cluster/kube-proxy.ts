// kube-proxy (iptables mode) in dom0, so that a Service's ClusterIP leads to its unikernel pods from
// the node and from other pods. Runs only when setup built the binary (K8S_BIN_DIR/kube-proxy).
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { K8S_BIN_DIR } from "../../lib/paths.js";
import type { ControlPlane } from "../harness/control-plane.js";
import { issueCertificate } from "../harness/pki.js";
import type { XenNode } from "../xen-node/index.js";
import { dom0Kubeconfig, GO_IN_DOM0 } from "./kubelet.js";
import { POD_NETWORK } from "../xen-node/pod-network.js";

export interface KubeProxy {
  log(lines?: number): string;
  stop(): Promise<void>;
}

export async function startKubeProxy(cp: ControlPlane, node: XenNode): Promise<KubeProxy> {
  const dir = join(node.hostDir, "kube-proxy");
  const dom0Dir = `${node.dom0HostDir}/kube-proxy`;
  mkdirSync(dir, { recursive: true });
  // CN system:kube-proxy is what the default RBAC binds to the system:node-proxier role.
  const cert = issueCertificate(cp.dir, `kube-proxy-${node.name}-${process.pid}`, "/CN=system:kube-proxy", {
    client: true,
  });
  writeFileSync(join(dir, "kubeconfig"), dom0Kubeconfig(cp, node, cert), { mode: 0o600 });
  writeFileSync(
    join(dir, "config.yaml"),
    stringify({
      apiVersion: "kubeproxy.config.k8s.io/v1alpha1",
      kind: "KubeProxyConfiguration",
      clientConnection: { kubeconfig: `${dom0Dir}/kubeconfig` },
      mode: "iptables",
      clusterCIDR: POD_NETWORK,
      hostnameOverride: node.name,
      metricsBindAddress: "127.0.0.1:10249",
      healthzBindAddress: "127.0.0.1:10256",
      // Leave dom0's conntrack sysctls alone.
      conntrack: { maxPerCore: 0 },
    }),
  );
  const logPath = join(dir, "kube-proxy.log");
  const log = (lines = 60) => {
    try {
      return readFileSync(logPath, "utf8").split("\n").slice(-lines).join("\n");
    } catch {
      return "(no kube-proxy log)";
    }
  };
  const r = await node.exec(
    `${GO_IN_DOM0} setsid ${join(K8S_BIN_DIR, "kube-proxy")} --config=${dom0Dir}/config.yaml --v=1 </dev/null >${dom0Dir}/kube-proxy.log 2>&1 & echo $! >${dom0Dir}/pid`,
  );
  if (r.code !== 0) throw new Error(`starting kube-proxy failed: ${r.stderr}`);
  const stop = async () => {
    await node.exec(`kill $(cat ${dom0Dir}/pid) 2>/dev/null; true`).catch(() => undefined);
  };
  // Ready once its first sync has programmed the rules: every sync ends the nat KUBE-SERVICES chain
  // with the jump to KUBE-NODEPORTS. (The `kubernetes` Service's rule is no sign: its endpoint, the
  // apiserver on loopback, is never published.) Not /healthz: that also wants this node's Node
  // object, which the kubelet registers minutes later on a loaded machine, while ClusterIPs already
  // work. One loop in dom0 (see shim.ts for why).
  // A timed-out wait must still stop it: an untracked kube-proxy would go on rewriting dom0's rules.
  const h = await node
    .exec(
      `pid=$(cat ${dom0Dir}/pid); i=0; while [ $i -lt 200 ]; do kill -0 $pid 2>/dev/null || exit 9; iptables -w -t nat -S KUBE-SERVICES 2>/dev/null | grep -q -- '-j KUBE-NODEPORTS' && exit 0; sleep 3; i=$((i+1)); done; exit 1`,
      { timeoutMs: 660_000 },
    )
    .catch((err: Error) => ({ code: 1, stdout: "", stderr: err.message }));
  if (h.code === 0) return { log, stop };
  await stop();
  throw new Error(`kube-proxy in ${node.name} did not program its rules in time:\n${log()}`);
}
