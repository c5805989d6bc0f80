// The node agent's part of live migration (api/v1alpha1/migration.ts has the contract). It watches
// UnikernelVMMigrations and plays the role its node has in each:
//   target (status.targetNode, phase TargetPreparing, the pod's container created to receive): listens
//     with a fresh identity, publishes endpoint + certificate fingerprint + TargetReady, restores the
//     stream into the pod's container, readdresses the guest, TargetRunning.
//   source (status.sourceNode, phase Transferring, the target's endpoint published, and an address of
//     the target Node: endpoint-check.ts): publishes its own
//     fingerprint first, streams the domain under the sandbox's lock, Transferred with the downtime,
//     and keeps the container "running" without a domain until the operator deletes the pod.
// One receive or send per migration uid per process. A copy the handover left (an outgoing domain on
// the source, a paused restored one on the target) is settled from the migration's recorded commit
// (migration-settle.ts) after a restart or once its send/receive gave up; other domains left suspended
// (a save cut off by a restart) are resumed at start.
import { isSimulatedCrash } from "../../../lib/failpoints.js";
import { logger } from "../../../lib/log.js";
import { MIGRATION_CONDITIONS, MIGRATION_PLURAL, type UnikernelVMMigration } from "../../../api/index.js";
import { watchResource, type Watched } from "../../../lib/kube/informers.js";
import { isNotFound, paths } from "../../../lib/kube/client.js";
import { MigrationError } from "../migration/index.js";
import type { ContainerEntry } from "../services/containers.js";
import { isDomainless, isLeftSuspended } from "../services/model.js";
import { endpointProblem, type NodeAddresses } from "./endpoint-check.js";
import { receiveAsTarget } from "./migration-receive.js";
import type { MigrationAgentConfig, RoleContext } from "./migration-role.js";
import { sendAsSource } from "./migration-send.js";
import { settleIncoming, settleOutgoing } from "./migration-settle.js";
import { conditionOf, MigrationStatusWriter } from "./migration-status.js";

export type { MigrationAgentConfig } from "./migration-role.js";

const log = logger("node-agent-migration");
const C = MIGRATION_CONDITIONS;

export class MigrationAgent {
  readonly migrations: Watched<UnikernelVMMigration>;
  /** Roles taken in this process, by `<role>/<migration uid>`: never a second receive or send. */
  private readonly handled = new Set<string>();
  private readonly inflight = new Map<string, Promise<void>>();
  private address: string | undefined;
  private readonly role: RoleContext;
  /** Tests only: a failpoint simulated this process's death (SUPERFLUID_FAILPOINTS ...=crash). */
  private crashed = false;

  constructor(private readonly config: MigrationAgentConfig) {
    this.migrations = watchResource<UnikernelVMMigration>(
      undefined,
      config.client,
      paths.custom(MIGRATION_PLURAL),
    );
    this.address = config.nodeAddress;
    this.role = { config, nodeAddress: () => this.nodeAddress() };
  }

  private get rt() {
    return this.config.runtime.ctx;
  }

  /** Resumes domains a cut-off send left suspended, then starts the watch (events call `kick`). */
  async start(kick: () => void): Promise<void> {
    await this.resumeLeftSuspended();
    for (const verb of ["add", "update"] as const) this.migrations.on(verb, () => kick());
    await this.migrations.start();
  }

  async stop(): Promise<void> {
    await this.migrations.stop();
  }

  /** Every container whose domain is suspended with no send in flight (this process has sent none yet). */
  private async resumeLeftSuspended(): Promise<void> {
    for (const c of this.rt.containers.list()) {
      if (c.status.state !== "running" || c.status.domid === undefined || isDomainless(c.status)) continue;
      if (c.status.outgoing) continue; // the migration's recorded commit decides (settleOutgoing)
      const d = await this.rt.hypervisor.info(c.status.domid);
      if (!d || d.name !== c.meta.domainName || !isLeftSuspended(d)) continue;
      await this.rt.locks.run(c.meta.sandboxId, () => this.rt.hypervisor.resumeSuspended(d.domid));
      log.warn("resumed a domain left suspended by an interrupted migration", {
        container: c.meta.id,
        domid: d.domid,
      });
    }
  }

  /** One pass over the migrations that involve this node. */
  async reconcile(): Promise<void> {
    if (this.crashed) return;
    for (const m of this.migrations.list()) {
      try {
        if (m.status?.targetNode === this.config.nodeName) await this.asTarget(m);
        if (m.status?.sourceNode === this.config.nodeName) await this.asSource(m);
      } catch (err) {
        log.warn("migration reconcile failed", {
          migration: `${m.metadata.namespace}/${m.metadata.name}`,
          err: String(err),
        });
      }
    }
  }

  private begin(key: string, work: () => Promise<void>): void {
    this.handled.add(key);
    const p = work()
      .catch((err: unknown) => {
        // Tests only: a failpoint "crashed" this process; it acts no more, as if killed.
        if (isSimulatedCrash(err)) this.crashed = true;
        log.error("migration role failed", { key, err: String(err) });
      })
      .finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
  }

  /** The pod's container that waits for this migration's domain (target pod: migration-target annotation). */
  private incomingContainer(m: UnikernelVMMigration): ContainerEntry | undefined {
    const sb = this.rt.sandboxes
      .list()
      .find(
        (s) =>
          s.status.state === "ready" &&
          s.meta.config.migrationTarget === m.metadata.name &&
          s.meta.metadata.namespace === m.metadata.namespace,
      );
    return (
      sb &&
      this.rt.containers
        .list()
        .find(
          (c) =>
            c.meta.sandboxId === sb.meta.id &&
            c.status.incoming?.migration === m.metadata.name &&
            c.status.state !== "exited",
        )
    );
  }

