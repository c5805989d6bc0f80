// Failpoints: named places in the code where a test can inject a fault. They are enabled ONLY through
// the environment variable SUPERFLUID_FAILPOINTS (`name=action,name=action`), read when a failpoint is
// first reached after the variable changed; unset, a failpoint costs one string comparison.
// Actions:
//   kill   the process dies at once with SIGKILL (as kill -9 would: no cleanup, no finally blocks)
//   crash  throws SimulatedCrash: for in-process tests where both sides share one process; code on the
//          way up must rethrow it untouched (isSimulatedCrash) so nothing is cleaned up, as after a kill
//   error  throws FailpointError (a failed API write, a failed unpause, ...)
//   cut    returned to the caller, which cuts its connection
// A suffix `*N` fires the action the first N times only (`target.unpause=error*2`), then never again.

export type FailpointAction = "kill" | "crash" | "error" | "cut";
const ACTIONS: readonly FailpointAction[] = ["kill", "crash", "error", "cut"];
export const FAILPOINTS_ENV = "SUPERFLUID_FAILPOINTS";

export class FailpointError extends Error {
  constructor(readonly failpoint: string) {
    super(`failpoint ${failpoint} fired`);
    this.name = "FailpointError";
  }
}

export class SimulatedCrash extends Error {
  constructor(readonly failpoint: string) {
    super(`simulated crash at failpoint ${failpoint}`);
    this.name = "SimulatedCrash";
  }
}

export const isSimulatedCrash = (err: unknown): err is SimulatedCrash => err instanceof SimulatedCrash;

interface Armed {
  action: FailpointAction;
  remaining: number;
}

let parsedFrom: string | undefined;
let armed = new Map<string, Armed>();
const fired = new Map<string, number>();

/** Parses `name=action[*N],...`; an unknown action is an error (a typo must not silently test nothing). */
export function parseFailpoints(text: string): Map<string, Armed> {
  const out = new Map<string, Armed>();
  for (const part of text.split(",").map((p) => p.trim())) {
    if (!part) continue;
    const m = /^([A-Za-z0-9_.-]+)=([a-z]+)(?:\*(\d+))?$/.exec(part);
    if (!m || !ACTIONS.includes(m[2] as FailpointAction))
      throw new Error(
        `${FAILPOINTS_ENV}: cannot parse ${JSON.stringify(part)}; want name=${ACTIONS.join("|")}[*N]`,
      );
    out.set(m[1]!, { action: m[2] as FailpointAction, remaining: m[3] ? Number(m[3]) : Infinity });
  }
  return out;
}

function current(): Map<string, Armed> | undefined {
  const env = process.env[FAILPOINTS_ENV];
  if (!env) return undefined;
  if (env !== parsedFrom) {
    armed = parseFailpoints(env);
    parsedFrom = env;
    fired.clear();
  }
  return armed;
}

/**
 * Reached at the named place. Returns "cut" when that action is armed (the caller cuts), otherwise
 * undefined; kills the process, or throws, when those actions are armed.
 */
export function failpoint(name: string): "cut" | undefined {
  const points = current();
  if (!points) return undefined;
  const a = points.get(name);
  if (!a || a.remaining <= 0) return undefined;
  a.remaining--;
  fired.set(name, (fired.get(name) ?? 0) + 1);
  switch (a.action) {
    case "kill":
      process.kill(process.pid, "SIGKILL");
      throw new SimulatedCrash(name); // not reached
    case "crash":
      throw new SimulatedCrash(name);
    case "error":
      throw new FailpointError(name);
    case "cut":
      return "cut";
  }
}

/** How often each failpoint fired since SUPERFLUID_FAILPOINTS last changed (for tests' assertions). */
export function failpointsFired(): ReadonlyMap<string, number> {
  return fired;
}

/** Every failpoint on a migration's handover path (docs/migration-stream.md) (the count is what a test or bench reports as tested). */
export const MIGRATION_FAILPOINTS = {
  /** Source, target restored, before Committed=True is written: kill -9 / crash of the source. */
  sourceBeforeCommit: "migration.source.before-commit",
  /** Source, the commit write fails (nothing written). */
  sourceCommitWrite: "migration.source.commit-write",
  /** Source, the commit write landed but its answer was lost. */
  sourceCommitAnswer: "migration.source.commit-answer",
  /** Source, Committed=True recorded, before "go" is sent: kill -9 / crash. */
  sourceAfterCommit: "migration.source.after-commit",
  /** Source, the connection is cut right after the commit (the target never hears "go"). */
  sourceCutAfterCommit: "migration.source.cut-after-commit",
  /** Source, the connection is cut after "restored", before the commit. */
  sourceCutBeforeCommit: "migration.source.cut-before-commit",
  /** Source, recording the abort fails (the domain must stay suspended until it is recorded). */
  sourceAbortWrite: "migration.source.abort-write",
  /** Target, restored paused, recording TargetRestored fails. */
  targetRestoredWrite: "migration.target.restored-write",
  /** Target, TargetRestored recorded, before "restored" is sent: kill -9 / crash. */
  targetBeforeCommit: "migration.target.before-commit",
  /** Target, "go" received, before the unpause: kill -9 / crash. */
  targetAfterCommit: "migration.target.after-commit",
  /** Target, unpausing the committed domain fails (retried). */
  targetUnpause: "migration.target.unpause",
  /** Target, recording TargetRunning fails (retried). */
  targetRunningWrite: "migration.target.running-write",
  /** Operator, about to write a phase before the commit (Failed on a deadline): kill -9. */
  operatorBeforeCommit: "migration.operator.before-commit",
  /** Operator, about to act on a recorded commit (Switching): kill -9. */
  operatorAfterCommit: "migration.operator.after-commit",
} as const;
