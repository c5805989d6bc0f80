// The source of CRI's GetContainerEvents: every committed change of a sandbox or container record that
// the CRI can see becomes one lifecycle event, in the order the stores committed them. Which change is
// which event is decided by the pure functions below; the stream handler turns an event into the CRI
// message (the pod's statuses as they are right after the change).
//
// Why events matter at density: without them the kubelet relists every sandbox and container each
// second (its generic PLEG); with its EventedPLEG feature gate it relists every 5 minutes and learns
// of starts and exits from this stream.
import { logger } from "../../../lib/log.js";
import type { Change } from "../store/store.js";
import type { ContainerEventType } from "../proto.js";
import type { ContainerEntry } from "./containers.js";
import type { RuntimeContext } from "./context.js";
import type { ContainerStatusRecord, SandboxStatus } from "./model.js";
import type { SandboxEntry } from "./sandboxes.js";

export interface LifecycleEvent {
  type: ContainerEventType;
  /** The container's id, or the sandbox's for a sandbox's own event (as containerd reports them). */
  id: string;
  sandboxId: string;
  /** For a sandbox's event: its record (the last one, for a removal). */
  sandbox?: SandboxEntry;
}

/**
 * A sandbox's change as an event: ready is STARTED, ready → not ready STOPPED, removed DELETED. A
 * sandbox still being made ("creating") was never reported, so its end is not either.
 */
export function sandboxEventType(
  before: Readonly<SandboxStatus> | undefined,
  after: Readonly<SandboxStatus> | undefined,
): ContainerEventType | undefined {
  if (!after) return before && before.state !== "creating" ? "CONTAINER_DELETED_EVENT" : undefined;
  if (after.state === "ready" && before?.state !== "ready") return "CONTAINER_STARTED_EVENT";
  if (after.state === "notready" && before?.state === "ready") return "CONTAINER_STOPPED_EVENT";
  return undefined;
}

/**
 * A container's change as an event: built (created), started (running), ended (exited), removed.
 * Changes within a state (a domain suspended to disk or restored, still "running" for the CRI) are
 * none; nor is anything about a container still being made.
 */
export function containerEventType(
  before: Readonly<ContainerStatusRecord> | undefined,
  after: Readonly<ContainerStatusRecord> | undefined,
): ContainerEventType | undefined {
  if (!after) return before && before.state !== "creating" ? "CONTAINER_DELETED_EVENT" : undefined;
  if (after.state === before?.state) return undefined;
  switch (after.state) {
    case "creating":
      return undefined;
    case "created":
      return "CONTAINER_CREATED_EVENT";
    case "running":
      return "CONTAINER_STARTED_EVENT";
    case "exited":
      return "CONTAINER_STOPPED_EVENT";
  }
}

const log = logger("cri-events");

export class LifecycleEvents {
  private readonly subscribers = new Set<(e: LifecycleEvent) => void>();

  constructor(ctx: Pick<RuntimeContext, "sandboxes" | "containers">) {
    ctx.sandboxes.watch((c) => this.sandboxChanged(c));
    ctx.containers.watch((c) => this.containerChanged(c));
  }

  /** fn sees every event from now on, synchronously with the change; returns the unsubscribe. */
  subscribe(fn: (e: LifecycleEvent) => void): () => void {
    this.subscribers.add(fn);
    return () => this.subscribers.delete(fn);
  }

  get subscriberCount(): number {
    return this.subscribers.size;
  }

  private sandboxChanged(c: Change<SandboxEntry["meta"], SandboxEntry["status"]>): void {
    const type = sandboxEventType(c.before?.status, c.after?.status);
    const sandbox = c.after ?? c.before;
    if (type && sandbox) this.emit({ type, id: c.id, sandboxId: c.id, sandbox });
  }

  private containerChanged(c: Change<ContainerEntry["meta"], ContainerEntry["status"]>): void {
    const type = containerEventType(c.before?.status, c.after?.status);
    const container = c.after ?? c.before;
    if (type && container) this.emit({ type, id: c.id, sandboxId: container.meta.sandboxId });
  }

  private emit(e: LifecycleEvent): void {
    for (const fn of this.subscribers) {
      try {
        fn(e);
      } catch (err) {
        log.error("an event subscriber failed", { type: e.type, id: e.id, err: String(err) });
      }
    }
  }
}
