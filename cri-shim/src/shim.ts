// Assembles the shim from its flags: the hypervisor (lean over libxl, or libxl alone), the image store, CNI, the runtime (which recovers state
// before the socket opens, so the kubelet never sees a half-known node), and the gRPC server. SIGTERM
// and SIGINT stop it gracefully; domains keep running and are adopted by the next start.
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { logger } from "../../lib/log.js";
import { ImageStore } from "../../lib/oci/index.js";
import { RUNTIME_CLASS } from "../../api/annotations.js";
import { XenLibxl } from "./hypervisor/xen-libxl.js";
import type { Hypervisor } from "./hypervisor/types.js";
import { XenLean } from "./hypervisor/xen-lean/xen-lean.js";
import { parseShapes } from "./hypervisor/xen-lean/pool.js";
import { serveMetrics } from "./metrics-server.js";
import { bridgeNetworkConfig, CniNetwork, detectXenBridge, firstCniConf } from "./network/cni.js";
import { CriRuntime } from "./runtime.js";
import { CriServer } from "./server.js";
import { Dispatcher } from "./dispatch/dispatcher.js";
import { FallbackRuntime } from "./dispatch/fallback.js";
import { OciImages } from "./services/oci-images.js";
import { startNodeAgent } from "./agent/index.js";

const log = logger("cri-shim");

export interface ShimConfig {
  socketPath: string;
  stateDir: string;
  imageDir: string;
  kernelCacheDir: string;
  cniConf?: string;
  bridge?: string;
  podCidr?: string;
  consoleLogDir?: string;
  plainHttpRegistries: string[];
  registryCa?: string;
  defaultMemoryMiB: number;
  vifAntiSpoof: boolean;
  /** With nodeName: run the node agent (runPolicy: pause, suspend, resume) against this apiserver. */
  kubeconfig?: string;
  nodeName?: string;
  checkpointDir?: string;
  /** Where this node receives live migrations; default: the Node object's first InternalIP. */
  nodeAddress?: string;
  /** Inactivity timeout of a migration stream (ms). */
  migrationTimeoutMs?: number;
  /** The node's Linux CRI runtime (containerd): everything that is not a superfluid pod goes there. */
  fallbackRuntimeEndpoint?: string;
  /** Domain builder: "lean" (libsfxen, shell pool; the default) or "libxl". */
  hypervisor?: "lean" | "libxl";
  /** The lean backend's shell pool: depth per shape, memory cap, initial shapes ("4,64:2"). */
  pool?: { depth: number; maxMiB: number; shapes: string };
  /** HOST:PORT for Prometheus metrics (the lean backend's); off when absent. */
  metricsAddress?: string;
}

async function openHypervisor(config: ShimConfig): Promise<{ hv: Hypervisor; lean?: XenLean }> {
  const libxl = XenLibxl.open(); // first: outside dom0 this fails before anything is created
  if (config.hypervisor === "libxl") return { hv: libxl };
  const pool = config.pool ?? { depth: 2, maxMiB: 256, shapes: "" };
  const lean = await XenLean.open(libxl, {
    poolDepth: pool.depth,
    poolMaxMiB: pool.maxMiB,
    poolShapes: parseShapes(pool.shapes),
  });
  return { hv: lean, lean };
}

export async function runShim(config: ShimConfig): Promise<void> {
  const started = Date.now();
  const { hv: hypervisor, lean } = await openHypervisor(config);
  const metrics =
    config.metricsAddress && lean
      ? await serveMetrics(config.metricsAddress, lean.metrics.registry)
      : undefined;
  await mkdir(config.kernelCacheDir, { recursive: true, mode: 0o700 });
  const images = new OciImages(new ImageStore(config.imageDir), {
    plainHttpRegistries: config.plainHttpRegistries,
    ...(config.registryCa ? { caFile: config.registryCa } : {}),
  });
  const ipamDataDir = join(config.stateDir, "..", "cni");
  const inline =
    config.bridge || config.podCidr
      ? bridgeNetworkConfig(config.bridge ?? "sfbr0", config.podCidr ?? "10.89.0.0/24", ipamDataDir)
      : undefined;
  const confPath = config.cniConf ?? (inline ? undefined : firstCniConf());
  const network = new CniNetwork({
    confPath,
    config: inline ?? (confPath ? undefined : detectXenBridge(ipamDataDir)),
    ipamDataDir,
    manageBridge: true,
  });
  const runtime = new CriRuntime({
    hypervisor,
    images,
    network,
    stateDir: config.stateDir,
    options: {
      defaultMemoryMiB: config.defaultMemoryMiB,
      defaultVcpus: 1,
      kernelCacheDir: config.kernelCacheDir,
      monitorIntervalMs: 500,
      runtimeHandlers: [RUNTIME_CLASS],
      vifAntiSpoof: config.vifAntiSpoof,
      ...(config.consoleLogDir ? { consoleLogDir: config.consoleLogDir } : {}),
    },
  });
  // Before anything starts: a bad endpoint is a flag error. Its socket may come up later (containerd
  // restarting): calls report it unavailable until then.
  const fallback = config.fallbackRuntimeEndpoint
    ? new FallbackRuntime(config.fallbackRuntimeEndpoint)
    : undefined;
  const report = await runtime.start();
  const server = new CriServer(
    runtime,
    config.socketPath,
    fallback ? new Dispatcher(runtime, fallback) : undefined,
  );
  await server.listen();
  log.info("shim ready", {
    ms: Date.now() - started,
    hypervisor: hypervisor.name,
    fallback: fallback?.endpoint ?? "none",
    ...report,
  });
  // Optional: without an apiserver the shim is a plain CRI runtime.
  // --node-name alone (in a pod) uses the in-cluster service account; --kubeconfig names a file.
  const agent = config.nodeName
    ? await startNodeAgent(runtime, config.kubeconfig, config.nodeName, {
        checkpointDir: config.checkpointDir,
        nodeAddress: config.nodeAddress,
        streamTimeoutMs: config.migrationTimeoutMs,
      })
    : undefined;

  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log.info("stopping", { signal });
    await server.close();
    fallback?.close();
    await agent?.stop();
    await runtime.stop();
    await hypervisor.close();
    metrics?.close();
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
}
