// The shim's services wired together over one hypervisor, the stores under the state directory, the
// pod network and the image store. The gRPC handlers (handlers/) call into this and nothing else.
import { join } from "node:path";
import type { Hypervisor } from "./hypervisor/types.js";
import { CniNetwork } from "./network/cni.js";
import { KeyedLock, type RuntimeContext, type RuntimeOptions } from "./services/context.js";
import { ContainerService } from "./services/containers.js";
import type { ImageBackend } from "./services/image-backend.js";
import type { ContainerMeta, ContainerStatusRecord, SandboxMeta, SandboxStatus } from "./services/model.js";
import { collectKernelCache } from "./services/kernel-cache.js";
import { LifecycleEvents } from "./services/lifecycle-events.js";
import { ExitMonitor } from "./services/monitor.js";
import { recover, type RecoveryReport } from "./services/recovery.js";
import { SandboxService } from "./services/sandboxes.js";
import { StatsService } from "./services/stats.js";
import { Store } from "./store/store.js";

export const RUNTIME_NAME = "superfluid";
export const RUNTIME_VERSION = "0.1.0";

export interface CriRuntimeConfig {
  hypervisor: Hypervisor;
  images: ImageBackend;
  network: CniNetwork;
  stateDir: string;
  options: RuntimeOptions;
}

export class CriRuntime {
  readonly ctx: RuntimeContext;
  readonly sandboxes: SandboxService;
  readonly containers: ContainerService;
  readonly stats: StatsService;
  readonly monitor: ExitMonitor;
  /** What GetContainerEvents streams: every visible change of a sandbox or container record. */
  readonly events: LifecycleEvents;
  recovery: RecoveryReport | undefined;

  constructor(config: CriRuntimeConfig) {
    this.ctx = {
      hypervisor: config.hypervisor,
      sandboxes: new Store<SandboxMeta, SandboxStatus>(join(config.stateDir, "sandboxes"), "pod sandbox"),
      containers: new Store<ContainerMeta, ContainerStatusRecord>(
        join(config.stateDir, "containers"),
        "container",
      ),
      network: config.network,
      images: config.images,
      options: config.options,
      locks: new KeyedLock(),
      pumps: new Map(),
      stopping: new Set(),
      receiving: new Map(),
    };
    this.containers = new ContainerService(this.ctx);
    this.sandboxes = new SandboxService(this.ctx, this.containers);
    this.stats = new StatsService(this.ctx);
    this.monitor = new ExitMonitor(this.ctx, this.containers);
    this.events = new LifecycleEvents(this.ctx);
  }

  get images(): ImageBackend {
    return this.ctx.images;
  }

  /** Network up, state read back and reconciled with the hypervisor, exit monitor running. */
  async start(): Promise<RecoveryReport> {
    await this.ctx.network.init();
    this.recovery = await recover(this.ctx, this.containers);
    // Kernel copies of images removed while the shim was down.
    await collectKernelCache(this.ctx);
    await this.monitor.start();
    return this.recovery;
  }

  /** Stops watching and closes log files; domains keep running (a restarted shim adopts them). */
  async stop(): Promise<void> {
    await this.monitor.stop();
    await Promise.all([...this.ctx.pumps.values()].map((p) => p.stop()));
    this.ctx.pumps.clear();
  }

  async runtimeReady(): Promise<{ ready: boolean; message: string }> {
    try {
      await this.ctx.hypervisor.host();
      return { ready: true, message: "" };
    } catch (err) {
      return {
        ready: false,
        message: `hypervisor ${this.ctx.hypervisor.name}: ${err instanceof Error ? err.message : String(err)}`,
      };
    }
  }
}
