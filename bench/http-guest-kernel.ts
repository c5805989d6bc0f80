// `npm run bench:http-guest-kernel [-- --runs 3]`: how long `xl create -p` (domain build only, no
// vif) takes on one emulated Xen node for the http guest's kernel in the two forms Xen's PV domain
// builder accepts: ours (native/build/http/kernel: the ELF kernel, gzipped) vs the baseline
// (Debian's bzImage as installed, which xl decompresses with xz itself). Variants alternate on the
// same node. Writes bench/results/http-guest-kernel.json + .svg.
import { cpus, loadavg } from "node:os";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { ensureHttpGuestImage } from "../e2e/guests/http-guest.js";
import { startXenNode } from "../e2e/xen-node/index.js";
import { REPO_ROOT } from "../lib/paths.js";
import { plotSvg } from "./operator-plot.js";

const { values } = parseArgs({ options: { runs: { type: "string", default: "3" } } });
const RUNS = Number(values.runs);
if (!Number.isInteger(RUNS) || RUNS < 1) {
  console.error("--runs must be a positive integer");
  process.exit(2);
}

const image = await ensureHttpGuestImage();
const VARIANTS = [
  { key: "elf-gz", label: "ELF kernel, gzipped (ours)", kernel: image.kernel, color: "#1f77b4" },
  { key: "bzimage", label: "bzImage as installed (baseline)", kernel: image.bzImage, color: "#ff7f0e" },
] as const;

const node = await startXenNode({ name: "bench-http-kernel", bootTimeoutMs: 1_200_000 });
const samples: Record<string, Array<{ xlCreateMs: number; loadAvg: number }>> = { "elf-gz": [], bzimage: [] };
try {
  for (const v of VARIANTS) {
    writeFileSync(
      join(node.hostDir, `${v.key}.cfg`),
      [
        `name = "${v.key}"`,
        `type = "pv"`,
        `kernel = "${v.kernel}"`,
        `ramdisk = "${image.initrd}"`,
        `extra = "console=hvc0 quiet"`,
        `memory = 96`,
        "",
      ].join("\n"),
    );
  }
  for (let run = 0; run < RUNS; run++) {
    for (const v of run % 2 === 0 ? VARIANTS : [...VARIANTS].reverse()) {
      const loadAvg = loadavg()[0] ?? 0;
      const t = Date.now();
      const created = await node.exec(`xl create -p ${node.dom0HostDir}/${v.key}.cfg`, {
        timeoutMs: 600_000,
      });
      const xlCreateMs = Date.now() - t;
      if (created.code !== 0) throw new Error(`xl create ${v.key}: ${created.stderr}`);
      const destroyed = await node.exec(`xl destroy ${v.key}`);
      if (destroyed.code !== 0) throw new Error(`xl destroy ${v.key}: ${destroyed.stderr}`);
      samples[v.key]?.push({ xlCreateMs, loadAvg });
      console.log(
        `${v.label}: xl create -p ${(xlCreateMs / 1000).toFixed(1)} s (host load ${loadAvg.toFixed(1)})`,
      );
    }
  }
} finally {
  await node.stop();
}

const outDir = join(REPO_ROOT, "bench", "results");
mkdirSync(outDir, { recursive: true });
writeFileSync(
  join(outDir, "http-guest-kernel.json"),
  JSON.stringify(
    {
      benchmark: "http-guest-kernel",
      measure: "wall ms of `xl create -p` through the dom0 exec agent, domain build only",
      runs: RUNS,
      baseline: "bzimage",
      samples,
      machine: { cpus: cpus().length, node: process.version },
      date: new Date().toISOString(),
    },
    null,
    2,
  ) + "\n",
);
writeFileSync(
  join(outDir, "http-guest-kernel.svg"),
  plotSvg(
    "http guest: xl create -p on an emulated Xen node, by kernel format",
    "run",
    "seconds",
    VARIANTS.map((v) => ({
      name: v.label,
      color: v.color,
      points: (samples[v.key] ?? []).map((s, i): [number, number] => [i + 1, s.xlCreateMs / 1000]),
    })),
  ),
);
console.log(`wrote ${join(outDir, "http-guest-kernel.json")} and .svg`);
