// One lifecycle for a container's domain, as a discriminated union read from its store record, with
// the allowed transitions in one table and one function per transition (each checks the table and
// bumps the record's version). Migration send/receive and recovery go through it; the optional flags
// of ContainerStatusRecord are its persisted form (old records read back the same way).
import type { ContainerStatusRecord } from "./model.js";

export type DomainLifecycle =
  | { kind: "creating" }
  | { kind: "created"; domid: number | undefined }
  | { kind: "running"; domid: number }
  /** Saved to disk by the node agent (runPolicy Suspended): no domain. */
  | { kind: "suspended"; checkpoint: string }
  /** A migration's send owns the domain: suspended or about to be; the recorded commit settles it. */
  | { kind: "outgoing"; domid: number; migration: string }
  /** A migration's target: waiting for the stream (domid undefined) or holding the paused copy. */
  | { kind: "incoming"; migration: string; domid: number | undefined }
  /** The VM runs on another node now; the pod waits for its deletion. */
  | { kind: "migratedAway"; migration: string }
  | { kind: "exited" };

export type LifecycleKind = DomainLifecycle["kind"];

/** Where each kind may go next. */
export const TRANSITIONS: Readonly<Record<LifecycleKind, readonly LifecycleKind[]>> = {
  creating: ["created", "incoming", "exited"],
  created: ["running", "incoming", "exited"],
  running: ["suspended", "outgoing", "exited"],
  suspended: ["running", "exited"],
  outgoing: ["running", "migratedAway", "exited"],
  incoming: ["incoming", "running", "exited"],
  migratedAway: ["exited"],
  exited: [],
};

export function lifecycleOf(s: ContainerStatusRecord): DomainLifecycle {
  if (s.state === "exited") return { kind: "exited" };
  if (s.state === "creating") return { kind: "creating" };
  if (s.migratedAway) return { kind: "migratedAway", migration: s.migratedAway.migration };
  if (s.incoming) return { kind: "incoming", migration: s.incoming.migration, domid: s.incoming.domid };
  if (s.suspended) return { kind: "suspended", checkpoint: s.suspended.checkpoint };
  if (s.outgoing && s.domid !== undefined)
    return { kind: "outgoing", domid: s.domid, migration: s.outgoing.migration };
  if (s.state === "created") return { kind: "created", domid: s.domid };
  return s.domid === undefined ? { kind: "created", domid: undefined } : { kind: "running", domid: s.domid };
}

export class LifecycleError extends Error {
  constructor(from: LifecycleKind, to: LifecycleKind) {
    super(`a ${from} domain cannot become ${to}`);
    this.name = "LifecycleError";
  }
}

function move(
  s: ContainerStatusRecord,
  to: LifecycleKind,
  next: ContainerStatusRecord,
): ContainerStatusRecord {
  const from = lifecycleOf(s).kind;
  if (!TRANSITIONS[from].includes(to)) throw new LifecycleError(from, to);
  return { ...next, version: (s.version ?? 0) + 1 };
}

/** Source: a migration's send takes the running domain (written before it is suspended). */
export const beginOutgoing = (s: ContainerStatusRecord, migration: string, at: Date): ContainerStatusRecord =>
  move(s, "outgoing", { ...s, outgoing: { migration, since: at.toISOString() } });

/** Source: the send was aborted and the domain resumed: an ordinary running domain again. */
export function abortOutgoing(s: ContainerStatusRecord): ContainerStatusRecord {
  const { outgoing: _gone, ...rest } = s;
  return move(s, "running", rest);
}

/** Source: the target runs the VM; this record keeps the pod alive without a domain. */
export function migratedAway(s: ContainerStatusRecord, migration: string, at: Date): ContainerStatusRecord {
  const { outgoing: _gone, ...rest } = s;
  return move(s, "migratedAway", {
    ...rest,
    domid: undefined,
    migratedAway: { migration, at: at.toISOString() },
  });
}

/** Target: the stream was restored into a paused domain (recorded before the source hears it). */
export function incomingRestored(
  s: ContainerStatusRecord,
  domid: number,
  guestNetwork?: { mac: string; ip: string },
): ContainerStatusRecord {
  if (!s.incoming) throw new LifecycleError(lifecycleOf(s).kind, "incoming");
  return move(s, "incoming", {
    ...s,
    incoming: { ...s.incoming, domid },
    ...(guestNetwork ? { guestNetwork } : {}),
  });
}

/** Target: the restored copy was dropped (aborted handover); the record waits as before. */
export function incomingDropped(s: ContainerStatusRecord): ContainerStatusRecord {
  if (!s.incoming) throw new LifecycleError(lifecycleOf(s).kind, "incoming");
  return move(s, "incoming", { ...s, incoming: { migration: s.incoming.migration } });
}

/** Target: the committed copy runs here: an ordinary running domain with the guest's real vif. */
export function incomingRunning(
  s: ContainerStatusRecord,
  domid: number,
  guestNetwork: { mac: string; ip: string },
): ContainerStatusRecord {
  const { incoming: _done, ...rest } = s;
  return move(s, "running", { ...rest, domid, guestNetwork });
}
