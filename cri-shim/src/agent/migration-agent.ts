// The node agent's part of live migration (api/v1alpha1/migration.ts has the contract). It watches
// UnikernelVMMigrations and plays the role its node has in each:
//   target (status.targetNode, phase TargetPreparing, the pod's container created to receive): listens
//     with a fresh identity, publishes endpoint + certificate fingerprint + TargetReady, restores the
//     stream into the pod's container, readdresses the guest, TargetRunning.
//   source (status.sourceNode, phase Transferring, the target's endpoint published): publishes its own
//     fingerprint first, streams the domain under the sandbox's lock, Transferred with the downtime,
//     and keeps the container "running" without a domain until the operator deletes the pod.
// One receive or send per migration uid per process; a domain left suspended by a send that a shim
// restart cut off is resumed at start and that migration fails with SourceRestarted.
import type { KubeConfig } from "@kubernetes/client-node";
import { logger } from "../../../lib/log.js";
import { MIGRATION_CONDITIONS, MIGRATION_PLURAL, type UnikernelVMMigration } from "../../../api/index.js";
import { watchResource, type Watched } from "../../../lib/kube/informers.js";
import { type KubeClient, paths } from "../../../lib/kube/client.js";
import type { DomainSpec } from "../hypervisor/types.js";
import {
  createIdentity,
  type IncomingMigration,
  MigrationError,
  receiveDomain,
  sendDomain,
} from "../migration/index.js";
import { applyReaddressing } from "../network/readdress.js";
import type { CriRuntime } from "../runtime.js";
import type { ContainerEntry } from "../services/containers.js";
import { adoptReceivedDomain, markMigratedAway } from "../services/migration-records.js";
import { isDomainless, isLeftSuspended } from "../services/model.js";
import type { DomainOps } from "./domain-ops.js";
import { conditionOf, MigrationStatusWriter } from "./migration-status.js";

const log = logger("node-agent-migration");
const C = MIGRATION_CONDITIONS;

export interface MigrationAgentConfig {
  kubeConfig: KubeConfig;
  client: KubeClient;
  nodeName: string;
  runtime: CriRuntime;
  ops: DomainOps;
  /** Where the target listens; default: the first InternalIP of this node's Node object. */
  nodeAddress?: string;
  /** How often transferredBytes is written while streaming (ms). */
  progressIntervalMs?: number;
  /** Inactivity timeout of the stream, both sides (ms); the stream module's default when unset. */
  streamTimeoutMs?: number;
}

const reasonOf = (err: unknown): string => (err instanceof MigrationError ? err.reason : "Failed");
/** The certificate's common name: role, migration and node, as one DNS-like label (for logs; peers pin the fingerprint). */
const identityName = (role: string, migration: string, node: string): string =>
  `${role}.${migration}.${node}`.slice(0, 63).replace(/[^A-Za-z0-9]+$/, "");
const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err)).slice(0, 1000);

export class MigrationAgent {
  readonly migrations: Watched<UnikernelVMMigration>;
  /** Roles taken in this process, by `<role>/<migration uid>`: never a second receive or send. */
  private readonly handled = new Set<string>();
  private readonly inflight = new Map<string, Promise<void>>();
  private address: string | undefined;