  /** The container whose domain this migration's send took (outgoing record). */
  private outgoingContainer(m: UnikernelVMMigration): ContainerEntry | undefined {
    return this.rt.containers
      .list()
      .find(
        (c) =>
          c.status.outgoing?.migration === m.metadata.name &&
          c.status.state !== "exited" &&
          this.rt.sandboxes.get(c.meta.sandboxId)?.meta.metadata.namespace === m.metadata.namespace,
      );
  }

  /**
   * The VM's running container on this node (not a migration's target pod): the pod the operator
   * named as the source (status.sourcePod, in the migration's namespace, as the kubelet names the
   * sandbox), which must also claim the VM; never a pod found by its annotation alone.
   */
  private sourceContainer(m: UnikernelVMMigration): ContainerEntry | undefined {
    const ids = new Set(
      this.rt.sandboxes
        .list()
        .filter(
          (s) =>
            s.status.state === "ready" &&
            !s.meta.config.migrationTarget &&
            s.meta.metadata.namespace === m.metadata.namespace &&
            s.meta.metadata.name === m.status?.sourcePod &&
            s.meta.config.vm?.namespace === m.metadata.namespace &&
            s.meta.config.vm?.name === m.spec.vmName,
        )
        .map((s) => s.meta.id),
    );
    return this.rt.containers
      .list()
      .find(
        (c) =>
          ids.has(c.meta.sandboxId) &&
          c.status.state === "running" &&
          c.status.domid !== undefined &&
          !isDomainless(c.status),
      );
  }

  private async asTarget(m: UnikernelVMMigration): Promise<void> {
    const key = `target/${m.metadata.uid}`;
    const c = this.incomingContainer(m);
    if (c?.status.incoming?.domid !== undefined && !this.inflight.has(key)) {
      this.handled.add(key);
      await settleIncoming(this.config, m, c);
      return;
    }
    if (this.handled.has(key)) return;
    const phase = m.status?.phase;
    const ready = conditionOf(m, C.targetReady);
    if (phase === "TargetPreparing" && c && !ready) {
      this.begin(key, () => receiveAsTarget(this.role, m, c));
      return;
    }
    // Published by an earlier process of this shim: its listener died with it.
    if (
      (phase === "TargetPreparing" || phase === "Transferring") &&
      ready?.status === "True" &&
      !conditionOf(m, C.targetRunning)
    ) {
      this.handled.add(key);
      await new MigrationStatusWriter(this.config.client, this.config.nodeName, "target", m).apply(
        {},
        {
          type: C.targetReady,
          status: "False",
          reason: "TargetRestarted",
          message: "the target's shim restarted while waiting for the stream",
        },
      );
    }
  }

  private async asSource(m: UnikernelVMMigration): Promise<void> {
    const key = `source/${m.metadata.uid}`;
    const out = this.outgoingContainer(m);
    if (out && !this.inflight.has(key)) {
      this.handled.add(key);
      await settleOutgoing(this.config, m, out);
      return;
    }
    if (this.handled.has(key)) return;
    const st = m.status;
    const transferred = conditionOf(m, C.transferred);
    if (transferred) {
      // Streaming, said an earlier process of this shim; its send died with it and the domain was resumed at start.
      if (transferred.status === "Unknown" && st?.phase === "Transferring") {
        this.handled.add(key);
        await new MigrationStatusWriter(this.config.client, this.config.nodeName, "source", m).apply(
          {},
          {
            type: C.transferred,
            status: "False",
            reason: "SourceRestarted",
            message: "the source's shim restarted during the stream; the VM runs on here",
          },
        );
      }
      return;
    }
    if (st?.phase !== "Transferring" || !st.targetEndpoint || !st.targetCertificateSHA256) return;
    const c = this.sourceContainer(m);
    if (!c) {
      this.handled.add(key);
      await new MigrationStatusWriter(this.config.client, this.config.nodeName, "source", m).apply(
        {},
        {
          type: C.transferred,
          status: "False",
          reason: "SourceDomainMissing",
          message: `no running domain of VM ${m.spec.vmName} on ${this.config.nodeName}`,
        },
      );
      return;
    }
    const notTarget = endpointProblem(st.targetEndpoint, st.targetNode, await this.node(st.targetNode));
    if (notTarget) {
      this.handled.add(key);
      await new MigrationStatusWriter(this.config.client, this.config.nodeName, "source", m).apply(
        {},
        { type: C.transferred, status: "False", reason: "EndpointNotOnTarget", message: notTarget },
      );
      return;
    }
    this.begin(key, () => sendAsSource(this.config, m, c, st.targetEndpoint!, st.targetCertificateSHA256!));
  }

  /** A Node's addresses, or undefined when there is no such Node. */
  private async node(name: string | undefined): Promise<NodeAddresses | undefined> {
    if (!name) return undefined;
    return this.config.client
      .request<NodeAddresses>({ method: "GET", path: `${paths.nodes()}/${encodeURIComponent(name)}` })
      .catch((err: unknown) => {
        if (isNotFound(err)) return undefined;
        throw err;
      });
  }

  private async nodeAddress(): Promise<string> {
    if (this.address) return this.address;
    const node = await this.config.client.request<{
      status?: { addresses?: { type: string; address: string }[] };
    }>({ method: "GET", path: `${paths.nodes()}/${this.config.nodeName}` });
    const ip = node.status?.addresses?.find((a) => a.type === "InternalIP")?.address;
    if (!ip)
      throw new MigrationError(
        "InvalidArgument",
        `node ${this.config.nodeName} has no InternalIP; start the shim with --node-address`,
      );
    return (this.address = ip);
  }
}
