// `npm run bench:xen-node [-- --runs 1]`: the emulated Xen node, tuned (the default of
// e2e/xen-node: single-threaded TCG, 1 vCPU, cached 9p root, virtio-rng, no XPTI/mitigations) vs
// the plain recipe (multi-threaded TCG, 2 vCPUs, nothing tuned). Per run and variant: boot to a
// ready toolstack, `xl list` through the exec agent, and `xl create` of the PV test guest on the pod
// bridge (vif-bridge hotplug included). Variants alternate. Writes bench/results/xen-node.json + .svg.
import { cpus, loadavg } from "node:os";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { testGuestConfig, testGuestImage } from "../e2e/xen-node/guest-image.js";
import { startXenNode, type XenNodeOptions } from "../e2e/xen-node/index.js";
import { addressAt } from "../e2e/xen-node/pod-network.js";
import { REPO_ROOT } from "../lib/paths.js";
import { plotSvg, type Series } from "./operator-plot.js";

const { values } = parseArgs({ options: { runs: { type: "string", default: "1" } } });
const RUNS = Number(values.runs);
if (!Number.isInteger(RUNS) || RUNS < 1) {
  console.error("--runs must be a positive integer");
  process.exit(2);
}

interface Sample {
  bootMs: number;
  xlListMs: number;
  xlCreateMs: number | null;
  xlCreateError?: string;
  loadAvg: number;
}

const VARIANTS: Array<{ key: string; label: string; opts: Omit<XenNodeOptions, "name"> }> = [
  { key: "tuned", label: "tuned (default)", opts: {} },
  { key: "untuned", label: "plain recipe", opts: { tuning: "untuned", cpus: 2 } },
];

async function measure(name: string, opts: Omit<XenNodeOptions, "name">): Promise<Sample> {
  const loadAvg = loadavg()[0] ?? 0;
  const node = await startXenNode({ name, bootTimeoutMs: 1_200_000, ...opts });
  try {
    let t = Date.now();
    const list = await node.exec("xl list");
    if (list.code !== 0) throw new Error(`xl list: ${list.stderr}`);
    const xlListMs = Date.now() - t;
    const image = await testGuestImage();
    const ip = addressAt(node.podCidr, 10);
    writeFileSync(
      join(node.hostDir, "g.cfg"),
      testGuestConfig(image, {
        name: "g",
        word: "bench",
        bridge: node.bridge,
        ip: `${ip}/${node.podCidr.split("/")[1]}`,
        gw: node.dom0Ip,
      }),
    );
    t = Date.now();
    const created = await node.exec("xl create /mnt/host/g.cfg", { timeoutMs: 900_000 });
    const xlCreateMs = Date.now() - t;
    return created.code === 0
      ? { bootMs: node.bootMs, xlListMs, xlCreateMs, loadAvg }
      : {
          bootMs: node.bootMs,
          xlListMs,
          xlCreateMs: null,
          xlCreateError: created.stderr.split("\n").filter((l) => /error/.test(l))[0] ?? "",
          loadAvg,
        };
  } finally {
    await node.stop();
  }
}

const samples: Record<string, Sample[]> = { tuned: [], untuned: [] };
for (let run = 0; run < RUNS; run++) {
  for (const v of run % 2 === 0 ? VARIANTS : [...VARIANTS].reverse()) {
    const s = await measure(`bench-${v.key}`, v.opts);
    samples[v.key]?.push(s);
    console.log(
      `${v.label}: boot ${(s.bootMs / 1000).toFixed(1)} s, xl list ${s.xlListMs} ms, xl create ${s.xlCreateMs === null ? `FAILED (${s.xlCreateError})` : `${(s.xlCreateMs / 1000).toFixed(1)} s`} (host load ${s.loadAvg.toFixed(1)})`,
    );
  }
}

const outDir = join(REPO_ROOT, "bench", "results");
mkdirSync(outDir, { recursive: true });
writeFileSync(
  join(outDir, "xen-node.json"),
  JSON.stringify(
    {
      benchmark: "xen-node",
      runs: RUNS,
      baseline: "multi-threaded TCG, 2 vCPUs, no tuning",
      samples,
      machine: { cpus: cpus().length, node: process.version },
      date: new Date().toISOString(),
    },
    null,
    2,
  ) + "\n",
);
// One point per measurement kind (x: 1 boot, 2 xl list, 3 xl create), y in seconds; a failed
// xl create is drawn at 0 and reported in the JSON.
const points = (xs: Sample[]): Array<[number, number]> =>
  xs.flatMap(
    (s) =>
      [
        [1, s.bootMs / 1000],
        [2, s.xlListMs / 1000],
        [3, (s.xlCreateMs ?? 0) / 1000],
      ] as Array<[number, number]>,
  );
const series: Series[] = [
  {
    name: "tuned (default): 1 boot, 2 xl list, 3 xl create",
    color: "#1f77b4",
    points: points(samples.tuned ?? []),
  },
  { name: "plain recipe (baseline)", color: "#ff7f0e", points: points(samples.untuned ?? []) },
];
writeFileSync(
  join(outDir, "xen-node.svg"),
  plotSvg(
    "Emulated Xen node: boot, xl list, xl create (PV guest with vif)",
    "1 boot / 2 xl list / 3 xl create",
    "seconds",
    series,
  ),
);
console.log(`wrote ${join(outDir, "xen-node.json")} and .svg`);
