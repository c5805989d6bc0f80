// After a crash or restart: the stores are read back from disk and compared with Xen's domain list.
// Half-made objects are undone (a sandbox still "creating": its IP lease is released; a container still
// "creating": its domain, if one got built, is destroyed), running domains are adopted (console copy
// resumed), containers whose domain is gone are marked exited, and `sf-*` domains that no container
// owns are destroyed. Every destroy here tolerates a domain that vanished after the listing: one the
// dead shim was destroying can still be listed while Xen finishes tearing it down.
import { rm } from "node:fs/promises";
import { logger } from "../../../lib/log.js";
import { guestConsoleLogPath } from "../hypervisor/console.js";
import type { RuntimeContext } from "./context.js";
import type { ContainerService } from "./containers.js";
import { exitFromShutdown } from "./container-state.js";
import { incomingDropped, lifecycleOf } from "./domain-lifecycle.js";
import { isLeftSuspended } from "./model.js";

const log = logger("cri-recovery");
export const DOMAIN_PREFIX = "sf-";

export interface RecoveryReport {
  sandboxes: number;
  containers: number;
  adopted: number;
  removedHalfMadeSandboxes: number;
  removedHalfMadeContainers: number;
  destroyedOrphanDomains: string[];
  markedExited: number;
}

export async function recover(rt: RuntimeContext, containers: ContainerService): Promise<RecoveryReport> {
  await rt.sandboxes.load();
  await rt.containers.load();
  const report: RecoveryReport = {
    sandboxes: 0,
    containers: 0,
    adopted: 0,
    removedHalfMadeSandboxes: 0,
    removedHalfMadeContainers: 0,
    destroyedOrphanDomains: [],
    markedExited: 0,
  };
  const domains = await rt.hypervisor.list();

  for (const c of rt.containers.list()) {
    const sandbox = rt.sandboxes.get(c.meta.sandboxId);
    const domain = domains.find((d) => d.name === c.meta.domainName);
    if (c.status.state === "creating" || !sandbox || sandbox.status.state === "creating") {
      if (domain) await containers.destroyDomain(domain.domid, domain.name);
      if (c.meta.logPath) await rm(c.meta.logPath, { force: true });
      if (rt.options.consoleLogDir)
        await rm(guestConsoleLogPath(c.meta.domainName, rt.options.consoleLogDir), { force: true });
      await rt.containers.delete(c.meta.id);
      report.removedHalfMadeContainers++;
      continue;
    }
    if (c.status.state === "exited") continue;
    // Saved to disk by the node agent: no domain is expected; the agent restores it when asked.
    // A domain beside a suspended record is a restore that did not finish (the checkpoint is still
    // there, and it is the truth): remove the domain, stay suspended.
    if (c.status.suspended) {
      if (domain) await containers.destroyDomain(domain.domid, domain.name);
      report.adopted++;
      continue;
    }
    // A migration's target: the restored copy it recorded (paused, or unpaused after the commit)
    // is the VM or may become it: kept, whatever state, for the node agent to settle from the
    // migration's recorded commit. Any other domain by its name is a restore cut off by the restart
    // (the stream is gone with the old process): it goes. Moved to another node: a leftover domain
    // here is stale (the target ran the VM before the source let go of it).
    const life = lifecycleOf(c.status);
    if (life.kind === "incoming" && domain && domain.domid === life.domid) {
      report.adopted++;
      continue;
    }
    if (life.kind === "incoming" || life.kind === "migratedAway") {
      if (domain) await containers.destroyDomain(domain.domid, domain.name);
      if (life.kind === "incoming" && life.domid !== undefined)
        await rt.containers.update(c.meta.id, (s) => incomingDropped(s));
      report.adopted++;
      continue;
    }
    // Suspended by a migration's send when the shim went down (an "outgoing" record): the VM is in that
    // domain, and the node agent settles it from the migration's recorded commit (resume before it,
    // destroy once the target runs after it); a save's leftover without that record is resumed.
    if (domain && isLeftSuspended(domain) && c.status.state === "running") {
      if (domain.domid !== c.status.domid)
        await rt.containers.update(c.meta.id, (s) => ({ ...s, domid: domain.domid }));
      if (c.meta.logPath)
        await containers.attachConsole(c.meta.id, domain.domid, c.meta.domainName, c.meta.logPath);
      report.adopted++;
      continue;
    }
    if (!domain || domain.state === "shutdown" || domain.state === "crashed") {
      if (domain) await containers.destroyDomain(domain.domid, domain.name);
      await containers.markExited(
        c.meta.id,
        domain ? exitFromShutdown(domain.shutdownReason, domain.state) : exitFromShutdown(undefined, "gone"),
      );
      report.markedExited++;
      continue;
    }
    // Adopt: the domain id may differ (a restore while we were down gives a new one). The backend
    // finishes what the dead process had in flight for it (the lean backend's vif attach).
    if (domain.domid !== c.status.domid)
      await rt.containers.update(c.meta.id, (s) => ({ ...s, domid: domain.domid }));
    const net = sandbox.status.network;
    if (net)
      await rt.hypervisor
        .adopt(domain.domid, [{ bridge: net.bridge, mac: c.status.guestNetwork?.mac ?? net.mac }])
        .catch((err: unknown) =>
          log.warn("adopting a domain's vifs failed", { domid: domain.domid, err: String(err) }),
        );
    if (c.status.state === "running" && c.meta.logPath)
      await containers.attachConsole(c.meta.id, domain.domid, c.meta.domainName, c.meta.logPath);
    report.adopted++;
  }

  for (const sb of rt.sandboxes.list()) {
    if (sb.status.state === "creating") {
      await rt.network.tearDown(sb.meta.id);
      await rt.sandboxes.delete(sb.meta.id);
      report.removedHalfMadeSandboxes++;
    } else if (sb.status.state === "notready") {
      await rt.network.tearDown(sb.meta.id); // a crash in the middle of StopPodSandbox
    }
  }
  // A lease no sandbox record owns (its record was removed, or the state directory was reset).
  const strayLeases = await rt.network.releaseUnowned(new Set(rt.sandboxes.list().map((s) => s.meta.id)));
  if (strayLeases.length > 0) log.warn("released IP leases no sandbox owns", { ips: strayLeases });

  const owned = new Set(
    rt.containers
      .list()
      .filter((c) => c.status.state !== "exited")
      .map((c) => c.meta.domainName),
  );
  for (const d of domains) {
    if (!d.name.startsWith(DOMAIN_PREFIX) || owned.has(d.name)) continue;
    await containers.destroyDomain(d.domid, d.name);
    report.destroyedOrphanDomains.push(d.name);
  }
  report.sandboxes = rt.sandboxes.list().length;
  report.containers = rt.containers.list().length;
  log.info("recovered state", { ...report });
  return report;
}
