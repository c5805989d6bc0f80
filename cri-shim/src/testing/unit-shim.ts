// For pure unit tests: a real CRI server + runtime + CNI host-local IPAM, over the two test doubles
// (memory hypervisor, directory images). Everything lives in one temp dir that dispose() removes.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CniNetwork } from "../network/cni.js";
import { CriRuntime } from "../runtime.js";
import { CriServer } from "../server.js";
import { Dispatcher } from "../dispatch/dispatcher.js";
import { FallbackRuntime } from "../dispatch/fallback.js";
import { connectCri, type CriClient } from "./cri-client.js";
import { DirImagesDouble } from "./dir-images.js";
import { MemoryHypervisorDouble } from "./memory-hypervisor.js";

export interface UnitShim {
  dir: string;
  stateDir: string;
  ipamDir: string;
  socket: string;
  hv: MemoryHypervisorDouble;
  images: DirImagesDouble;
  runtime: CriRuntime;
  server: CriServer;
  cri: CriClient;
  /** Stops server and runtime as a crash would not (domains stay); returns a fresh shim on the same state. */
  restart(): Promise<UnitShim>;
  dispose(): Promise<void>;
}

export async function startUnitShim(existing?: {
  dir?: string;
  hv?: MemoryHypervisorDouble;
  images?: DirImagesDouble;
  /** A real CRI runtime (containerd) for everything that is not a superfluid pod. */
  fallbackEndpoint?: string;
}): Promise<UnitShim> {
  const dir = existing?.dir ?? mkdtempSync(join(tmpdir(), "sf-cri-"));
  const hv = existing?.hv ?? new MemoryHypervisorDouble();
  const images = existing?.images ?? new DirImagesDouble(join(dir, "images"));
  const stateDir = join(dir, "state");
  const ipamDir = join(dir, "ipam");
  const network = new CniNetwork({ ipamDataDir: ipamDir, manageBridge: false });
  const runtime = new CriRuntime({
    hypervisor: hv,
    images,
    network,
    stateDir,
    options: {
      defaultMemoryMiB: 16,
      defaultVcpus: 1,
      kernelCacheDir: join(dir, "kernels"),
      monitorIntervalMs: 50,
      runtimeHandlers: ["superfluid"],
    },
  });
  await runtime.start();
  const socket = join(dir, "cri.sock");
  const fallback = existing?.fallbackEndpoint ? new FallbackRuntime(existing.fallbackEndpoint) : undefined;
  const server = new CriServer(runtime, socket, fallback ? new Dispatcher(runtime, fallback) : undefined);
  await server.listen();
  const cri = connectCri(socket);
  const shim: UnitShim = {
    dir,
    stateDir,
    ipamDir,
    socket,
    hv,
    images,
    runtime,
    server,
    cri,
    async restart() {
      cri.close();
      await server.close(100);
      await runtime.stop();
      fallback?.close();
      return startUnitShim({ dir, hv, images, fallbackEndpoint: existing?.fallbackEndpoint });
    },
    async dispose() {
      cri.close();
      await server.close(100);
      await runtime.stop();
      fallback?.close();
      await hv.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return shim;
}

/**
 * A pod run through the shim's CRI as a kubelet would: the image pulled (the double serves it), the
 * sandbox with `annotations`, one container created and started. Returns the CRI ids.
 */
export async function runPodThroughCri(
  shim: UnitShim,
  pod: {
    name: string;
    namespace: string;
    image: string;
    annotations: Record<string, string>;
    labels?: Record<string, string>;
  },
): Promise<{ sb: string; ctr: string }> {
  shim.images.available.add(pod.image);
  await shim.cri.image("PullImage", { image: { image: pod.image } });
  const config = {
    metadata: { name: pod.name, namespace: pod.namespace, uid: `uid-${pod.name}`, attempt: 0 },
    hostname: pod.name,
    log_directory: join(shim.dir, "logs", pod.name),
    annotations: pod.annotations,
    ...(pod.labels ? { labels: pod.labels } : {}),
  };
  const { pod_sandbox_id: sb } = await shim.cri.runtime<{ pod_sandbox_id: string }>("RunPodSandbox", {
    config,
  });
  const { container_id: ctr } = await shim.cri.runtime<{ container_id: string }>("CreateContainer", {
    pod_sandbox_id: sb,
    config: { metadata: { name: "main", attempt: 0 }, image: { image: pod.image }, log_path: "main/0.log" },
    sandbox_config: config,
  });
  await shim.cri.runtime("StartContainer", { container_id: ctr });
  return { sb, ctr };
}
