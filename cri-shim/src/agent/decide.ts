// What the node agent does about one VM, as a pure function of what it sees: the VM's runPolicy, the
// domain as Xen reports it, and whether a checkpoint is on disk. Kept free of I/O so that every
// combination is table-tested (decide.test.ts); agent.ts only carries the chosen action out.
import type { RunPolicy } from "../../../api/index.js";

/** The domain as the agent sees it: "absent" is no domain at all (suspended, exited, not yet built). */
export type ObservedDomain = "running" | "paused" | "absent";

export interface DecideInput {
  runPolicy: RunPolicy;
  domain: ObservedDomain;
  /** The container record says the domain was saved to disk by this agent. */
  suspended: boolean;
  checkpointExists: boolean;
  /** A restore of this checkpoint already failed for this generation of the spec: do not loop on it. */
  restoreFailed: boolean;
}

export type AgentAction =
  | { kind: "none" }
  | { kind: "pause" }
  | { kind: "unpause" }
  | { kind: "suspend" }
  | { kind: "restore"; paused: boolean }
  /** A checkpoint left over from a restore that finished (crash between restore and delete). */
  | { kind: "discard-checkpoint" }
  | { kind: "fail"; reason: string; message: string };

const NONE: AgentAction = { kind: "none" };

export function decide(input: DecideInput): AgentAction {
  const { runPolicy, domain, suspended, checkpointExists, restoreFailed } = input;
  // Stopped means "no pod": the operator deletes it and the CRI stops the domain. Nothing for us.
  if (runPolicy === "Stopped") return NONE;
  if (domain === "absent") {
    // No domain and not ours to bring back: the container exited or is not built yet (CRI's business).
    if (!suspended) return NONE;
    if (runPolicy === "Suspended") return NONE;
    if (!checkpointExists)
      return {
        kind: "fail",
        reason: "CheckpointMissing",
        message: "the domain was suspended but its checkpoint file is gone",
      };
    if (restoreFailed) return NONE;
    return { kind: "restore", paused: runPolicy === "Paused" };
  }
  // A live domain: a checkpoint beside it is stale (its restore already happened), whatever the policy.
  if (checkpointExists && !suspended) return { kind: "discard-checkpoint" };
  switch (runPolicy) {
    case "Running":
      return domain === "paused" ? { kind: "unpause" } : NONE;
    case "Paused":
      return domain === "running" ? { kind: "pause" } : NONE;
    case "Suspended":
      return { kind: "suspend" };
  }
}
