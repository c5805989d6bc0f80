// The handover's actors over a small record store (the node agent's is the UnikernelVMMigration's
// status in the API; tests use an in-memory one): the source's and the target's hooks for sendDomain /
// receiveDomain, and what each side does after a restart or a lost connection. Every step is decided
// by handover.ts's rule chains from what the store records.
import { setTimeout as sleep } from "node:timers/promises";
import { failpoint, isSimulatedCrash, MIGRATION_FAILPOINTS as FP } from "../../../lib/failpoints.js";
import { isConflict } from "../../../lib/kube/client.js";
import { logger } from "../../../lib/log.js";
import type { Hypervisor } from "../hypervisor/types.js";
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
import type { TargetHandover } from "./receive.js";
import type { SourceHandover } from "./send.js";

const log = logger("migration-handover");

export type HandoverCondition = "Committed" | "TargetRestored" | "TargetRunning";

export interface HandoverStore {
  /** The recorded state, with an opaque version for preconditions. Throws when it cannot be read. */
  read(): Promise<RecordedHandover & { version: string }>;
  /** Records one condition; with `ifVersion`, only if nothing changed since that read (else throws). */
  write(
    type: HandoverCondition,
    status: "True" | "False",
    reason: string,
    message: string,
    ifVersion?: string,
  ): Promise<void>;
}

export interface PollOptions {
  /** How often the record is read while waiting (ms). */
  pollMs?: number;
  /** How long the source waits for TargetRunning before it leaves the decision to its reconcile (ms). */
  targetRunningTimeoutMs?: number;
}

const DEFAULT_POLL_MS = 250;
const READ_BACK_ATTEMPTS = 5;
/** Commit writes tried when each fails only because the record changed meanwhile (409). */
const COMMIT_ATTEMPTS = 5;

async function readBack(store: HandoverStore): Promise<RecordedHandover> {
  for (let i = 1; ; i++) {
    try {
      return await store.read();
    } catch (err) {
      if (i >= READ_BACK_ATTEMPTS) throw err;
      await sleep(100 * i);
    }
  }
}

export function sourceHandover(store: HandoverStore, opts: PollOptions = {}): SourceHandover {
  const pollMs = opts.pollMs ?? DEFAULT_POLL_MS;
  return {
    async commit(targetDomid) {
      // The write carries the record's resourceVersion: it lands only on the record it was decided
      // from. Another writer's change in between (the operator's status, the target's) makes it a 409,
      // and the decision is taken again on the fresh record, a few times, before it counts as lost.
      for (let attempt = 1; ; attempt++) {
        const r = await store.read();
        const may = mayCommit(r);
        if (!may.ok) {
          log.warn("not committing", { why: may.why });
          return "abort";
        }
        try {
          failpoint(FP.sourceCommitWrite);
          await store.write(
            "Committed",
            "True",
            "Committed",
            `the target's paused domain ${targetDomid} is the VM now`,
            r.version,
          );
          failpoint(FP.sourceCommitAnswer);
          return "commit";
        } catch (err) {
          if (isSimulatedCrash(err)) throw err;
          // The write may or may not have landed: the record says which.
          const back = await readBack(store);
          log.warn("the commit write failed; the record decides", {
            err: String(err),
            committed: back.committed,
            attempt,
          });
          if (back.committed === "True") return "commit";
          if (back.committed === undefined && isConflict(err) && attempt < COMMIT_ATTEMPTS) continue;
          return "abort";
        }
      }
    },
    async abort(why) {
      failpoint(FP.sourceAbortWrite);
      const r = await store.read();
      if (r.committed === "True") throw new Error("the commit is recorded; refusing to record an abort");
      if (r.committed === "False" || !r.exists) return;
      await store.write("Committed", "False", "Aborted", why.slice(0, 900), r.version);
    },
    async targetRunning() {
      const until = performance.now() + (opts.targetRunningTimeoutMs ?? 10 * 60_000);
      for (;;) {
        const r = await store.read().catch(() => undefined);
        if (r && (r.targetRunning === "True" || r.phase === "Switching" || r.phase === "Succeeded")) return;
        if (performance.now() > until)
          throw new Error("the target did not record that its domain runs in time; the copy stays suspended");
        await sleep(pollMs);
      }
    },
  };
}

