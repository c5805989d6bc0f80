// The source's role in a live migration: publish its own fingerprint, stream the domain under the
// sandbox's lock, record the container as moved away, then Transferred with bytes and downtime (or the
// reason it failed, and whether the VM runs on here).
import { MIGRATION_CONDITIONS, type UnikernelVMMigration } from "../../../api/index.js";
import { logger } from "../../../lib/log.js";
import { createIdentity, MigrationError, sendDomain } from "../migration/index.js";
import type { ContainerEntry } from "../services/containers.js";
import { markMigratedAway } from "../services/migration-records.js";
import { isDomainless } from "../services/model.js";
import { identityName, messageOf, reasonOf, type MigrationAgentConfig } from "./migration-role.js";
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
          ...(config.streamTimeoutMs ? { timeoutMs: config.streamTimeoutMs } : {}),
        });
        await markMigratedAway(rt, cur, name, r.switchedAt);
        return r;
      } catch (err) {
        // Past the point of no return the source domain is gone: record it so the kubelet does not restart it here.
        const still = await rt.hypervisor.info(domid).catch(() => undefined);
        if (!still || still.name !== cur.meta.domainName) await markMigratedAway(rt, cur, name, new Date());
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
