// What every service shares: the hypervisor, the two stores, the network, the images, options, and
// a keyed lock so that multi-step operations on one sandbox (run/stop/remove, container create) do
// not interleave. Store writes are atomic on their own; the lock orders the steps between them.
import type { Hypervisor } from "../hypervisor/types.js";
import type { CniNetwork } from "../network/cni.js";
import type { ConsolePump } from "../logs/cri-log.js";
import type { ContainerStore, SandboxStore } from "./model.js";
import type { ImageBackend } from "./image-backend.js";

export interface RuntimeOptions {
  /** Guest memory when neither the pod annotations nor the image say (MiB). */
  defaultMemoryMiB: number;
  defaultVcpus: number;
  /** tmpfs directory the kernels are copied to before a domain build reads them. */
  kernelCacheDir: string;
  /** How often running domains are checked for an exit (ms) when the hypervisor has no exit events. */
  monitorIntervalMs: number;
  /** With exit events: how often the domains are listed anyway, for an event lost (ms; default 30 s). */
  monitorSafetyIntervalMs?: number;
  /** xenconsoled's --log-dir (guest-<name>.log files): read consoles there; undefined reads the pty. */
  consoleLogDir?: string;
  /** Give the hypervisor the guest's IP on its vif, so the backend guards the vif against spoofing
   * (network/antispoof.ts: nftables in-process, no process per VM). The shim turns it on by default. */
  vifAntiSpoof?: boolean;
  /** RuntimeClass handlers accepted besides "" (the default handler). */
  runtimeHandlers: string[];
}

export class KeyedLock {
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, work: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const result = previous.then(work, work);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }
}

export interface RuntimeContext {
  hypervisor: Hypervisor;
  sandboxes: SandboxStore;
  containers: ContainerStore;
  network: CniNetwork;
  images: ImageBackend;
  options: RuntimeOptions;
  locks: KeyedLock;
  /** Containers inside StopContainer: the exit monitor leaves their domain to that call. */
  stopping: Set<string>;
  /** Console pumps of containers whose domain runs, by container id. */
  pumps: Map<string, ConsolePump>;
  /**
   * Migrations this node receives, by container id (the node agent registers them): StopContainer and
   * RemovePodSandbox cancel the one of their container, which destroys any half-received domain.
   */
  receiving: Map<string, { cancel(reason: string): Promise<void> }>;
}
