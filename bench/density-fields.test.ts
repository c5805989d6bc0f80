import test from "ava";
import { slabGrowthPerVm, slabKiB } from "./density-fields.js";

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
