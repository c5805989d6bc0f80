// The handover's one durable commit point (docs/migration-stream.md, "Commit point"), as pure rule
// chains. Each actor decides from what the UnikernelVMMigration's status RECORDS, never from a socket
// message that may have been lost:
//   - the target restores the domain paused and records TargetRestored=True before it says "restored";
//   - the source records Committed=True (only while phase is Transferring, with the object's
//     resourceVersion as a precondition, so an operator's Failed and a commit can never both land) and
//     only then says "go"; or records Committed=False before it resumes its domain;
//   - after Committed=True the target unpauses and the source destroys its suspended domain once
//     TargetRunning=True is recorded; before it (Committed=False, or Failed without a commit) the source
//     resumes and the target destroys its paused copy.
// The first rule of a chain that has something to say wins: the order is the order of precedence.

export type Recorded = "True" | "False" | undefined;

/** What the API records about one migration's handover. `exists: false`: the object is gone. */
export interface RecordedHandover {
  exists: boolean;
  /** The operator's phase. */
  phase?: string;
  /** Condition Committed (the source agent's): True = commit, False = aborted, undefined = open. */
  committed: Recorded;
  /** Condition TargetRestored (the target agent's): the paused copy exists on the target. */
  targetRestored: Recorded;
  /** Condition TargetRunning (the target agent's). */
  targetRunning: Recorded;
}

/** Whether the source may write Committed=True now (the write also carries resourceVersion). */
export function mayCommit(r: RecordedHandover): { ok: true } | { ok: false; why: string } {
  if (!r.exists) return { ok: false, why: "the migration was deleted" };
  if (r.committed === "False") return { ok: false, why: "the handover was already aborted" };
  if (r.phase !== "Transferring") return { ok: false, why: `the migration is in phase ${r.phase ?? "none"}` };
  if (r.targetRestored !== "True") return { ok: false, why: "the target has not recorded its paused copy" };
  if (r.targetRunning === "False") return { ok: false, why: "the target reported a failure" };
  return { ok: true };
}

export type SourceDomain = "running" | "suspended" | "gone";

export type SourceStep =
  /** Record Committed=False first (the decision), then resume. */
  | { step: "recordAbort"; why: string }
  | { step: "resume"; why: string }
  /** Committed and the target's domain runs: the suspended copy goes. */
  | { step: "destroy"; why: string }
  /** Committed, the target has not recorded that it runs: keep the suspended copy, look again later. */
  | { step: "keep"; why: string }
  | { step: "none"; why: string };

type SourceRule = (r: RecordedHandover, d: SourceDomain) => SourceStep | undefined;

const SOURCE_RULES: SourceRule[] = [
  function nothingHere(_r, d) {
    return d === "gone" ? { step: "none", why: "no source domain" } : undefined;
  },
  function committed(r, d) {
    if (r.committed !== "True") return undefined;
    if (r.targetRunning === "True" || r.phase === "Succeeded" || r.phase === "Switching")
      return d === "suspended" || d === "running"
        ? { step: "destroy", why: "committed and the target runs the VM" }
        : undefined;
    return { step: "keep", why: "committed; waiting for the target to record that it runs" };
  },
  function aborted(r, d) {
    if (r.committed !== "False") return undefined;
    return d === "suspended"
      ? { step: "resume", why: "the handover was aborted" }
      : { step: "none", why: "aborted; the VM runs here" };
  },
  function deleted(r, d) {
    // No record can say "commit" any more; the target destroys its paused copy the same way.
    if (r.exists) return undefined;
    return d === "suspended"
      ? { step: "resume", why: "the migration is gone without a commit" }
      : { step: "none", why: "the migration is gone" };
  },
  function open(r, d) {
    // Only this node's source agent writes Committed, and its stream died with the old process:
    // nothing will commit, so the decision is abort, recorded before the domain is touched.
    return d === "suspended" || r.phase === "Transferring"
      ? { step: "recordAbort", why: "the source's stream ended before a commit was recorded" }
      : { step: "none", why: "nothing recorded, nothing suspended" };
  },
];

/** The source's step after a restart, or after its stream failed, from the recorded state. */
export function decideSource(r: RecordedHandover, d: SourceDomain): SourceStep {
  for (const rule of SOURCE_RULES) {
    const s = rule(r, d);
    if (s) return s;
  }
  return { step: "none", why: "nothing to do" };
}

export type TargetDomain = "paused" | "running" | "gone";

export type TargetStep =
  | { step: "unpause"; why: string }
  | { step: "destroy"; why: string }
  /** The domain runs but TargetRunning=True is not recorded yet. */
  | { step: "recordRunning"; why: string }
  | { step: "wait"; why: string }
  | { step: "none"; why: string };

type TargetRule = (r: RecordedHandover, d: TargetDomain) => TargetStep | undefined;

const TARGET_RULES: TargetRule[] = [
  function nothingHere(_r, d) {
    return d === "gone" ? { step: "none", why: "no restored domain" } : undefined;
  },
  function runs(r, d) {
    if (d !== "running") return undefined;
    return r.targetRunning === "True"
      ? { step: "none", why: "runs, recorded" }
      : { step: "recordRunning", why: "runs; TargetRunning not recorded yet" };
  },
  function committed(r) {
    return r.committed === "True" ? { step: "unpause", why: "the commit is recorded" } : undefined;
  },
  function aborted(r) {
    return r.committed === "False" ? { step: "destroy", why: "the handover was aborted" } : undefined;
  },
  function gone(r) {
    return !r.exists ? { step: "destroy", why: "the migration is gone without a commit" } : undefined;
  },
  function ended(r) {
    // The source commits only in phase Transferring (resourceVersion-guarded): a migration that left
    // that phase without a commit can never be committed.
    return r.phase === "Failed" || r.phase === "Succeeded"
      ? { step: "destroy", why: `the migration ended (${r.phase}) without a commit` }
      : undefined;
  },
];

/** The target's step for its restored copy, from the recorded state. */
export function decideTarget(r: RecordedHandover, d: TargetDomain): TargetStep {
  for (const rule of TARGET_RULES) {
    const s = rule(r, d);
    if (s) return s;
  }
  return { step: "wait", why: "the commit is still open" };
}
