// The target's role in a live migration: listen with a fresh identity, publish endpoint, fingerprint
// and TargetReady, restore the stream into the pod's waiting container, readdress the guest when it
// keeps an address from the source node, then TargetRunning (api/v1alpha1/migration.ts). The restored
// copy is recorded (container record, then TargetRestored) before the source hears of it, and runs
// only once the source's Committed=True is recorded; a failure after that keeps it (settleIncoming).
import { MIGRATION_CONDITIONS, MIGRATION_PLURAL, type UnikernelVMMigration } from "../../../api/index.js";
import { isSimulatedCrash } from "../../../lib/failpoints.js";
import { logger } from "../../../lib/log.js";
import { paths } from "../../../lib/kube/client.js";
import type { DomainSpec } from "../hypervisor/types.js";
import { createIdentity, type IncomingMigration, MigrationError, receiveDomain } from "../migration/index.js";
import { announceGuest, guestPorts } from "../network/announce.js";
import { applyReaddressing } from "../network/readdress.js";
import type { ContainerEntry } from "../services/containers.js";
import type { RuntimeContext } from "../services/context.js";
import { recordTargetRunning, targetHandover } from "../migration/handover-actors.js";
import { adoptReceivedDomain, dropIncoming, recordIncomingRestored } from "../services/migration-records.js";
import { apiHandoverStore } from "./migration-handover.js";
import type { GuestNetwork } from "../services/model.js";
import { identityName, messageOf, reasonOf, type RoleContext } from "./migration-role.js";
import { MigrationStatusWriter } from "./migration-status.js";

const log = logger("node-agent-migration");
const C = MIGRATION_CONDITIONS;

export async function receiveAsTarget(
  role: RoleContext,
  m: UnikernelVMMigration,
  c: ContainerEntry,
): Promise<void> {
  const { config } = role;
  const rt = config.runtime.ctx;
  const w = new MigrationStatusWriter(config.client, config.nodeName, "target", m);
  const name = `${m.metadata.namespace}/${m.metadata.name}`;
  let guestNetwork: GuestNetwork | undefined;
  let incoming: IncomingMigration;
  let endpoint: string;
  let fingerprint: string;
  const store = apiHandoverStore(config.client, w, m);
  try {
    const host = await role.nodeAddress();
    const identity = await createIdentity(identityName("target", m.metadata.name!, config.nodeName));
    fingerprint = identity.fingerprint;
    const handover = targetHandover(store, {
      ...(config.handoverPollMs ? { pollMs: config.handoverPollMs } : {}),
    });
    incoming = await receiveDomain({
      hv: rt.hypervisor,
      host,
      identity,
      // Read when the source connects: it published its fingerprint before dialling.
      sourceFingerprint: async () => {
        const fresh = await config.client.request<UnikernelVMMigration>({
          method: "GET",
          path: paths.customObject(MIGRATION_PLURAL, m.metadata.namespace!, m.metadata.name!),
        });
        return fresh.status?.sourceCertificateSHA256;
      },
      targetSpec: async (source) => {
        const { spec, guest } = await targetSpec(rt, c, source);
        guestNetwork = guest;
        return spec;
      },
      ...(config.streamTimeoutMs ? { timeoutMs: config.streamTimeoutMs } : {}),
      onUnpaused: (domid, spec) => announceGuest(guestPorts(domid, spec.vifs)),
      handover: {
        ...handover,
        restored: async (domid) => {
          await rt.locks.run(c.meta.sandboxId, () =>
            recordIncomingRestored(rt, c.meta.id, domid, guestNetwork),
          );
          await handover.restored(domid);
        },
      },
    });
    endpoint = `${host}:${incoming.port}`;
  } catch (err) {
    await w.apply(
      {},
      { type: C.targetReady, status: "False", reason: reasonOf(err), message: messageOf(err) },
    );
    return;
  }
  rt.receiving.set(c.meta.id, incoming);
  if (
    rt.containers.get(c.meta.id)?.status.state !== "running" &&
    rt.containers.get(c.meta.id)?.status.state !== "created"
  ) {
    rt.receiving.delete(c.meta.id);
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
    const adopted = await rt.locks.run(c.meta.sandboxId, async () => {
      const cur = rt.containers.get(c.meta.id);
      if (!cur?.status.incoming || cur.status.state === "exited") {
        // Stopped while the last bytes came in: the domain has no pod to belong to.
        await config.runtime.containers.destroyDomain(r.domid, c.meta.domainName);
        return false;
      }
      await adoptReceivedDomain(
        rt,
        config.runtime.containers,
        cur,
        r.domid,
        guestNetwork ?? sandboxGuest(rt, c),
      );
      return true;
    });
    if (!adopted)
      throw new MigrationError("Cancelled", "the target pod's container was stopped before the domain ran");
    await recordTargetRunning(
      store,
      `domain ${r.domid} runs here: ${r.bytes} bytes received, restored in ${r.restoreMs} ms`,
    );
  } catch (err) {
    if (isSimulatedCrash(err)) throw err; // tests: this process "died" here and writes nothing more
    rt.receiving.delete(c.meta.id);
    const held = rt.containers.get(c.meta.id)?.status.incoming?.domid;
    if (held !== undefined && (await rt.hypervisor.info(held))?.state !== "paused")
      await rt.locks.run(c.meta.sandboxId, () => dropIncoming(rt, c.meta.id)); // destroyed before the commit
    else if (held !== undefined) {
      // The recorded commit settles the paused copy (settleIncoming); only say what happened.
      log.warn("receive ended with the paused copy kept; the recorded commit settles it", {
        migration: name,
        domid: held,
        err: messageOf(err),
      });
      // After the commit (the unpause kept failing) the status names where the VM waits, paused.
      if (err instanceof MigrationError && err.reason === "UnpauseFailed")
        await w.apply(
          {},
          {
            type: C.targetRunning,
            status: "False",
            reason: err.reason,
            message: `committed; domain ${held} is kept paused on ${config.nodeName} and unpaused again on the next pass: ${messageOf(err)}`,
          },
        );
      return;
    }
    await w.apply(
      {},
      { type: C.targetRunning, status: "False", reason: reasonOf(err), message: messageOf(err) },
    );
  }
}

