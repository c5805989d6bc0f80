// A lean domain's vifs wired in two steps that run side by side: the XenStore transaction per vif
// (netback makes the interfaces from its commit on) and the anti-spoofing guard (nftables, matched
// by the vif's name, so it can go in before the interface exists). Kept free of Xen (WireDeps) so
// it is unit-tested. A restore wires before it reads the memory, not beside it (save-restore.ts).
import type { DomainSpec } from "../types.js";
import { HypervisorError } from "../types.js";

export interface Wiring {
  /** Every vif's XenStore transaction committed. */
  written: Promise<void>;
  /** Written and guarded; rejects if either failed (after both settled). */
  done: Promise<void>;
}

/** Where a wiring's time went (ms, rounded; attempts counted). */
export type WirePhases = Record<
  | "writesMs"
  | "commitMs"
  | "attempts"
  | "batched"
  | "xsMs"
  | "queuedMs"
  | "guardMs"
  | "guardTableReads"
  | "doneMs",
  number
>;

export interface WireDeps {
  vifWrite(
    domid: number,
    devid: number,
    mac: string,
    bridge: string,
  ): Promise<{ writesUs: number; commitUs: number; attempts: number; batched: boolean }>;
  guard(domid: number, vifs: DomainSpec["vifs"]): Promise<void>;
  /** How many times the guard has read the nft table so far (a read costs a listing). */
  tableReads(): number;
}

/**
 * Starts both steps at once. `done` resolves when both succeeded and rejects with the first
 * failure once both have settled (the caller destroys the domain then); `phases` gets the times.
 */
export function startWiring(
  deps: WireDeps,
  domid: number,
  spec: Pick<DomainSpec, "name" | "vifs">,
  phases: (p: WirePhases) => void,
): Wiring {
  const t0 = performance.now();
  const p = {
    writesMs: 0,
    commitMs: 0,
    attempts: 0,
    /** vifs whose transaction went out batched on xenstored's socket (libsfxen's xsbatch.c) */
    batched: 0,
    xsMs: 0,
    queuedMs: 0,
    guardMs: 0,
    guardTableReads: 0,
    /** start -> both steps seen settled */
    doneMs: 0,
  };
  const written = (async () => {
    for (const [devid, vif] of spec.vifs.entries()) {
      const w = await deps.vifWrite(domid, devid, vif.mac, vif.bridge);
      p.writesMs += w.writesUs / 1000;
      p.commitMs += w.commitUs / 1000;
      p.attempts += w.attempts;
      p.batched += w.batched ? 1 : 0;
    }
    p.xsMs = performance.now() - t0;
    // Time the calls spent waiting for a worker thread or coming back, not in libsfxen.
    p.queuedMs = Math.max(0, p.xsMs - p.writesMs - p.commitMs);
  })();
  const reads = deps.tableReads();
  // Before the guest can run (it holds from the moment netback makes the interface).
  const guarded = deps.guard(domid, spec.vifs).then(
    () => {
      p.guardMs = performance.now() - t0;
      p.guardTableReads = deps.tableReads() - reads;
    },
    (err: unknown) => {
      throw new HypervisorError(`create ${spec.name}: anti-spoofing for its vifs: ${String(err)}`);
    },
  );
  const done = Promise.allSettled([written, guarded]).then(([w, g]) => {
    if (w.status === "rejected") throw w.reason;
    if (g.status === "rejected") throw g.reason;
    p.doneMs = performance.now() - t0;
    phases(Object.fromEntries(Object.entries(p).map(([k, v]) => [k, Math.round(v)])) as WirePhases);
  });
  written.catch(() => undefined); // reported through done
  return { written, done };
}
