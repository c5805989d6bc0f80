// What the node agent's reconciler needs from the shim's runtime, as one small interface: find a
// VM's container, see its domain, carry out the four domain operations, and the two node-wide views
// (recorded checkpoints, guest memory). The reconciler gets this, not the runtime's context, so that
// every reach into the CRI stores and the hypervisor sits in this one file.
import type { CriRuntime } from "../runtime.js";
import type { ContainerEntry } from "../services/containers.js";
import { sandboxRunsVM } from "../services/validate.js";
import type { ObservedDomain } from "./decide.js";
import type { DomainInfo } from "../hypervisor/types.js";
import { DomainOps } from "./domain-ops.js";

/** What identifies a VM to its sandboxes: namespace, name and uid (validate.ts, sandboxRunsVM). */
export interface VmIdentity {
  metadata: { namespace?: string; name?: string; uid?: string };
}

export interface AgentRuntime {
  /** The VM's own live container here: not a migration's target still receiving, not one whose domain left. */
  vmContainer(vm: VmIdentity): ContainerEntry | undefined;
  container(id: string): ContainerEntry | undefined;
  /** The container's domain as the agent sees it. */
  observe(c: ContainerEntry): Promise<ObservedDomain>;
  /**
   * Every container's domain as observe() would see it, from one domain list: what the resync
   * compares with what was last reconciled, instead of one query per VM every few seconds.
   */
  observer(): Promise<(c: ContainerEntry) => ObservedDomain>;
  /** Checkpoint files the container store records for suspended containers. */
  recordedCheckpoints(): Set<string>;
  /** Memory Xen can give guests (MiB): what is free plus what guests hold now; dom0 excluded. */
  guestMemoryMiB(): Promise<number>;
  readonly ops: Pick<DomainOps, "pause" | "unpause" | "suspend" | "restore" | "checkpointDir">;
}

/** The container's domain as the agent sees it, given what Xen says of its domid. */
function observedFrom(c: ContainerEntry, d: DomainInfo | undefined): ObservedDomain {
  if (
    !d ||
    d.name !== c.meta.domainName ||
    d.state === "shutdown" ||
    d.state === "crashed" ||
    d.state === "dying"
  )
    return "absent";
  return d.state === "paused" ? "paused" : "running";
}

/** The key a sandbox's VM claim and a VM share: namespace, name, uid. */
const vmKey = (namespace: string, name: string, uid: string) => `${namespace}/${name}/${uid}`;

/**
 * Each VM's live container, in one pass over the stores: the resync reconciles every VM every few
 * seconds, and a scan of all sandboxes and containers per VM made that quadratic in the VMs. Rebuilt
 * when either store changed (their generations).
 */
function vmIndex(runtime: CriRuntime): (vm: VmIdentity) => ContainerEntry | undefined {
  const rt = runtime.ctx;
  let built: { sandboxes: number; containers: number; byVm: Map<string, ContainerEntry> } | undefined;
  const index = () => {
    if (built?.sandboxes === rt.sandboxes.generation && built.containers === rt.containers.generation)
      return built.byVm;
    const byVm = new Map<string, ContainerEntry>();
    for (const c of rt.containers.list()) {
      if ((c.status.state !== "running" && c.status.state !== "created") || c.status.incoming) continue;
      if (c.status.migratedAway) continue;
      const sb = rt.sandboxes.get(c.meta.sandboxId);
      const claim = sb?.meta.config.vm;
      if (!sb || sb.status.state !== "ready" || !claim?.uid) continue;
      const key = vmKey(claim.namespace, claim.name, claim.uid);
      // sandboxRunsVM's rule: the claim's namespace is the pod's own.
      if (!byVm.has(key) && sandboxRunsVM(sb.meta, { metadata: claim })) byVm.set(key, c);
    }
    built = { sandboxes: rt.sandboxes.generation, containers: rt.containers.generation, byVm };
    return byVm;
  };
  return (vm) => {
    const { namespace, name, uid } = vm.metadata;
    if (!namespace || !name || !uid) return undefined;
    return index().get(vmKey(namespace, name, uid));
  };
}

export function agentRuntime(runtime: CriRuntime, ops: DomainOps): AgentRuntime {
  const rt = runtime.ctx;
  return {
    ops,
    vmContainer: vmIndex(runtime),
    container: (id) => rt.containers.get(id),
    async observe(c) {
      if (c.status.suspended || c.status.domid === undefined) return "absent";
      return observedFrom(c, await rt.hypervisor.info(c.status.domid));
    },
    async observer() {
      const byDomid = new Map((await rt.hypervisor.list()).map((d) => [d.domid, d]));
      return (c) =>
        c.status.suspended || c.status.domid === undefined
          ? "absent"
          : observedFrom(c, byDomid.get(c.status.domid));
    },
    recordedCheckpoints: () =>
      new Set(
        rt.containers
          .list()
          .filter((c) => c.status.state !== "exited" && c.status.suspended)
          .map((c) => c.status.suspended!.checkpoint),
      ),
    async guestMemoryMiB() {
      const [host, domains] = await Promise.all([rt.hypervisor.host(), rt.hypervisor.list()]);
      const guestsKiB = domains.filter((d) => d.domid !== 0).reduce((sum, d) => sum + d.memoryKiB, 0);
      return Math.floor((host.freeMemoryKiB + guestsKiB) / 1024);
    },
  };
}
