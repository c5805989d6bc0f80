// The node agent: runs in the shim's process and makes each UnikernelVM placed on this node follow its
// spec.runPolicy (pause, suspend to disk, resume or restore). A keyed reconciler over the shared work
// queue: one key per VM, so that one slow restore or suspend holds up only its own VM, and a burst of
// events for a VM is one reconcile. It lists and watches only this node's VMs (the CRD's selectable
// field status.nodeName). Besides the VMs, three node-wide keys: the migrations this node takes part
// in (migration-agent.ts), stale checkpoint files, and the guest memory it publishes on its Node.
// It writes its slice of each VM's status (conditions.ts: Paused, Suspended, domainId, domainState)
// and the Node's guest-memory resource; never status.phase, which is the operator's, and never a pod.
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { logger } from "../../../lib/log.js";
import { UNIKERNELVM_PLURAL, type UnikernelVM } from "../../../api/index.js";
import { watchResource, type Watched } from "../../../lib/kube/informers.js";
import { KubeClient, paths } from "../../../lib/kube/client.js";
import type { KubeCredentials } from "../../../lib/kube/kubeconfig.js";
import { type ReconcileResult, WorkQueue } from "../../../lib/kube/queue.js";
import type { CriRuntime } from "../runtime.js";
import { DEFAULT_CHECKPOINT_DIR, DomainOps } from "./domain-ops.js";
import { MigrationAgent } from "./migration-agent.js";
import { type AgentRuntime, agentRuntime } from "./node-runtime.js";
import { NodeResources } from "./node-resources.js";
import { agentInterest } from "./conditions.js";
import { VmReconciler } from "./vm-reconciler.js";

const log = logger("node-agent");

export interface NodeAgentConfig {
  /** A kubeconfig file's credentials (lib/kube/kubeconfig.ts) or client-node's KubeConfig. */
  kubeConfig: KubeCredentials;
  nodeName: string;
  runtime: CriRuntime;
  checkpointDir?: string;
  /** Every VM, checkpoint and the Node's resources are looked at this often even without events (ms). */
  resyncMs?: number;
  /** VMs reconciled at once (default 8): a slow suspend takes one worker, not the node. */
  workers?: number;
  /** Publish the node's guest memory as an extended resource on its Node (default true). */
  publishNodeResources?: boolean;
  /** Where this node receives migrations (host part of targetEndpoint); default: the Node's first InternalIP. */
  nodeAddress?: string;
  /** Inactivity timeout of a migration stream (ms); the stream module's default (30 s) when unset. */
  streamTimeoutMs?: number;
}

/** Keys of the node-wide work; a VM's key is namespace/name, which never starts with "~". */
const MIGRATIONS = "~migrations";
const CHECKPOINTS = "~checkpoints";
const NODE = "~node";
/** Every this many resyncs, every VM is reconciled whether its domain moved or not. */
const FULL_RESYNC_EVERY = 12;
/** A VM's key on the queue. */
const keyOf = (vm: UnikernelVM): string => `${vm.metadata.namespace}/${vm.metadata.name}`;

export class NodeAgent {
  private readonly client: KubeClient;
  private readonly vms: Watched<UnikernelVM>;
  private readonly runtime: AgentRuntime;
  private readonly migration: MigrationAgent;
  private readonly reconciler: VmReconciler;
  private readonly resources: NodeResources | undefined;
  readonly queue: WorkQueue;
  private timer: NodeJS.Timeout | undefined;
  private resyncs = 0;
  /** Each VM's agentInterest in the last event: an update that leaves it alone is no work. */
  private readonly interest = new Map<string, string>();
  /** The resourceVersion each VM's last status apply by the agent returned: its echo is no work. */
  private readonly ownWrites = new Map<string, string | undefined>();

  constructor(private readonly config: NodeAgentConfig) {
    this.client = new KubeClient(config.kubeConfig);
    this.vms = watchResource<UnikernelVM>(undefined, this.client, paths.custom(UNIKERNELVM_PLURAL), {
      fieldSelector: `status.nodeName=${config.nodeName}`,
    });
    const ops = new DomainOps(
      config.runtime.ctx,
      config.runtime.containers,
      config.checkpointDir ?? DEFAULT_CHECKPOINT_DIR,
    );
    this.runtime = agentRuntime(config.runtime, ops);
    this.reconciler = new VmReconciler(this.client, config.nodeName, this.runtime, (key, vm) =>
      this.ownWrites.set(key, vm.metadata.resourceVersion),
    );
    this.resources =
      config.publishNodeResources === false
        ? undefined
        : new NodeResources(this.client, config.nodeName, () => this.runtime.guestMemoryMiB());
    this.migration = new MigrationAgent({
      kubeConfig: config.kubeConfig,
      client: this.client,
      nodeName: config.nodeName,
      runtime: config.runtime,
      ops,
      ...(config.nodeAddress ? { nodeAddress: config.nodeAddress } : {}),
      ...(config.streamTimeoutMs ? { streamTimeoutMs: config.streamTimeoutMs } : {}),
    });
    this.queue = new WorkQueue((key) => this.reconcile(key), {
      name: "node-agent",
      workers: config.workers ?? 8,
      baseDelayMs: 500,
      maxDelayMs: 30_000,
    });
  }

