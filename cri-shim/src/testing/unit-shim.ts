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
