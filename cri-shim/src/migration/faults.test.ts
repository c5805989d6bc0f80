// Every handover failpoint, through the real protocol (TLS on loopback, sendDomain/receiveDomain and
// the handover actors) with the in-memory hypervisor TEST DOUBLE on both sides and an in-memory record
// store standing in for the migration's status (the API's version is in migration-agent.test.ts).
// A "crash" is a failpoint that throws SimulatedCrash: the side stops where it is, nothing is cleaned
// up, its connection dies; then it "restarts" and settles from the record, as the node agent does.
// Invariant after every fault: exactly one domain of the VM runs, no other domain is left on either
// node, the record says which node has it (Committed=True: the target), and the migration ends
// Succeeded or Failed with a reason.
import test from "ava";
import { writeFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import {
  FAILPOINTS_ENV,
  FailpointError,
  failpointsFired,
  isSimulatedCrash,
  MIGRATION_FAILPOINTS as FP,
} from "../../../lib/failpoints.js";
import type { MemoryHypervisorDouble } from "../testing/memory-hypervisor.js";
import { receiveOn, sendTo, twoNodes } from "../testing/migration-nodes.js";
import {
  type HandoverCondition,
  type HandoverStore,
  recordTargetRunning,
  settleSource,
  settleTarget,
  sourceHandover,
  targetHandover,
} from "./handover-actors.js";
import type { RecordedHandover } from "./handover.js";
import { MigrationError, receiveDomain, sendDomain } from "./index.js";

/** The migration's status in memory: conditions, the operator's phase, a version for preconditions. */
class MemoryRecord implements HandoverStore {
  state: RecordedHandover = {
    exists: true,
    phase: "Transferring",
    committed: undefined,
    targetRestored: undefined,
    targetRunning: undefined,
  };
  version = 1;
  reason = "";
  async read() {
    return { ...this.state, version: String(this.version) };
  }
  async write(type: HandoverCondition, status: "True" | "False", _r: string, _m: string, ifVersion?: string) {
    if (ifVersion !== undefined && ifVersion !== String(this.version)) throw new Error("409 Conflict");
    const key =
      type === "Committed" ? "committed" : type === "TargetRestored" ? "targetRestored" : "targetRunning";
    this.state = { ...this.state, [key]: status };
    this.version++;
  }
  /** The operator: Succeeded once the commit and the target's run are recorded; Failed (guarded by the
   *  version, as its server-side apply is) when the handover was aborted or both sides gave up. */
  operate(bothSidesDone: boolean): void {
    const s = this.state;
    if (s.phase !== "Transferring") return;
    if (s.committed === "True" && s.targetRunning === "True") s.phase = "Succeeded";
    else if (s.committed === "False" || (bothSidesDone && s.committed === undefined)) {
      s.phase = "Failed";
      this.reason = s.committed === "False" ? "Aborted" : "StreamFailed";
    } else return;
    this.version++;
  }
}

interface Outcome {
  sourceErr?: unknown;
  targetErr?: unknown;
}

/** A side that stopped (crash) or gave up settles from the record until it has nothing left to do,
 *  as its node agent's reconcile does after a restart. */
async function settleLoop(settle: () => Promise<{ step: string }>, idle: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const { step } = await settle().catch((err: unknown) => ({ step: `error: ${String(err)}` }));
    if (step === "none") return;
    await sleep(step === idle ? 20 : 5);
  }
  throw new Error("a side never settled");
}

async function migrateWithFault(failpoints: string): Promise<{
  a: MemoryHypervisorDouble;
  b: MemoryHypervisorDouble;
  rec: MemoryRecord;
  out: Outcome;
  fired: string[];
}> {
  const nodes = await twoNodes();
  const { a, b, domid } = nodes;
  const rec = new MemoryRecord();
  const poll = { pollMs: 20, targetRunningTimeoutMs: 5_000 };
  const out: Outcome = {};
  let targetDomid: number | undefined;
  let sourceGaveUp = false;
  let finished = false;
  const operator = (async () => {
    while (!finished) {
      rec.operate(sourceGaveUp);
      await sleep(10);
    }
  })();
  process.env[FAILPOINTS_ENV] = failpoints;
  const incoming = await receiveDomain({
    ...receiveOn(nodes),
    timeoutMs: 3_000,
    handover: {
      ...targetHandover(rec, poll),
      restored: async (id) => {
        targetDomid = id;
        await targetHandover(rec, poll).restored(id);
      },
    },
  });
  const targetSettles = () => settleLoop(() => settleTarget(rec, b, targetDomid ?? undefined), "wait");
  const target = incoming.result
    .then((r) => recordTargetRunning(rec, `domain ${r.domid} runs`))
    .catch(async (err: unknown) => {
      out.targetErr = err;
      await targetSettles();
    });
  const source = sendDomain({
    ...sendTo(nodes, incoming.port, false),
    timeoutMs: 3_000,
    handover: sourceHandover(rec, poll),
  }).catch(async (err: unknown) => {
    out.sourceErr = err;
    // Transferred=False from a live agent whose send failed before any commit: the operator fails it.
    if (!isSimulatedCrash(err) && rec.state.committed === undefined) sourceGaveUp = true;
    await settleLoop(() => settleSource(rec, a, domid), "keep");
  });
  await Promise.all([target, source]);
  const fired = [...failpointsFired().keys()];
  delete process.env[FAILPOINTS_ENV];
  // Whatever is still open settles with failpoints off (the restarted processes).
  await Promise.all([targetSettles(), settleLoop(() => settleSource(rec, a, domid), "keep")]);
  for (let i = 0; i < 100 && rec.state.phase === "Transferring"; i++) await sleep(10);
  finished = true;
  await operator;
  return { a, b, rec, out, fired };
}