function sandboxGuest(rt: RuntimeContext, c: ContainerEntry): GuestNetwork {
  const net = rt.sandboxes.get(c.meta.sandboxId)?.status.network;
  if (!net) throw new Error(`pod sandbox ${c.meta.sandboxId} has no network`);
  return { mac: net.mac, ip: net.ip, gateway: net.gateway };
}

/**
 * The network the received guest brought from the source, from the spec's structured vif fields
 * only (address, MAC, gateway); never from its kernel command line, which also holds the tenant's
 * words. A source that sent no address leaves the guest this pod's.
 */
export function receivedGuestNetwork(
  source: Pick<DomainSpec, "vifs">,
  net: { mac: string; ip: string },
): GuestNetwork {
  const vif = source.vifs[0];
  return {
    mac: vif?.mac ?? net.mac,
    ip: vif?.ip ?? net.ip,
    ...(vif?.gateway ? { gateway: vif.gateway } : {}),
  };
}

/**
 * The domain as it is restored here: the source's memory size and the source vif's MAC (the guest's
 * netfront knows it), this pod's domain name, kernel copy and bridge. The guest keeps the address it
 * booted with; dom0's bridge translates this pod's address to it (readdress.ts).
 */
async function targetSpec(
  rt: RuntimeContext,
  c: ContainerEntry,
  source: DomainSpec,
): Promise<{ spec: DomainSpec; guest: GuestNetwork }> {
  const sb = rt.sandboxes.get(c.meta.sandboxId);
  const net = sb?.status.network;
  if (!sb || !net)
    throw new MigrationError("InvalidArgument", `pod sandbox ${c.meta.sandboxId} has no network`);
  const vif = source.vifs[0];
  const guest = receivedGuestNetwork(source, net);
  const { ip: guestIp, gateway: guestGateway, mac } = guest;
  if (guestIp !== net.ip && guestGateway && rt.network.managesHostNetwork)
    await applyReaddressing(sb.meta.id, {
      podIp: net.ip,
      guestIp,
      guestGateway,
      guestMac: mac,
      bridge: net.bridge,
    });
  const spec: DomainSpec = {
    ...source,
    name: c.meta.domainName,
    kernelPath: c.meta.kernelPath,
    ...(c.meta.initrdPath ? { initrdPath: c.meta.initrdPath } : {}),
    vifs: vif ? [{ bridge: net.bridge, mac, ...(rt.options.vifAntiSpoof ? { ip: guestIp } : {}) }] : [],
  };
  if (!c.meta.initrdPath) delete spec.initrdPath;
  return { spec, guest };
}