  async start(): Promise<void> {
    // Every VM update used to be a reconcile (a domain query, a checkpoint stat), the operator's
    // phase writes and the echo of the agent's own apply included: a third of the shim's CPU at a
    // few hundred VMs. Only what the agent reads or owns changing is work now; the resync still
    // notices domains that changed behind the watch's back.
    this.vms.on("add", (vm) => {
      this.interest.set(keyOf(vm), agentInterest(vm));
      this.queue.add(keyOf(vm));
    });
    this.vms.on("update", (vm) => {
      const key = keyOf(vm);
      const now = agentInterest(vm);
      const before = this.interest.get(key);
      this.interest.set(key, now);
      // Events come in order: each compares with the one before it, never with an apply's response
      // (an event older than that response may still be on its way).
      const rv = vm.metadata.resourceVersion;
      if (rv !== undefined && this.ownWrites.get(key) === rv) return void this.ownWrites.delete(key);
      if (before !== now) this.queue.add(key);
    });
    this.vms.on("delete", (vm) => {
      this.interest.delete(keyOf(vm));
      this.ownWrites.delete(keyOf(vm));
      this.queue.add(keyOf(vm));
    });
    await this.migration.start(() => this.queue.add(MIGRATIONS));
    await this.vms.start();
    this.timer = setInterval(() => this.resync(), this.config.resyncMs ?? 5000);
    this.timer.unref();
    this.resync();
    log.info("node agent watching", {
      node: this.config.nodeName,
      checkpoints: this.runtime.ops.checkpointDir,
    });
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.vms.stop();
    await this.migration.stop();
    await this.queue.shutdown();
    this.client.close();
  }

  /**
   * Domains change behind the watch's back (a pause by hand, exits, restarts of the shim): every
   * resync lists the domains once and requeues the VMs whose domain is not what their last
   * reconcile saw; every FULL_RESYNC_EVERY-th requeues them all (checkpoint files, failures), each
   * starting from what the list said (VmReconciler.prefetched). One reconcile per VM every 5 s was
   * the agent's largest cost at a few hundred VMs, one domain query per VM per minute at 500.
   */
  resync(): void {
    this.queue.add(MIGRATIONS);
    this.queue.add(CHECKPOINTS);
    if (this.resources) this.queue.add(NODE);
    const full = this.resyncs++ % FULL_RESYNC_EVERY === 0;
    void this.requeueVMs(full).catch((err: unknown) => {
      log.warn("resync failed; requeueing every VM", { err: String(err) });
      for (const vm of this.vms.list()) this.queue.add(keyOf(vm));
    });
  }

  private async requeueVMs(all: boolean): Promise<void> {
    const observe = await this.runtime.observer();
    for (const vm of this.vms.list()) {
      const key = keyOf(vm);
      const c = this.runtime.vmContainer(vm);
      const seen = this.reconciler.lastSeen.get(key);
      const now = c?.status.state === "running" ? { container: c.meta.id, domain: observe(c) } : undefined;
      const moved = seen?.container !== now?.container || seen?.domain !== now?.domain;
      if (!all && !moved) continue;
      // A domain that moved is asked about again; one the list shows unchanged need not be.
      if (now && !moved) this.reconciler.prefetched.set(key, now);
      this.queue.add(key);
    }
  }

  private async reconcile(key: string): Promise<ReconcileResult | void> {
    switch (key) {
      case MIGRATIONS:
        return this.migration.reconcile();
      case CHECKPOINTS:
        return this.collectCheckpoints();
      case NODE:
        return this.resources?.publish();
    }
    const slash = key.indexOf("/");
    return this.reconciler.reconcile(key, this.vms.get(key.slice(slash + 1), key.slice(0, slash)));
  }

  /**
   * Checkpoints no container records as its saved domain (VM stopped, deleted or moved) and temp
   * files of saves a crash cut off. A VM with a domain operation in flight keeps its files: its
   * save may be writing one right now.
   */
  private async collectCheckpoints(): Promise<void> {
    const dir = this.runtime.ops.checkpointDir;
    const names = await readdir(dir).catch(() => [] as string[]);
    const recorded = this.runtime.recordedCheckpoints();
    for (const name of names) {
      const path = join(dir, name);
      if (recorded.has(path)) continue;
      if (!name.includes(".tmp-") && !name.endsWith(".ckpt")) continue;
      const uid = name.replace(/\.ckpt(\.tmp-.*)?$/, "");
      if (this.reconciler.busy.has(uid)) continue;
      await rm(path, { force: true });
      log.info("stale checkpoint removed", { path });
    }
  }
}
