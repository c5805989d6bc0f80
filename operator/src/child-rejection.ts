// When the apiserver refuses a child object (a Pod or Service) for what it is, applying the same object
// again cannot succeed: that is a terminal error. It becomes an InvalidSpecError, which the VM's
// reconciler reports as Ready=False/InvalidSpec (with its transition Event) and the queue does not
// retry until the VM changes. Everything else (a conflict, a quota, a forbidden verb, an apiserver
// that is down) stays retryable.
import type { V1Pod, V1Service } from "@kubernetes/client-node";
import { ApiError } from "../../lib/kube/client.js";
import { InvalidSpecError } from "./desired.js";

/** The terminal form of `err` for an apply of `kind` `name`, or undefined when it may be retried. */
export function childRejection(
  err: unknown,
  kind: "Pod" | "Service",
  name: string,
): InvalidSpecError | undefined {
  if (!(err instanceof ApiError)) return undefined;
  // 422 Invalid: the object breaks the kind's validation or an admission policy; 400: it cannot be read at all.
  if (err.status !== 422 && err.status !== 400) return undefined;
  const detail = err.message.replace(/^[A-Z]+ \S+: \d+ /, "").slice(0, 600);
  return new InvalidSpecError(`the apiserver refused ${kind} ${name}: ${detail}`);
}

/** Throws `err` again: for `childRejection(err, ...) ?? rethrow(err)`. */
export function rethrow(err: unknown): never {
  throw err;
}

/** childRejection for an action of the VM's plan: only the writes of a Pod or a Service qualify. */
export function refusedChild(
  err: unknown,
  action: { kind: string; pod?: V1Pod; service?: V1Service },
): InvalidSpecError | undefined {
  if (action.kind === "applyPod") return childRejection(err, "Pod", action.pod?.metadata?.name ?? "");
  if (action.kind === "applyService")
    return childRejection(err, "Service", action.service?.metadata?.name ?? "");
  return undefined;
}
