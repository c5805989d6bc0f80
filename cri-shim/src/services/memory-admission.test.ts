import test from "ava";
import { MemoryAdmission, promisedMiB } from "./memory-admission.js";

test("promisedMiB: sandboxes without a domain at the snapshot and not released", (t) => {
  const holders = [
    { id: "a", reservedMiB: 16, released: false }, // promised
    { id: "b", reservedMiB: 32, released: false }, // had its domain at the snapshot
    { id: "c", reservedMiB: 64, released: true }, // stopped: holds nothing
    { id: "d", reservedMiB: 4, released: false }, // promised
  ];
  t.is(promisedMiB(holders, new Set(["b"])), 20);
  t.is(promisedMiB([], new Set()), 0);
  t.is(promisedMiB(holders, new Set(["a", "b", "c", "d"])), 0);
});

/** A Xen whose free memory the test sets, counting the queries. */
function xen(freeMiB: number) {
  const state = { freeMiB, queries: 0, live: new Set<string>() };
  const source = {
    live: () => new Set(state.live),
    freeKiB: async () => {
      state.queries++;
      await new Promise((r) => setTimeout(r, 5));
      return state.freeMiB * 1024;
    },
  };
  return { state, source };
}

test("a burst of checks shares one query; a fresh one follows after maxAgeMs", async (t) => {
  let now = 0;
  const { state, source } = xen(100);
  const m = new MemoryAdmission(source, 1000, () => now);
  const results = await Promise.all(Array.from({ length: 20 }, () => m.fits(4, () => [])));
  t.true(results.every((r) => r.ok));
  t.is(state.queries, 1, "20 concurrent checks asked Xen once");
  now = 500;
  await m.fits(4, () => []);
  t.is(state.queries, 1, "still fresh");
  now = 1600;
  await m.fits(4, () => []);
  t.is(state.queries, 2, "older than maxAgeMs: asked again");
});

test("a domain built after the snapshot is counted once (as a promise), a refusal is checked on fresh figures", async (t) => {
  let now = 0;
  const { state, source } = xen(100);
  const m = new MemoryAdmission(source, 1000, () => now);
  const holders = [{ id: "a", reservedMiB: 60, released: false }];
  t.true((await m.fits(40, () => holders)).ok, "60 promised + 40 = 100 fit in 100");
  // a's domain is built: Xen's free memory drops by 60; the snapshot (no domain for a) still counts
  // a as a promise against the old free figure, so nothing is counted twice or not at all.
  state.freeMiB = 40;
  state.live.add("a");
  const stale = await m.fits(40, () => holders);
  t.true(stale.ok);
  t.is(stale.promisedMiB, 60);
  t.is(state.queries, 1);
  // 41 does not fit on the snapshot: asked again, a now has its domain, 40 free: still no.
  const refused = await m.fits(41, () => holders);
  t.false(refused.ok);
  t.is(state.queries, 2, "a refusal is never made on a stale snapshot");
  t.deepEqual({ free: refused.freeMiB, promised: refused.promisedMiB }, { free: 40, promised: 0 });
  // Memory freed meanwhile (a domain destroyed): the fresh look admits.
  state.freeMiB = 100;
  now = 100;
  t.true((await m.fits(41, () => holders)).ok, "freed memory is seen by the re-check");
});
