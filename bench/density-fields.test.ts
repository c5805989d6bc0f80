import test from "ava";
import { criStopReason, slabGrowthPerVm, slabKiB } from "./density-fields.js";

const snapshot = (rows: [string, number, number][]) =>
  [
    "slabinfo - version: 2.1",
    "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>",
    ...rows.map(
      ([name, pagesPerSlab, slabs]) =>
        `${name}   10   20   256   16   ${pagesPerSlab} : tunables    0    0    0 : slabdata   ${slabs}   ${slabs}   0`,
    ),
    "",
  ].join("\n");

test("slabKiB: slabs × pages per slab × 4 KiB per cache; headers and odd lines are skipped", (t) => {
  const text =
    snapshot([
      ["kmalloc-1k", 8, 10],
      ["dentry", 1, 3],
    ]) + "garbage line without fields\n";
  t.deepEqual(slabKiB(text), { "kmalloc-1k": 320, dentry: 12 });
});

test("slabGrowthPerVm: the caches that grew, per VM, largest first; shrunk or new-empty ones are left out", (t) => {
  const before = slabKiB(
    snapshot([
      ["kmalloc-1k", 8, 10],
      ["dentry", 1, 300],
      ["idle", 1, 5],
    ]),
  );
  const after = slabKiB(
    snapshot([
      ["kmalloc-1k", 8, 110],
      ["dentry", 1, 100],
      ["idle", 1, 5],
      ["new", 2, 50],
    ]),
  );
  t.deepEqual(slabGrowthPerVm(before, after, 100), { "kmalloc-1k": 32, new: 4 });
  t.deepEqual(slabGrowthPerVm(before, after, 100, 1), { "kmalloc-1k": 32 });
  t.deepEqual(slabGrowthPerVm(before, after, 0), {});
});

test("criStopReason: a failure first, then the maximum, then a deadline or a signal", (t) => {
  const base = { started: 10, max: 2000, deadlineMin: 20 };
  t.deepEqual(criStopReason({ ...base, failed: "VM 10: out of memory", stoppedBy: "deadline" }), {
    stoppedBecause: "VM 10: out of memory",
    reachedMax: false,
  });
  t.deepEqual(criStopReason({ ...base, started: 2000, failed: undefined, stoppedBy: "deadline" }), {
    stoppedBecause: "reached the run's maximum (2000)",
    reachedMax: true,
  });
  t.regex(
    criStopReason({ ...base, failed: undefined, stoppedBy: "deadline" }).stoppedBecause,
    /20 min of creating, at 10 VMs/,
  );
  t.regex(
    criStopReason({ ...base, failed: undefined, stoppedBy: "SIGTERM" }).stoppedBecause,
    /SIGTERM at 10 VMs/,
  );
  t.is(criStopReason({ ...base, failed: undefined }).reachedMax, false);
});
