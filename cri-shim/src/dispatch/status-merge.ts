// One Status for the node out of ours and the fallback's. RuntimeReady needs both: the kubelet then
// reports "container runtime is down" naming the side at fault, and stops starting pods on a node
// whose Linux runtime cannot run them (as it would with containerd alone); it kills nothing, and our
// domains keep running. NetworkReady is ours and, while the fallback answers, the fallback's too.

export interface RuntimeCondition {
  type: string;
  status: boolean;
  reason: string;
  message: string;
}
export interface StatusReply {
  status: { conditions: RuntimeCondition[] } | null;
  info: Record<string, string>;
  runtime_handlers: Array<{ name: string; features?: unknown }>;
}

export const FALLBACK_UNAVAILABLE = "FallbackRuntimeUnavailable";
export const FALLBACK_NOT_READY = "FallbackRuntimeNotReady";

const cond = (s: StatusReply, type: string): RuntimeCondition | undefined =>
  s.status?.conditions.find((c) => c.type === type);

function combine(
  type: string,
  ours: RuntimeCondition | undefined,
  theirs: RuntimeCondition | undefined,
  theirsFailure: { reason: string; message: string } | undefined,
): RuntimeCondition {
  const base = ours ?? { type, status: false, reason: "", message: `superfluid reported no ${type}` };
  if (!base.status) return { ...base, type };
  if (theirsFailure) return { type, status: false, ...theirsFailure };
  if (theirs && !theirs.status)
    return {
      type,
      status: false,
      reason: FALLBACK_NOT_READY,
      message: `fallback runtime: ${theirs.reason}${theirs.message ? `: ${theirs.message}` : ""}`,
    };
  return { ...base, type };
}

/** `fallback` is the fallback's reply, or the error that kept it from answering. */
export function mergeStatus(ours: StatusReply, fallback: StatusReply | { error: string }): StatusReply {
  const down = "error" in fallback ? fallback.error : undefined;
  const theirs = "error" in fallback ? undefined : fallback;
  const runtime = combine(
    "RuntimeReady",
    cond(ours, "RuntimeReady"),
    theirs && cond(theirs, "RuntimeReady"),
    down !== undefined ? { reason: FALLBACK_UNAVAILABLE, message: down } : undefined,
  );
  // The network condition of an unreachable fallback is unknown; RuntimeReady already says it is down.
  const network = combine(
    "NetworkReady",
    cond(ours, "NetworkReady"),
    theirs && cond(theirs, "NetworkReady"),
    undefined,
  );
  const others = (ours.status?.conditions ?? []).filter(
    (c) => c.type !== "RuntimeReady" && c.type !== "NetworkReady",
  );
  const handlers = [...(theirs?.runtime_handlers ?? [])];
  for (const h of ours.runtime_handlers) if (!handlers.some((x) => x.name === h.name)) handlers.push(h);
  return {
    status: { conditions: [runtime, network, ...others] },
    info: { ...(theirs?.info ?? {}), ...ours.info },
    runtime_handlers: handlers,
  };
}
