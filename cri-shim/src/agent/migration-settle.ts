// After a restart, or once a send or receive gave up with its copy kept: each node settles its copy of
// the VM from the migration's recorded commit (migration/handover.ts's rule chains), never from a
// socket message. The source: an "outgoing" container whose domain is suspended (or still runs); the
// target: an "incoming" container holding a paused restored copy.
import { MIGRATION_CONDITIONS, type UnikernelVMMigration } from "../../../api/index.js";
import { logger } from "../../../lib/log.js";
import { settleSource, settleTarget } from "../migration/handover-actors.js";
import type { ContainerEntry } from "../services/containers.js";
import {
  adoptReceivedDomain,
  clearOutgoing,
  dropIncoming,
  markMigratedAway,
} from "../services/migration-records.js";
import { apiHandoverStore } from "./migration-handover.js";
import type { MigrationAgentConfig } from "./migration-role.js";
import { conditionOf, MigrationStatusWriter } from "./migration-status.js";

const log = logger("node-agent-migration");
const C = MIGRATION_CONDITIONS;

interface Settling {
  rt: MigrationAgentConfig["runtime"]["ctx"];
  w: MigrationStatusWriter;
  store: ReturnType<typeof apiHandoverStore>;
  /** The container as it is now, under the sandbox's lock. */
  cur: ContainerEntry | undefined;
}

/** Runs one settle step under the sandbox's lock with this role's writer and record store. */
async function settling(
  config: MigrationAgentConfig,
  m: UnikernelVMMigration,
  role: "source" | "target",
  c: ContainerEntry,
  step: (s: Settling) => Promise<void>,
): Promise<void> {
  const rt = config.runtime.ctx;
  const w = new MigrationStatusWriter(config.client, config.nodeName, role, m);
  const store = apiHandoverStore(config.client, w, m);
  await rt.locks.run(c.meta.sandboxId, () => step({ rt, w, store, cur: rt.containers.get(c.meta.id) }));
}

/** Source: one settle step for an outgoing container of migration `m`. */
export async function settleOutgoing(
  config: MigrationAgentConfig,
  m: UnikernelVMMigration,
  c: ContainerEntry,
): Promise<void> {
  await settling(config, m, "source", c, async ({ rt, w, store, cur }) => {
    if (!cur?.status.outgoing) return;
    const step = await settleSource(store, rt.hypervisor, cur.status.domid);
    const migration = `${m.metadata.namespace}/${m.metadata.name}`;
    switch (step.step) {
      case "recordAbort":
      case "resume":
        await clearOutgoing(rt, cur.meta.id);
        if (conditionOf(m, C.transferred)?.status !== "False")
          await w.apply(
            {},
            {
              type: C.transferred,
              status: "False",
              reason: "SourceRestarted",
              message: `the source's send ended before a commit (${step.why}); the VM runs on here`,
            },
          );
        log.warn("outgoing domain settled: runs on here", { migration, why: step.why });
        break;
      case "none":
      case "destroy": {
        if (step.step === "none") {
          // Nothing to do to the domain: what the record says decides what the container is now.
          const committed = (await store.read()).committed === "True";
          const here = await rt.hypervisor.info(cur.status.domid ?? -1);
          if (here || !committed) {
            // Runs here (the send never suspended it), or gone without a commit (an exit, which the
            // exit monitor reports once the container is an ordinary one again).
            await clearOutgoing(rt, cur.meta.id);
            break;
          }
        }
        await markMigratedAway(rt, cur, m.metadata.name!, new Date());
        if (conditionOf(m, C.transferred)?.status !== "True")
          await w.apply(
            {},
            {
              type: C.transferred,
              status: "True",
              reason: "Transferred",
              message: `committed; the target runs the VM and the source's suspended copy is destroyed (${step.why})`,
            },
          );
        log.info("outgoing domain settled: moved away", { migration, why: step.why });
        break;
      }
      case "keep":
        break;
    }
  });
}

/** Target: one settle step for an incoming container that holds a paused restored copy. */
export async function settleIncoming(
  config: MigrationAgentConfig,
  m: UnikernelVMMigration,
  c: ContainerEntry,
): Promise<void> {
  await settling(config, m, "target", c, async ({ rt, w, store, cur }) => {
    const domid = cur?.status.incoming?.domid;
    if (!cur || domid === undefined) return;
    const guest = cur.status.guestNetwork ?? sandboxGuest(config, cur);
    const before = await rt.hypervisor.info(domid);
    const step = await settleTarget(store, rt.hypervisor, before ? domid : undefined);
    const migration = `${m.metadata.namespace}/${m.metadata.name}`;
    if (step.step === "unpause" || step.step === "recordRunning") {
      await adoptReceivedDomain(rt, config.runtime.containers, cur, domid, guest);
      log.info("incoming copy settled: runs here", { migration, domid, why: step.why });
    } else if (step.step === "destroy" || (step.step === "none" && !before)) {
      await dropIncoming(rt, cur.meta.id);
      if (!conditionOf(m, C.targetRunning))
        await w.apply(
          {},
          {
            type: C.targetRunning,
            status: "False",
            reason: "Aborted",
            message: `paused copy dropped: ${step.why}`,
          },
        );
      log.warn("incoming copy settled: dropped", { migration, domid, why: step.why });
    }
  });
}

function sandboxGuest(config: MigrationAgentConfig, c: ContainerEntry): { mac: string; ip: string } {
  const net = config.runtime.ctx.sandboxes.get(c.meta.sandboxId)?.status.network;
  if (!net) throw new Error(`pod sandbox ${c.meta.sandboxId} has no network`);
  return { mac: net.mac, ip: net.ip };
}
