// `npm run bench:create [-- --force] [--out DIR]`: on an emulated Xen node, builds a paused `hello`
// domain with one vif on the node bridge through the lean backend with a warm pool, the lean
// backend cold, the libxl backend and `xl create -p`, interleaved in one run (bench/create-dom0.ts
// times them inside dom0), and destroys each (ours vs `xl destroy`). Writes create.json and
// create.svg to bench/results (or --out). Refuses to write when the 1-minute load average at the
// start is 1.5 or more (the figures would measure the neighbours), unless --force.
import { mkdirSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { REPO_ROOT } from "../lib/paths.js";
import { startXenNode } from "../e2e/xen-node/index.js";
import { plotSvg } from "./operator-plot.js";
import type { Dom0Result } from "./create-dom0.js";
import { median } from "./stats.js";

const { values } = parseArgs({
  options: { force: { type: "boolean" }, out: { type: "string" } },
});
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 8);
const MEMORY_MIB = 4;
const MAX_LOAD = 1.5;

const loadAvgAtStart = loadavg()[0]!;
if (loadAvgAtStart >= MAX_LOAD && !values.force) {
  console.error(
    `load average ${loadAvgAtStart.toFixed(2)} >= ${MAX_LOAD}: not measuring (--force to run anyway)`,
  );
  process.exit(1);
}
const node = await startXenNode({ name: "bench-create", bootTimeoutMs: 1_200_000 });
let r: Dom0Result;
try {
  const kernel = join(REPO_ROOT, "native/build/hello/hello");
  const out = await node.exec(
    `node ${join(REPO_ROOT, "dist/bundle/create-dom0.mjs")} ${kernel} ${MEMORY_MIB} ${ROUNDS} ${node.bridge}`,
    { timeoutMs: 3_600_000 },
  );
  if (out.code !== 0) throw new Error(`bench in dom0 failed: ${out.stderr.slice(-3000)}`);
  r = JSON.parse(out.stdout.trim().split("\n").pop()!) as Dom0Result;
} finally {
  await node.stop();
}

const med = (k: string, from = r.createMs) => Math.round(median(from[k] ?? []));
const ratio = (a: number, b: number) => Number((a / b).toFixed(2));
const result = {
  what: "paused hello domain with one vif on the node bridge, built in dom0 (lean backend warm pool / cold, libxl backend, `xl create -p`); destroy: lean vs `xl destroy`",
  memoryMiB: MEMORY_MIB,
  rounds: ROUNDS,
  node: { cpus: 1, accel: "tcg" },
  loadAvgAtStart: Number(loadAvgAtStart.toFixed(2)),
  medianOursMs: med("leanWarm"),
  medianOursColdMs: med("leanCold"),
  medianLibxlMs: med("libxl"),
  medianXlMs: med("xl"),
  speedup: ratio(median(r.createMs.xl!), median(r.createMs.leanWarm!)),
  speedupCold: ratio(median(r.createMs.xl!), median(r.createMs.leanCold!)),
  // Until the vif is on the bridge too (what xl's figure includes); the lean backend waits for it at unpause.
  medianOursAttachedMs: med("leanWarm", r.attachedMs),
  medianOursColdAttachedMs: med("leanCold", r.attachedMs),
  speedupAttached: ratio(median(r.createMs.xl!), median(r.attachedMs.leanWarm!)),
  speedupColdAttached: ratio(median(r.createMs.xl!), median(r.attachedMs.leanCold!)),
  medianOursDestroyMs: med("leanWarm", r.destroyMs),
  medianXlDestroyMs: med("xl", r.destroyMs),
  destroySpeedup: ratio(median(r.destroyMs.xl!), median(r.destroyMs.leanWarm!)),
  xenstoreWritesPerVm: r.counts.leanWarm!.xenstoreWrites,
  processesPerVm: r.counts.leanWarm!.processes + r.counts.leanWarm!.destroyProcesses,
  counts: r.counts,
  createMs: r.createMs,
  attachedMs: r.attachedMs,
  destroyMs: r.destroyMs,
  unpauseToReadyMs: r.readyMs,
};
const outDir = values.out ?? join(REPO_ROOT, "bench", "results");
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, "create.json"), JSON.stringify(result, null, 2) + "\n");
const colors: Record<string, string> = {
  leanWarm: "#2ca02c",
  leanCold: "#1f77b4",
  libxl: "#ff7f0e",
  xl: "#d62728",
};
writeFileSync(
  join(outDir, "create.svg"),
  plotSvg(
    "paused domain with one vif, per round (emulated Xen, dom0)",
    "round",
    "ms",
    Object.entries(r.createMs).map(([k, xs]) => ({
      name: `${k} (median ${med(k)} ms)`,
      color: colors[k] ?? "#7f7f7f",
      points: xs.map((v, i) => [i + 1, v] as [number, number]),
    })),
  ),
);
console.log(
  `create median: lean warm ${result.medianOursMs} ms, lean cold ${result.medianOursColdMs} ms, libxl ${result.medianLibxlMs} ms, xl ${result.medianXlMs} ms; speedup ${result.speedup}x warm, ${result.speedupCold}x cold (vif attached: ${result.speedupAttached}x, ${result.speedupColdAttached}x); destroy ${result.destroySpeedup}x; ${result.xenstoreWritesPerVm} XenStore writes and ${result.processesPerVm} processes per VM; load ${result.loadAvgAtStart}; wrote ${outDir}/create.json and create.svg`,
);