/** [failpoints, expected end, the one point counted] */
const CASES: [string, "Succeeded" | "Failed", string][] = [
  [`${FP.sourceBeforeCommit}=crash`, "Failed", FP.sourceBeforeCommit],
  [`${FP.sourceAfterCommit}=crash`, "Succeeded", FP.sourceAfterCommit],
  [`${FP.sourceCommitWrite}=error`, "Failed", FP.sourceCommitWrite],
  [`${FP.sourceCommitAnswer}=error`, "Succeeded", FP.sourceCommitAnswer],
  [`${FP.sourceCutBeforeCommit}=cut`, "Succeeded", FP.sourceCutBeforeCommit],
  [`${FP.sourceCutAfterCommit}=cut`, "Succeeded", FP.sourceCutAfterCommit],
  [`${FP.sourceCommitWrite}=error,${FP.sourceAbortWrite}=error`, "Failed", FP.sourceAbortWrite],
  [`${FP.targetRestoredWrite}=error`, "Failed", FP.targetRestoredWrite],
  [`${FP.targetBeforeCommit}=crash`, "Failed", FP.targetBeforeCommit],
  [`${FP.targetAfterCommit}=crash`, "Succeeded", FP.targetAfterCommit],
  [`${FP.targetUnpause}=error*2`, "Succeeded", FP.targetUnpause],
  [`${FP.targetUnpause}=error*4`, "Succeeded", `${FP.targetUnpause} (past the receive's retries)`],
  [`${FP.targetRunningWrite}=error*2`, "Succeeded", FP.targetRunningWrite],
  [`${FP.targetRunningWrite}=error*6`, "Succeeded", `${FP.targetRunningWrite} (past the retries)`],
  [
    `${FP.targetAfterCommit}=crash,${FP.sourceAfterCommit}=crash`,
    "Succeeded",
    "both sides killed after the commit",
  ],
  [
    `${FP.sourceCutAfterCommit}=cut,${FP.targetUnpause}=error*4`,
    "Succeeded",
    "cut after the commit, unpause failing past the receive's retries",
  ],
];

const tested = new Set<string>();
/** The failpoints that fired in cases that passed (a case's several points all count). */
const firedInPassing = new Set<string>();

for (const [failpoints, end, point] of CASES)
  test.serial(`fault ${failpoints}: one VM, no leaks, ${end}`, async (t) => {
    const { a, b, rec, out, fired } = await migrateWithFault(failpoints);
    t.teardown(async () => {
      await a.close();
      await b.close();
    });
    for (const name of failpoints.split(",").map((p) => p.split("=")[0]!))
      t.true(fired.includes(name), `failpoint ${name} fired (fired: ${fired.join(", ")})`);
    const running = [...(await a.list()), ...(await b.list())].filter((d) => d.state === "running");
    t.is(
      running.length,
      1,
      `exactly one domain of the VM runs: ${running.map((d) => `${d.name}#${d.domid}`).join(", ")}`,
    );
    t.is((await a.list()).length + (await b.list()).length, 1, "no other domain left on either node");
    t.is(rec.state.phase, end, `the migration ends ${end}`);
    if (end === "Failed") t.truthy(rec.reason, "with a reason");
    const where = rec.state.committed === "True" ? b : a;
    t.is((await where.list())[0]?.state, "running", "the record names the node that runs it");
    for (const err of [out.sourceErr, out.targetErr])
      if (err !== undefined)
        t.true(
          err instanceof MigrationError || isSimulatedCrash(err) || err instanceof FailpointError,
          `a typed failure: ${String(err)}`,
        );
    if (!t.passed) return; // a case counts only when every assertion above held
    tested.add(point);
    for (const name of fired) firedInPassing.add(name);
  });

test.serial("faultPointsTested: at least 12 fault points passed", async (t) => {
  t.log(`faultPointsTested: ${tested.size}`);
  // For a bench or CI that reports it: SUPERFLUID_FAULT_REPORT=<file> gets the count and the names.
  const report = process.env.SUPERFLUID_FAULT_REPORT;
  if (report)
    await writeFile(
      report,
      `${JSON.stringify({ faultPointsTested: tested.size, points: [...tested], failpointsFired: [...firedInPassing].sort() }, null, 2)}\n`,
    );
  t.true(tested.size >= 12, `${tested.size} of ${CASES.length}`);
});
