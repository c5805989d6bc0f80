// kube-proxy as a DaemonSet, the way kubeadm deploys it: a ServiceAccount bound to the
// system:node-proxier role, a ConfigMap with its configuration and a kubeconfig whose credential is
// the pod's ServiceAccount token (a projected, kubelet-rotated token file), hostNetwork and
// privileged (it writes the node's iptables). On a Xen node the kubelet's runtime is the shim, which
// hands this pod to containerd (dom0-containerd.ts).
//
// Why a token and not a certificate in a Secret or a hostPath: the token is issued per pod by the
// apiserver, expires, and needs nothing placed on the node beforehand; a real cluster does the same.
// The kubeconfig names the apiserver explicitly (not in-cluster config): the `kubernetes` Service's
// ClusterIP is what kube-proxy itself programs, and its endpoint (the apiserver on the host's
// loopback) is unreachable from dom0 anyway; dom0 reaches it at 10.0.2.2.
import { readFileSync } from "node:fs";
import { stringify } from "yaml";
import type { ControlPlane } from "../harness/control-plane.js";
import type { XenNode } from "../xen-node/index.js";
import { POD_NETWORK } from "../xen-node/pod-network.js";

export const KUBE_PROXY_NAMESPACE = "kube-system";
const CONFIG_DIR = "/var/lib/kube-proxy";
const TOKEN_DIR = "/var/run/secrets/kube-proxy";

/** The manifests (one multi-document YAML) for kubectl apply. */
export function kubeProxyManifests(
  cp: ControlPlane,
  node: Pick<XenNode, "hostIpFromDom0">,
  image: string,
): string {
  const kubeconfig = stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [
      {
        name: "default",
        cluster: {
          server: `https://${node.hostIpFromDom0}:${cp.port}`,
          "certificate-authority-data": readFileSync(cp.pki.caCert).toString("base64"),
          // The apiserver's certificate names localhost, not 10.0.2.2.
          "tls-server-name": "localhost",
        },
      },
    ],
    users: [{ name: "kube-proxy", user: { tokenFile: `${TOKEN_DIR}/token` } }],
    contexts: [{ name: "default", context: { cluster: "default", user: "kube-proxy" } }],
    "current-context": "default",
  });
  const config = stringify({
    apiVersion: "kubeproxy.config.k8s.io/v1alpha1",
    kind: "KubeProxyConfiguration",
    clientConnection: { kubeconfig: `${CONFIG_DIR}/kubeconfig.conf` },
    mode: "iptables",
    clusterCIDR: POD_NETWORK,
    metricsBindAddress: "127.0.0.1:10249",
    healthzBindAddress: "127.0.0.1:10256",
    // Leave dom0's conntrack sysctls alone.
    conntrack: { maxPerCore: 0 },
  });
  const labels = { "k8s-app": "kube-proxy" };
  const docs = [
    {
      apiVersion: "v1",
      kind: "ServiceAccount",
      metadata: { name: "kube-proxy", namespace: KUBE_PROXY_NAMESPACE },
    },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRoleBinding",
      metadata: { name: "superfluid-e2e:kube-proxy" },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "system:node-proxier" },
      subjects: [{ kind: "ServiceAccount", name: "kube-proxy", namespace: KUBE_PROXY_NAMESPACE }],
    },
    {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "kube-proxy", namespace: KUBE_PROXY_NAMESPACE, labels },
      data: { "kubeconfig.conf": kubeconfig, "config.conf": config },
    },
    {
      apiVersion: "apps/v1",
      kind: "DaemonSet",
      metadata: { name: "kube-proxy", namespace: KUBE_PROXY_NAMESPACE, labels },
      spec: {
        selector: { matchLabels: labels },
        updateStrategy: { type: "RollingUpdate" },
        template: {
          metadata: { labels },
          spec: {
            serviceAccountName: "kube-proxy",
            automountServiceAccountToken: false,
            hostNetwork: true,
            dnsPolicy: "Default",
            nodeSelector: { "kubernetes.io/os": "linux" },
            tolerations: [{ operator: "Exists" }],
            terminationGracePeriodSeconds: 5,
            containers: [
              {
                name: "kube-proxy",
                image,
                imagePullPolicy: "IfNotPresent",
                command: [
                  "/usr/local/bin/kube-proxy",
                  `--config=${CONFIG_DIR}/config.conf`,
                  "--hostname-override=$(NODE_NAME)",
                  "--v=1",
                ],
                env: [
                  { name: "NODE_NAME", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } },
                  // dom0 has one host core to share (kubelet.ts GO_IN_DOM0 says why).
                  { name: "GOMAXPROCS", value: "1" },
                  { name: "GOGC", value: "400" },
                ],
                securityContext: { privileged: true },
                volumeMounts: [
                  { name: "config", mountPath: CONFIG_DIR, readOnly: true },
                  { name: "token", mountPath: TOKEN_DIR, readOnly: true },
                  { name: "xtables-lock", mountPath: "/run/xtables.lock" },
                  { name: "lib-modules", mountPath: "/lib/modules", readOnly: true },
                ],
              },
            ],
            volumes: [
              { name: "config", configMap: { name: "kube-proxy" } },
              {
                name: "token",
                projected: { sources: [{ serviceAccountToken: { path: "token", expirationSeconds: 3600 } }] },
              },
              { name: "xtables-lock", hostPath: { path: "/run/xtables.lock", type: "FileOrCreate" } },
              { name: "lib-modules", hostPath: { path: "/lib/modules" } },
            ],
          },
        },
      },
    },
  ];
  return docs.map((d) => stringify(d)).join("---\n");
}

/**
 * Waits in `node`'s dom0 until kube-proxy's first sync has programmed the rules (every sync ends the
 * nat KUBE-SERVICES chain with the jump to KUBE-NODEPORTS; kube-proxy.ts says why not /healthz).
 */
export async function waitForKubeProxyRules(node: XenNode, timeoutS: number): Promise<boolean> {
  const r = await node
    .exec(
      `i=0; while [ $i -lt ${Math.ceil(timeoutS / 3)} ]; do iptables -w -t nat -S KUBE-SERVICES 2>/dev/null | grep -q -- '-j KUBE-NODEPORTS' && exit 0; sleep 3; i=$((i+1)); done; exit 1`,
      { timeoutMs: timeoutS * 1000 + 60_000 },
    )
    .catch(() => ({ code: 1 }));
  return r.code === 0;
}
