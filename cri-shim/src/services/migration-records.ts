// What a live migration changes in the CRI's records, in one place so the node agent and the CRI
// calls agree: a target container becomes an ordinary running one once its domain was received, and a
// source container is marked as moved away (running for the kubelet, no domain) once the target runs.
import { logger } from "../../../lib/log.js";
import type { RuntimeContext } from "./context.js";
import type { ContainerService, ContainerEntry } from "./containers.js";
import {
  abortOutgoing,
  beginOutgoing,
  incomingDropped,
  incomingRestored,
  incomingRunning,
  migratedAway,
} from "./domain-lifecycle.js";
import type { GuestNetwork } from "./model.js";

const log = logger("cri-migration");
const CONSOLE_DRAIN_MS = 300;

/** Target side: the received domain runs here; the record gets its domid and the guest's real vif. */
export async function adoptReceivedDomain(
  rt: RuntimeContext,
  containers: ContainerService,
  c: ContainerEntry,
  domid: number,
  guestNetwork: GuestNetwork,
): Promise<void> {
  await rt.containers.update(c.meta.id, (s) => incomingRunning(s, domid, guestNetwork));
  rt.receiving.delete(c.meta.id);
  const migration = c.status.incoming?.migration ?? "";
  await rt.sandboxes.update(c.meta.sandboxId, (s) => ({
    ...s,
    received: { migration, at: new Date().toISOString() },
  }));
  if (c.meta.logPath) await containers.attachConsole(c.meta.id, domid, c.meta.domainName, c.meta.logPath);
  log.info("received domain adopted", { id: c.meta.id, domid, migration });
}

/** Source side: the target runs the VM and the source domain is gone; the pod waits for its deletion. */
export async function markMigratedAway(
  rt: RuntimeContext,
  c: ContainerEntry,
  migration: string,
  at: Date,
): Promise<void> {
  // The console copy polls xenconsoled's log every 100 ms: let it take the source's last lines first.
  if (rt.pumps.has(c.meta.id)) await new Promise((r) => setTimeout(r, CONSOLE_DRAIN_MS));
  const pump = rt.pumps.get(c.meta.id);
  rt.pumps.delete(c.meta.id);
  await pump?.stop();
  // Already exited (the pod was stopped meanwhile): the VM moved all the same; the exit stands.
  await rt.containers.update(c.meta.id, (s) => (s.state === "exited" ? s : migratedAway(s, migration, at)));
  log.info("container migrated away", { id: c.meta.id, migration });
}

/** Source, before the send suspends the domain: the migration owns it now (a restart settles it from the record). */
export async function recordOutgoing(
  rt: RuntimeContext,
  c: ContainerEntry,
  migration: string,
): Promise<void> {
  await rt.containers.update(c.meta.id, (s) => beginOutgoing(s, migration, new Date()));
}

/** Source, the domain was resumed after an aborted handover. */
export async function clearOutgoing(rt: RuntimeContext, id: string): Promise<void> {
  await rt.containers.update(id, (s) => (s.outgoing ? abortOutgoing(s) : s));
}

/** Target, the stream restored into a paused domain: recorded before the source hears "restored". */
export async function recordIncomingRestored(
  rt: RuntimeContext,
  id: string,
  domid: number,
  guestNetwork?: { mac: string; ip: string },
): Promise<void> {
  await rt.containers.update(id, (s) => incomingRestored(s, domid, guestNetwork));
}

/** Target, the paused copy was destroyed (aborted handover). */
export async function dropIncoming(rt: RuntimeContext, id: string): Promise<void> {
  await rt.containers.update(id, (s) => (s.incoming ? incomingDropped(s) : s));
}
