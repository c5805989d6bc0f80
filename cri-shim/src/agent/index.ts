// Entry for the shim: builds the node agent from a kubeconfig file (or, in a pod, the mounted
// service-account token) and starts it.
import type { CriRuntime } from "../runtime.js";
import { logger } from "../../../lib/log.js";
import { NodeAgent } from "./agent.js";
import { inClusterCredentials, loadKubeconfigFile } from "../../../lib/kube/kubeconfig.js";

const log = logger("node-agent");

export { NodeAgent } from "./agent.js";
export { decide } from "./decide.js";

/**
 * Reads the kubeconfig (a bad file fails here, at start) and starts the agent in the background: the
 * CRI socket serves whether or not the apiserver answers yet (the watch retries until it does).
 */
export async function startNodeAgent(
  runtime: CriRuntime,
  kubeconfigPath: string | undefined,
  nodeName: string,
  opts: {
    checkpointDir?: string | undefined;
    nodeAddress?: string | undefined;
    streamTimeoutMs?: number | undefined;
  } = {},
): Promise<NodeAgent> {
  // The project's loader, as the operator's: client-go's tokenFile (what the chart's node-credentials
  // DaemonSet writes for a shim under systemd, rotated by the kubelet) is re-read with the rest of the
  // credentials every few seconds; without --kubeconfig, the in-cluster service account.
  const kubeConfig = kubeconfigPath ? await loadKubeconfigFile(kubeconfigPath) : inClusterCredentials();
  const agent = new NodeAgent({
    kubeConfig,
    nodeName,
    runtime,
    ...(opts.checkpointDir ? { checkpointDir: opts.checkpointDir } : {}),
    ...(opts.nodeAddress ? { nodeAddress: opts.nodeAddress } : {}),
    ...(opts.streamTimeoutMs ? { streamTimeoutMs: opts.streamTimeoutMs } : {}),
  });
  void agent.start().catch((err: unknown) => log.error("node agent did not start", { err: String(err) }));
  return agent;
}
