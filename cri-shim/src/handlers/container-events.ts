// GetContainerEvents: the runtime's lifecycle events (services/lifecycle-events.ts) as CRI messages,
// each carrying the pod's sandbox status and all its containers' statuses (newest first) as
// PodSandboxStatus would answer them at that moment: the kubelet's evented PLEG puts them in its pod
// cache as they are, with created_at as their time (PodSandboxStatus's timestamp is the same clock).
import { nowNs, type ContainerEventResponse } from "../proto.js";
import type { CriRuntime } from "../runtime.js";
import type { LifecycleEvent } from "../services/lifecycle-events.js";
import { containerStatusView, newestFirst, sandboxStatusView } from "./views.js";

/** The CRI message of an event; undefined when its pod is gone (the pod's removal is its own event). */
export function eventMessage(rt: CriRuntime, e: LifecycleEvent): ContainerEventResponse | undefined {
  const sandbox = e.sandbox ?? rt.ctx.sandboxes.get(e.sandboxId);
  if (!sandbox) return undefined;
  const members = rt.containers.list({
    id: "",
    pod_sandbox_id: sandbox.meta.id,
    state: null,
    label_selector: {},
  });
  return {
    container_id: e.id,
    container_event_type: e.type,
    created_at: nowNs(),
    pod_sandbox_status: sandboxStatusView(sandbox),
    containers_statuses: newestFirst(members).map(containerStatusView),
  };
}

/** Sends every event from now on to send; returns the function that stops it. */
export function containerEvents(rt: CriRuntime, send: (m: ContainerEventResponse) => void): () => void {
  return rt.events.subscribe((e) => {
    const m = eventMessage(rt, e);
    if (m) send(m);
  });
}