export function targetHandover(store: HandoverStore, opts: PollOptions = {}): TargetHandover {
  const pollMs = opts.pollMs ?? DEFAULT_POLL_MS;
  return {
    async restored(domid) {
      failpoint(FP.targetRestoredWrite);
      await store.write(
        "TargetRestored",
        "True",
        "RestoredPaused",
        `domain ${domid} restored paused; it runs once the commit is recorded`,
      );
    },
    async decision() {
      for (;;) {
        const r = await store.read().catch(() => undefined);
        const step = r ? decideTarget(r, "paused").step : "wait";
        if (step === "unpause") return "commit";
        if (step === "destroy") return "abort";
        await sleep(pollMs);
      }
    },
  };
}

/** Records TargetRunning=True, retrying: the source keeps its suspended copy until it reads it. */
export async function recordTargetRunning(store: HandoverStore, message: string): Promise<void> {
  for (let i = 1; ; i++) {
    try {
      failpoint(FP.targetRunningWrite);
      await store.write("TargetRunning", "True", "Running", message);
      return;
    } catch (err) {
      if (isSimulatedCrash(err) || i >= READ_BACK_ATTEMPTS) throw err;
      log.warn("recording TargetRunning failed; trying again", { err: String(err) });
      await sleep(100 * i);
    }
  }
}

function sourceDomainOf(d: Awaited<ReturnType<Hypervisor["info"]>>): SourceDomain {
  if (!d || d.state === "dying" || d.state === "crashed") return "gone";
  if (d.state === "shutdown") return d.shutdownReason === "suspend" ? "suspended" : "gone";
  return "running";
}

/** The source after a restart (or once its send gave up): one step from the record; "keep" means look later. */
export async function settleSource(
  store: HandoverStore,
  hv: Hypervisor,
  domid: number | undefined,
): Promise<SourceStep> {
  const r = await store.read();
  const d = domid === undefined ? undefined : await hv.info(domid);
  const step = decideSource(r, sourceDomainOf(d));
  switch (step.step) {
    case "recordAbort":
      await store.write("Committed", "False", "SourceRestarted", step.why, r.version);
      if (d && sourceDomainOf(d) === "suspended") await hv.resumeSuspended(d.domid);
      break;
    case "resume":
      await hv.resumeSuspended(domid!);
      break;
    case "destroy":
      await hv.destroy(domid!);
      break;
  }
  if (step.step !== "none" && step.step !== "keep") log.info("source settled", { domid, ...step });
  return step;
}

function targetDomainOf(d: Awaited<ReturnType<Hypervisor["info"]>>): TargetDomain {
  if (!d || d.state === "dying" || d.state === "crashed" || d.state === "shutdown") return "gone";
  return d.state === "paused" ? "paused" : "running";
}

/** The target's restored copy after a restart (or a lost connection): one step from the record. */
export async function settleTarget(
  store: HandoverStore,
  hv: Hypervisor,
  domid: number | undefined,
): Promise<TargetStep> {
  const r = await store.read();
  const d = domid === undefined ? undefined : await hv.info(domid);
  const step = decideTarget(r, targetDomainOf(d));
  switch (step.step) {
    case "unpause":
      failpoint(FP.targetUnpause);
      await hv.unpause(domid!);
      await recordTargetRunning(store, `domain ${domid} runs here (unpaused from the recorded commit)`);
      break;
    case "recordRunning":
      await recordTargetRunning(store, `domain ${domid} runs here`);
      break;
    case "destroy":
      await hv.destroy(domid!);
      break;
  }
  if (step.step !== "none" && step.step !== "wait") log.info("target settled", { domid, ...step });
  return step;
}