  constructor(private readonly config: MigrationAgentConfig) {
    this.migrations = watchResource<UnikernelVMMigration>(
      config.kubeConfig,
      config.client,
      paths.custom(MIGRATION_PLURAL),
    );
    this.address = config.nodeAddress;
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

  /** The VM's running container on this node (not a migration's target pod). */
  private sourceContainer(m: UnikernelVMMigration): ContainerEntry | undefined {
    const ids = new Set(
      this.rt.sandboxes
        .list()
        .filter(
          (s) =>
            s.status.state === "ready" &&
            !s.meta.config.migrationTarget &&
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
    if (this.handled.has(key)) return;
    const phase = m.status?.phase;
    const ready = conditionOf(m, C.targetReady);
    const c = this.incomingContainer(m);
    if (phase === "TargetPreparing" && c && !ready) {
      this.begin(key, () => this.receive(m, c));
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
    this.begin(key, () => this.send(m, c, st.targetEndpoint!, st.targetCertificateSHA256!));
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

  private async receive(m: UnikernelVMMigration, c: ContainerEntry): Promise<void> {
    const w = new MigrationStatusWriter(this.config.client, this.config.nodeName, "target", m);
    const name = `${m.metadata.namespace}/${m.metadata.name}`;
    let guestNetwork: { mac: string; ip: string } | undefined;
    let incoming: IncomingMigration;
    let endpoint: string;
    let fingerprint: string;
    try {
      const host = await this.nodeAddress();
      const identity = await createIdentity(identityName("target", m.metadata.name!, this.config.nodeName));
      fingerprint = identity.fingerprint;
      incoming = await receiveDomain({
        hv: this.rt.hypervisor,
        host,
        identity,
        // Read when the source connects: it published its fingerprint before dialling.
        sourceFingerprint: async () => {
          const fresh = await this.config.client.request<UnikernelVMMigration>({
            method: "GET",
            path: paths.customObject(MIGRATION_PLURAL, m.metadata.namespace!, m.metadata.name!),
          });
          return fresh.status?.sourceCertificateSHA256;
        },
        targetSpec: async (source) => {
          const { spec, guest } = await this.targetSpec(c, source);
          guestNetwork = guest;
          return spec;
        },
        ...(this.config.streamTimeoutMs ? { timeoutMs: this.config.streamTimeoutMs } : {}),
      });
      endpoint = `${host}:${incoming.port}`;
    } catch (err) {
      await w.apply(
        {},
        { type: C.targetReady, status: "False", reason: reasonOf(err), message: messageOf(err) },
      );
      return;
    }
    this.rt.receiving.set(c.meta.id, incoming);
    if (
      this.rt.containers.get(c.meta.id)?.status.state !== "running" &&
      this.rt.containers.get(c.meta.id)?.status.state !== "created"
    ) {
      this.rt.receiving.delete(c.meta.id);
      await incoming.cancel("the target pod's container is gone");
      await w.apply(
        {},
        {
          type: C.targetReady,
          status: "False",
          reason: "Cancelled",
          message: "the target pod's container was stopped",
        },
      );
      return;
    }
    await w.apply(
      { targetEndpoint: endpoint, targetCertificateSHA256: fingerprint },
      {
        type: C.targetReady,
        status: "True",
        reason: "Listening",
        message: `waiting for the stream at ${endpoint}`,
      },
    );
    log.info("waiting for migration", { migration: name, endpoint, container: c.meta.id });
    try {
      const r = await incoming.result;
      const adopted = await this.rt.locks.run(c.meta.sandboxId, async () => {
        const cur = this.rt.containers.get(c.meta.id);
        if (!cur?.status.incoming || cur.status.state === "exited") {
          // Stopped while the last bytes came in: the domain has no pod to belong to.
          await this.config.runtime.containers.destroyDomain(r.domid, c.meta.domainName);
          return false;
        }
        await adoptReceivedDomain(
          this.rt,
          this.config.runtime.containers,
          cur,
          r.domid,
          guestNetwork ?? this.sandboxGuest(c),
        );
        return true;
      });
      if (!adopted)
        throw new MigrationError("Cancelled", "the target pod's container was stopped before the domain ran");
      await w.apply(
        {},
        {
          type: C.targetRunning,
          status: "True",
          reason: "Running",
          message: `domain ${r.domid} runs here: ${r.bytes} bytes received, restored in ${r.restoreMs} ms`,
        },
      );
    } catch (err) {
      this.rt.receiving.delete(c.meta.id);
      await w.apply(
        {},
        { type: C.targetRunning, status: "False", reason: reasonOf(err), message: messageOf(err) },
      );
    }
  }

  private sandboxGuest(c: ContainerEntry): { mac: string; ip: string } {
    const net = this.rt.sandboxes.get(c.meta.sandboxId)?.status.network;
    if (!net) throw new Error(`pod sandbox ${c.meta.sandboxId} has no network`);
    return { mac: net.mac, ip: net.ip };
  }

  /**
   * The domain as it is restored here: the source's memory size and the source vif's MAC (the guest's
   * netfront knows it), this pod's domain name, kernel copy and bridge. The guest keeps the address it
   * booted with; dom0 NATs this pod's address to it.
   */
  private async targetSpec(
    c: ContainerEntry,
    source: DomainSpec,
  ): Promise<{ spec: DomainSpec; guest: { mac: string; ip: string } }> {
    const sb = this.rt.sandboxes.get(c.meta.sandboxId);
    const net = sb?.status.network;
    if (!sb || !net)
      throw new MigrationError("InvalidArgument", `pod sandbox ${c.meta.sandboxId} has no network`);
    const vif = source.vifs[0];
    const guestIp = vif?.ip ?? /(?:^|\s)ip=([\d.]+)/.exec(source.cmdline)?.[1] ?? net.ip;
    const guestGateway = /(?:^|\s)gw=([\d.]+)/.exec(source.cmdline)?.[1];
    if (guestIp !== net.ip && guestGateway && this.rt.network.managesHostNetwork)
      await applyReaddressing(sb.meta.id, { podIp: net.ip, guestIp, guestGateway, bridge: net.bridge });
    const mac = vif?.mac ?? net.mac;
    const spec: DomainSpec = {
      ...source,
      name: c.meta.domainName,
      kernelPath: c.meta.kernelPath,
      ...(c.meta.initrdPath ? { initrdPath: c.meta.initrdPath } : {}),
      vifs: vif
        ? [{ bridge: net.bridge, mac, ...(this.rt.options.vifAntiSpoof ? { ip: guestIp } : {}) }]
        : [],
    };
    if (!c.meta.initrdPath) delete spec.initrdPath;
    return { spec, guest: { mac, ip: guestIp } };
  }

  private async send(
    m: UnikernelVMMigration,
    c: ContainerEntry,
    endpoint: string,
    targetFingerprint: string,
  ): Promise<void> {
    const w = new MigrationStatusWriter(this.config.client, this.config.nodeName, "source", m);
    const name = m.metadata.name!;
    let bytes = 0;
    let written = 0;
    let timer: NodeJS.Timeout | undefined;
    try {
      const identity = await createIdentity(identityName("source", name, this.config.nodeName));
      // The fingerprint first: the target checks the connecting certificate against it.
      await w.apply(
        { sourceCertificateSHA256: identity.fingerprint },
        { type: C.transferred, status: "Unknown", reason: "Streaming", message: `streaming to ${endpoint}` },
      );
      timer = setInterval(() => {
        if (bytes === written) return;
        written = bytes;
        void w
          .apply({ transferredBytes: bytes })
          .catch((err: unknown) => log.debug("progress write failed", { err: String(err) }));
      }, this.config.progressIntervalMs ?? 2000);
      const result = await this.rt.locks.run(c.meta.sandboxId, async () => {
        const cur = this.rt.containers.get(c.meta.id);
        const domid = cur?.status.domid;
        if (!cur || cur.status.state !== "running" || domid === undefined || isDomainless(cur.status))
          throw new MigrationError("SourceFailed", `container ${c.meta.id} has no running domain any more`, {
            sourceResumed: true,
          });
        // A suspend is a request the guest answers; a paused guest cannot (it runs on, unpaused, on the target).
        if ((await this.rt.hypervisor.info(domid))?.state === "paused")
          await this.rt.hypervisor.unpause(domid);
        try {
          const r = await sendDomain({
            hv: this.rt.hypervisor,
            domid,
            spec: this.config.ops.domainSpec(cur),
            endpoint,
            identity,
            targetFingerprint,
            live: m.spec.mode !== "cold",
            onProgress: (b) => (bytes = b),
            ...(this.config.streamTimeoutMs ? { timeoutMs: this.config.streamTimeoutMs } : {}),
          });
          await markMigratedAway(this.rt, cur, name, r.switchedAt);
          return r;
        } catch (err) {
          // Past the point of no return the source domain is gone: record it so the kubelet does not restart it here.
          const still = await this.rt.hypervisor.info(domid).catch(() => undefined);
          if (!still || still.name !== cur.meta.domainName)
            await markMigratedAway(this.rt, cur, name, new Date());
          throw err;
        }
      });
      clearInterval(timer);
      await w.apply(
        {
          transferredBytes: result.bytes,
          downtimeMilliseconds: Math.round(result.downtimeMs),
          switchTime: result.switchedAt.toISOString().replace(/\.\d{3}Z$/, "Z"),
        },
        {
          type: C.transferred,
          status: "True",
          reason: "Transferred",
          message: `${result.live ? "live" : "stop-and-copy"}${result.live || m.spec.mode === "cold" ? "" : " (this Xen cannot track a PV guest's dirty pages)"}: ${result.bytes} bytes in ${result.totalMs} ms, ${Math.round(result.downtimeMs)} ms of downtime; the source domain is destroyed`,
        },
      );
      log.info("migration sent", {
        migration: `${m.metadata.namespace}/${name}`,
        bytes: result.bytes,
        totalMs: result.totalMs,
        downtimeMs: result.downtimeMs,
      });
    } catch (err) {
      clearInterval(timer);
      const resumed = err instanceof MigrationError && err.sourceResumed;
      await w.apply(bytes ? { transferredBytes: bytes } : {}, {
        type: C.transferred,
        status: "False",
        reason: reasonOf(err),
        message: `${messageOf(err)}${resumed ? " (the VM runs on on the source)" : ""}`,
      });
    }
  }
}
