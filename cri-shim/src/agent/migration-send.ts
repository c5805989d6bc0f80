// The source's role in a live migration: publish its own fingerprint, record the container as
// outgoing, stream the domain under the sandbox's lock with the commit point in the API (Committed),
// record the container as moved away, then Transferred with bytes and downtime (or the reason it
// failed, and whether the VM runs on here). After the commit a failure leaves the domain suspended and
// the container outgoing: the agent's reconcile settles it from the record (settleOutgoing).
import { MIGRATION_CONDITIONS, type UnikernelVMMigration } from "../../../api/index.js";
import { isSimulatedCrash } from "../../../lib/failpoints.js";
import { logger } from "../../../lib/log.js";
import { createIdentity, MigrationError, sendDomain } from "../migration/index.js";
import type { ContainerEntry } from "../services/containers.js";
import { sourceHandover } from "../migration/handover-actors.js";
import { clearOutgoing, markMigratedAway, recordOutgoing } from "../services/migration-records.js";
import { isDomainless } from "../services/model.js";
import { identityName, messageOf, reasonOf, type MigrationAgentConfig } from "./migration-role.js";
import { apiHandoverStore } from "./migration-handover.js";
import { MigrationStatusWriter } from "./migration-status.js";

const log = logger("node-agent-migration");
const C = MIGRATION_CONDITIONS;

export async function sendAsSource(
  config: MigrationAgentConfig,
  m: UnikernelVMMigration,
  c: ContainerEntry,
  endpoint: string,
  targetFingerprint: string,
): Promise<void> {
  const rt = config.runtime.ctx;
  const w = new MigrationStatusWriter(config.client, config.nodeName, "source", m);
  const name = m.metadata.name!;
  let bytes = 0;
  let written = 0;
  let timer: NodeJS.Timeout | undefined;
  let committed = false;
  try {
    const identity = await createIdentity(identityName("source", name, config.nodeName));
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
    }, config.progressIntervalMs ?? 2000);
    const result = await rt.locks.run(c.meta.sandboxId, async () => {
      const cur = rt.containers.get(c.meta.id);
      const domid = cur?.status.domid;
      if (!cur || cur.status.state !== "running" || domid === undefined || isDomainless(cur.status))
        throw new MigrationError("SourceFailed", `container ${c.meta.id} has no running domain any more`, {
          sourceResumed: true,
        });
      // A suspend is a request the guest answers; a paused guest cannot (it runs on, unpaused, on the target).
      if ((await rt.hypervisor.info(domid))?.state === "paused") await rt.hypervisor.unpause(domid);
      await recordOutgoing(rt, cur, name);
      const handover = sourceHandover(apiHandoverStore(config.client, w, m), {
        ...(config.handoverPollMs ? { pollMs: config.handoverPollMs } : {}),
      });
      try {
        const r = await sendDomain({
          hv: rt.hypervisor,
          domid,
          spec: config.ops.domainSpec(cur),
          endpoint,
          identity,
          targetFingerprint,
          live: m.spec.mode !== "cold",
          onProgress: (b) => (bytes = b),
          handover: {
            ...handover,
            commit: async (targetDomid) => {
              const d = await handover.commit(targetDomid);
              committed = d === "commit";
              return d;
            },
          },
          ...(config.streamTimeoutMs ? { timeoutMs: config.streamTimeoutMs } : {}),
        });
        await markMigratedAway(rt, cur, name, r.switchedAt);
        return r;
      } catch (err) {
        // Resumed: an ordinary running domain again. Not resumed (after the commit, or the commit's
        // outcome unknown): it stays outgoing and suspended until the record settles it.
        if (err instanceof MigrationError && err.sourceResumed) await clearOutgoing(rt, cur.meta.id);
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
    if (isSimulatedCrash(err)) throw err; // tests: this process "died" here and writes nothing more
    const resumed = err instanceof MigrationError && err.sourceResumed;
    if (committed) {
      // Never Transferred=False after the commit: the VM is the target's; the reconcile finishes it.
      log.warn("send failed after the commit; the suspended copy waits for TargetRunning", {
        migration: `${m.metadata.namespace}/${name}`,
        err: messageOf(err),
      });
      return;
    }
    await w.apply(bytes ? { transferredBytes: bytes } : {}, {
      type: C.transferred,
      status: "False",
      reason: reasonOf(err),
      message: `${messageOf(err)}${resumed ? " (the VM runs on on the source)" : ""}`,
    });
  }
}
