// `npm run bench:shim-start [-- --rounds 3]`: how long the CRI shim takes to start in dom0 of an
// emulated Xen node, launched as tsc emits it (dist/cri-shim/src/main.js: Node resolves and reads
// every module file of the shim and its dependencies, over 9p under TCG) against the esbuild bundle
// (dist/bundle/cri-shim.mjs: one file; koffi stays in node_modules). Both measured by startShim():
// launch to an answered CRI RuntimeService.Version (its cri-version helper bundled or not alike).
// One node, variants alternating, dom0's caches dropped before every start so each one reads cold
// as in a freshly booted node. Writes bench/results/shim-start.json and shim-start.svg.
import { mkdirSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { SHIM_SOCKET } from "../e2e/cluster/kubelet.js";
import { startShim } from "../e2e/cluster/shim.js";
import { startXenNode, type XenNode } from "../e2e/xen-node/index.js";
import { REPO_ROOT } from "../lib/paths.js";
import { plotSvg } from "./operator-plot.js";
import { median as medianOf } from "./stats.js";

const { values } = parseArgs({ options: { rounds: { type: "string", default: "3" } } });
const ROUNDS = Number(values.rounds);
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) {
  console.error("--rounds must be a positive integer");
  process.exit(2);
}
/** A start slower than this counts as failed (session 2 saw up to 12 minutes unbundled). */
const READY_TIMEOUT_MS = 1_200_000;

type Variant = "unbundled" | "bundled";
interface Sample {
  round: number;
  variant: Variant;
  /** Launch to an answered RuntimeService.Version; null when it did not start in time. */
  startMs: number | null;
  /** Of startMs, launch to the socket bound; the rest is the cri-version helper's Version call. */
  socketMs: number | null;
  error?: string;
  /** The host's 1-minute load average when the start began (other work shares the 2 cores). */
  loadAvg: number;
}

async function measure(node: XenNode, round: number, variant: Variant): Promise<Sample> {
  // Cold, like the first start after a node boots: with the 9p root mounted cache=loose, a second
  // start would otherwise read the module files from dom0's page cache.
  const dropped = await node.exec(`sync; echo 3 > /proc/sys/vm/drop_caches; rm -f ${SHIM_SOCKET}`);
  if (dropped.code !== 0) throw new Error(`dropping dom0's caches failed: ${dropped.stderr}`);
  const loadAvg = Number((loadavg()[0] ?? 0).toFixed(2));
  try {
    const shim = await startShim(node, {
      args: ["--bridge", node.bridge, "--pod-cidr", node.podCidr],
      readyTimeoutMs: READY_TIMEOUT_MS,
      bundled: variant === "bundled",
    });
    await shim.stop();
    return { round, variant, startMs: shim.startMs, socketMs: shim.socketMs, loadAvg };
  } catch (err) {
    return { round, variant, startMs: null, socketMs: null, error: String(err).slice(0, 500), loadAvg };
  }
}

const node = await startXenNode({ name: "bench-shim-start", bootTimeoutMs: 1_200_000 });
const samples: Sample[] = [];
try {
  for (let round = 1; round <= ROUNDS; round++) {
    // Alternate which goes first so a load swing does not always favour one variant.
    const order: Variant[] = round % 2 ? ["unbundled", "bundled"] : ["bundled", "unbundled"];
    for (const variant of order) {
      const s = await measure(node, round, variant);
      samples.push(s);
      console.log(JSON.stringify(s));
    }
  }
} finally {
  await node.stop();
}

/** The median, or null when no start of that variant was measured. */
const median = (xs: number[]) => (xs.length ? medianOf(xs) : null);

const ms = (v: Variant, key: "startMs" | "socketMs" = "startMs") =>
  samples.filter((s) => s.variant === v && s[key] !== null).map((s) => s[key]!);
const result = {
  what: "CRI shim start in dom0 of an emulated Xen node (launch -> CRI RuntimeService.Version answered), tsc's module-by-module output vs the esbuild bundle; dom0 caches dropped before each start",
  rounds: ROUNDS,
  node: { cpus: 1, accel: "tcg", root: "host / over 9p (cache=loose)" },
  samples,
  medianUnbundledMs: median(ms("unbundled")),
  medianBundledMs: median(ms("bundled")),
  medianUnbundledSocketMs: median(ms("unbundled", "socketMs")),
  medianBundledSocketMs: median(ms("bundled", "socketMs")),
  speedup: (() => {
    const u = median(ms("unbundled"));
    const b = median(ms("bundled"));
    return u !== null && b ? Number((u / b).toFixed(1)) : null;
  })(),
};
const out = join(REPO_ROOT, "bench", "results");
mkdirSync(out, { recursive: true });
writeFileSync(join(out, "shim-start.json"), JSON.stringify(result, null, 2) + "\n");
const series = (v: Variant, color: string, label: string) => ({
  name: `${label} (median ${result[v === "bundled" ? "medianBundledMs" : "medianUnbundledMs"] ?? "-"} ms)`,
  color,
  points: samples
    .filter((s) => s.variant === v && s.startMs !== null)
    .map((s): [number, number] => [s.round, s.startMs!]),
});
writeFileSync(
  join(out, "shim-start.svg"),
  plotSvg("CRI shim start in an emulated dom0 (cold caches), per round", "round", "ms", [
    series("unbundled", "#d62728", "dist/cri-shim/src/main.js (unbundled)"),
    series("bundled", "#1f77b4", "dist/bundle/cri-shim.mjs (esbuild)"),
  ]),
);
console.log(
  `median start: unbundled ${result.medianUnbundledMs} ms, bundled ${result.medianBundledMs} ms (x${result.speedup}); wrote bench/results/shim-start.json and shim-start.svg`,
);
if (samples.some((s) => s.startMs === null)) process.exitCode = 1;
