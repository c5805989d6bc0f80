// `npm run bench:create`: on an emulated Xen node, time from RunPodSandbox to the `hello` guest's
// ready line through the CRI shim, against `xl create` of the same kernel and memory, interleaved in
// one run (bench/create-dom0.ts does the timing inside dom0). Prints both medians and the ratio,
// writes bench/results/create.json and create.svg.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "../lib/paths.js";
import { startRegistry } from "../e2e/harness/registry.js";
import { EXAMPLE_IMAGES, pushExampleImages } from "../e2e/cluster/images.js";
import { SHIM_SOCKET } from "../e2e/cluster/kubelet.js";
import { startShim } from "../e2e/cluster/shim.js";
import { startXenNode } from "../e2e/xen-node/index.js";
import { plotSvg } from "./operator-plot.js";
import type { ShimPhases } from "./create-dom0.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 8);
const MEMORY_MIB = 8;
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

const registry = await startRegistry();
const node = await startXenNode({ name: "bench-create", bootTimeoutMs: 1_200_000 });
try {
  const pushed = await pushExampleImages(registry);
  const image = pushed.hello!.hostRef.replace(registry.host, `${node.hostIpFromDom0}:${registry.port}`);
  const shim = await startShim(node, {
    args: [
      "--bridge",
      node.bridge,
      "--pod-cidr",
      node.podCidr,
      "--plain-http-registries",
      node.hostIpFromDom0,
    ],
    readyTimeoutMs: 600_000,
  });
  try {
    const kernel = EXAMPLE_IMAGES.find((i) => i.name === "hello")!.kernel;
    const r = await node.exec(
      `node ${join(REPO_ROOT, "dist/bundle/create-dom0.mjs")} ${SHIM_SOCKET} ${image} ${kernel} ${MEMORY_MIB} ${ROUNDS} ${node.bridge}`,
      { timeoutMs: 3_600_000 },
    );
    if (r.code !== 0) throw new Error(`bench in dom0 failed: ${r.stderr}\n${shim.log(30)}`);
    const {
      shim: ours,
      xl,
      phases,
    } = JSON.parse(r.stdout.trim().split("\n").pop()!) as {
      shim: number[];
      xl: number[];
      phases: ShimPhases[];
    };
    const phaseMedians = Object.fromEntries(
      (Object.keys(phases[0]!) as (keyof ShimPhases)[]).map((k) => [
        k,
        Math.round(median(phases.map((p) => p[k]))),
      ]),
    );
    const result = {
      what: "RunPodSandbox -> hello ready line (CRI shim, libxl in-process) vs `xl create` -> same line; same kernel, memory, one vif on the same bridge",
      memoryMiB: MEMORY_MIB,
      rounds: ROUNDS,
      node: { cpus: 2, accel: "tcg" },
      shimMs: ours.map(Math.round),
      xlMs: xl.map(Math.round),
      medianShimMs: Math.round(median(ours)),
      medianXlMs: Math.round(median(xl)),
      ratio: Number((median(ours) / median(xl)).toFixed(3)),
      medianShimPhasesMs: phaseMedians,
    };
    const out = join(REPO_ROOT, "bench", "results");
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, "create.json"), JSON.stringify(result, null, 2) + "\n");
    writeFileSync(
      join(out, "create.svg"),
      plotSvg("time to the hello ready line, per round (emulated Xen)", "round", "ms", [
        {
          name: `CRI shim (median ${result.medianShimMs} ms)`,
          color: "#1f77b4",
          points: ours.map((v, i) => [i + 1, v]),
        },
        {
          name: `xl create (median ${result.medianXlMs} ms)`,
          color: "#d62728",
          points: xl.map((v, i) => [i + 1, v]),
        },
      ]),
    );
    console.log(
      `median: shim ${result.medianShimMs} ms, xl create ${result.medianXlMs} ms, ratio ${result.ratio}; shim phases ${JSON.stringify(phaseMedians)}; wrote bench/results/create.json and create.svg`,
    );
  } finally {
    await shim.stop();
  }
} finally {
  await node.stop();
  await registry.stop();
}
