// The handover's rule chains, as tables: what each side does from what the migration's status records.
import test from "ava";
import { parseFailpoints } from "../../../lib/failpoints.js";
import { ApiError } from "../../../lib/kube/client.js";
import { type HandoverStore, sourceHandover } from "./handover-actors.js";
import {
  decideSource,
  decideTarget,
  mayCommit,
  type RecordedHandover,
  type SourceDomain,
  type SourceStep,
  type TargetDomain,
  type TargetStep,
} from "./handover.js";

const rec = (r: Partial<RecordedHandover>): RecordedHandover => ({
  exists: true,
  phase: "Transferring",
  committed: undefined,
  targetRestored: undefined,
  targetRunning: undefined,
  ...r,
});

const SOURCE: [string, Partial<RecordedHandover>, SourceDomain, SourceStep["step"]][] = [
  ["restart mid-stream: nothing committed, domain suspended", {}, "suspended", "recordAbort"],
  ["restart after TargetRestored, before the commit", { targetRestored: "True" }, "suspended", "recordAbort"],
  ["committed, target not running yet: keep the suspended copy", { committed: "True" }, "suspended", "keep"],
  [
    "committed, TargetRunning=True: the suspended copy goes",
    { committed: "True", targetRunning: "True" },
    "suspended",
    "destroy",
  ],
  ["committed, operator switched", { committed: "True", phase: "Switching" }, "suspended", "destroy"],
  ["committed and already destroyed", { committed: "True", targetRunning: "True" }, "gone", "none"],
  [
    "committed, target's unpause failed: never resume",
    { committed: "True", targetRunning: "False" },
    "suspended",
    "keep",
  ],
  ["aborted: resume", { committed: "False" }, "suspended", "resume"],
  ["aborted, runs already", { committed: "False" }, "running", "none"],
  ["migration deleted, no commit: resume", { exists: false }, "suspended", "resume"],
  [
    "failed by the operator before a commit: record the abort",
    { phase: "Failed" },
    "suspended",
    "recordAbort",
  ],
  ["no record, runs, not in flight", { phase: "Failed", committed: "False" }, "running", "none"],
  ["restart while Transferring, domain still runs: record the abort", {}, "running", "recordAbort"],
];

for (const [name, r, d, want] of SOURCE)
  test(`source: ${name}`, (t) => {
    t.is(decideSource(rec(r), d).step, want);
  });

const TARGET: [string, Partial<RecordedHandover>, TargetDomain, TargetStep["step"]][] = [
  ["paused, commit open: wait", { targetRestored: "True" }, "paused", "wait"],
  ["paused, committed: unpause (go may be lost)", { committed: "True" }, "paused", "unpause"],
  ["paused, aborted: destroy", { committed: "False" }, "paused", "destroy"],
  ["paused, Failed without a commit: destroy", { phase: "Failed" }, "paused", "destroy"],
  [
    "paused, Failed WITH a commit: unpause (the commit wins)",
    { phase: "Failed", committed: "True" },
    "paused",
    "unpause",
  ],
  ["paused, migration deleted without a commit: destroy", { exists: false }, "paused", "destroy"],
  ["running, not recorded: record", { committed: "True" }, "running", "recordRunning"],
  ["running, recorded", { committed: "True", targetRunning: "True" }, "running", "none"],
  [
    "running even though aborted (never destroy a running VM)",
    { committed: "False" },
    "running",
    "recordRunning",
  ],
  ["nothing here", { committed: "True" }, "gone", "none"],
];

for (const [name, r, d, want] of TARGET)
  test(`target: ${name}`, (t) => {
    t.is(decideTarget(rec(r), d).step, want);
  });

test("mayCommit: only in Transferring, with the paused copy recorded and nothing decided", (t) => {
  t.true(mayCommit(rec({ targetRestored: "True" })).ok);
  t.false(mayCommit(rec({})).ok, "no paused copy recorded");
  t.false(mayCommit(rec({ targetRestored: "True", phase: "Failed" })).ok);
  t.false(mayCommit(rec({ targetRestored: "True", committed: "False" })).ok);
  t.false(mayCommit(rec({ targetRestored: "True", exists: false })).ok);
  t.false(mayCommit(rec({ targetRestored: "True", targetRunning: "False" })).ok);
});

test("no rule lets both sides run: for every record, source resume/none and target unpause never pair", (t) => {
  const vals = [undefined, "True", "False"] as const;
  let checked = 0;
  for (const exists of [true, false])
    for (const phase of ["Transferring", "Switching", "Failed", "Succeeded"])
      for (const committed of vals)
        for (const targetRunning of vals) {
          const r = rec({ exists, phase, committed, targetRunning, targetRestored: "True" });
          const target = decideTarget(r, "paused").step;
          const source = decideSource(r, "suspended").step;
          // The source runs its copy only on resume; the target only on unpause.
          t.false(target === "unpause" && source === "resume", JSON.stringify(r));
          // Both copies dropped would lose the VM.
          t.false(target === "destroy" && source === "destroy", JSON.stringify(r));
          checked++;
        }
  t.is(checked, 2 * 4 * 3 * 3);
});

test("failpoints: parsed from name=action[*N], typos refused", (t) => {
  const p = parseFailpoints("a.b=kill, c=error*2,d=cut");
  t.deepEqual(p.get("a.b"), { action: "kill", remaining: Infinity });
  t.deepEqual(p.get("c"), { action: "error", remaining: 2 });
  t.is(p.get("d")?.action, "cut");
  t.throws(() => parseFailpoints("a=explode"), { message: /cannot parse/ });
});

/** A record another writer changes once, between the source's read and its commit write (as the
 *  operator's or the target's status write may): the first conditional write gets a 409. */
function racingStore(change: (r: RecordedHandover) => RecordedHandover): HandoverStore & { writes: number } {
  let state: RecordedHandover = {
    exists: true,
    phase: "Transferring",
    committed: undefined,
    targetRestored: "True",
    targetRunning: undefined,
  };
  let version = 1;
  let raced = false;
  return {
    writes: 0,
    async read() {
      return { ...state, version: String(version) };
    },
    async write(type, status, _reason, _message, ifVersion) {
      this.writes++;
      if (!raced) {
        raced = true;
        state = change(state);
        version++;
      }
      if (ifVersion !== undefined && ifVersion !== String(version))
        throw new ApiError(409, "Conflict", "the object has been modified");
      if (type === "Committed") state = { ...state, committed: status };
      version++;
    },
  };
}

test("a commit write refused only because the record changed meanwhile is decided again on the fresh record", async (t) => {
  const unrelated = racingStore((r) => ({ ...r }));
  t.is(await sourceHandover(unrelated, { pollMs: 1 }).commit(7), "commit");
  t.is(unrelated.writes, 2);
  // The change was the operator failing the migration: the fresh record forbids the commit.
  const failed = racingStore((r) => ({ ...r, phase: "Failed" }));
  t.is(await sourceHandover(failed, { pollMs: 1 }).commit(7), "abort");
  t.is(failed.writes, 1);
});
