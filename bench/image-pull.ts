// `npm run bench:image-pull`: pulling a unikernel image from a registry on loopback into a fresh
// store, ready to boot (downloaded, digest-verified, kernel unpacked), with lib/oci's ImageStore vs
// the usual tools doing the same job (skopeo copy to an OCI layout, then umoci unpack). Same
// registry, same images, alternating runs. Writes bench/results/image-pull.json and .svg.
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { promisify } from "node:util";
import { startRegistry } from "../e2e/harness/registry.js";
import { ImageStore } from "../lib/oci/index.js";
import { REPO_ROOT } from "../lib/paths.js";
import { plotSvg, type Series } from "./operator-plot.js";

const run = promisify(execFile);
const { values } = parseArgs({ options: { runs: { type: "string", default: "9" } } });
const RUNS = Number(values.runs);
if (!Number.isInteger(RUNS) || RUNS < 1) {
  console.error("--runs must be a positive integer");
  process.exit(2);
}

const IMAGES = [
  { name: "hello", args: [join(REPO_ROOT, "native/build/hello/hello"), "--memory", "4Mi"] },
  {
    name: "http",
    args: [
      join(REPO_ROOT, "native/build/http/kernel"),
      "--initrd",
      join(REPO_ROOT, "native/build/http/initrd.cpio.gz"),
    ],
  },
];

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

const registry = await startRegistry();
const work = await mkdtemp(join(tmpdir(), "sf-bench-image-pull-"));
const results: Record<string, { sizeBytes: number; oursMs: number[]; baselineMs: number[] }> = {};
try {
  for (const img of IMAGES) {
    if (!existsSync(img.args[0]!)) throw new Error(`${img.args[0]} is missing: run npm run setup`);
    const ref = `${registry.host}/bench/${img.name}:latest`;
    const built = await run(process.execPath, [
      join(REPO_ROOT, "dist/tools/image.js"),
      "build",
      ...img.args,
      "--tag",
      ref,
      "--insecure",
    ]);
    const sizeBytes = (JSON.parse(built.stdout) as { sizeBytes: number }).sizeBytes;
    const r = (results[img.name] = { sizeBytes, oursMs: [] as number[], baselineMs: [] as number[] });
    // One untimed run of each first: JIT, page cache and the registry's own caches warm up.
    for (let i = -1; i < RUNS; i++) {
      const dir = await mkdtemp(join(work, `${img.name}-${i}-`));
      const ours = await timed(() => new ImageStore(join(dir, "store")).pull(ref, { plainHttp: true }));
      const baseline = await timed(async () => {
        await run("skopeo", [
          "copy",
          "--quiet",
          "--src-tls-verify=false",
          `docker://${ref}`,
          `oci:${join(dir, "layout")}:latest`,
        ]);
        await run("umoci", ["unpack", "--image", `${join(dir, "layout")}:latest`, join(dir, "bundle")]);
      });
      if (i >= 0) {
        r.oursMs.push(ours);
        r.baselineMs.push(baseline);
      }
      await rm(dir, { recursive: true, force: true });
    }
    console.log(
      `${img.name} (${sizeBytes} B): ours median ${median(r.oursMs).toFixed(1)} ms, skopeo+umoci median ${median(r.baselineMs).toFixed(1)} ms`,
    );
  }
} finally {
  await registry.stop();
  await rm(work, { recursive: true, force: true });
}

const summary = Object.fromEntries(
  Object.entries(results).map(([name, r]) => [
    name,
    {
      imageBytes: r.sizeBytes,
      oursMedianMs: +median(r.oursMs).toFixed(1),
      baselineMedianMs: +median(r.baselineMs).toFixed(1),
      oursMs: r.oursMs.map((x) => +x.toFixed(1)),
      baselineMs: r.baselineMs.map((x) => +x.toFixed(1)),
    },
  ]),
);
const outDir = join(REPO_ROOT, "bench", "results");
mkdirSync(outDir, { recursive: true });
writeFileSync(
  join(outDir, "image-pull.json"),
  JSON.stringify(
    {
      benchmark: "image-pull",
      runs: RUNS,
      baseline: "skopeo copy docker:// -> oci: + umoci unpack",
      images: summary,
      machine: { cpus: (await import("node:os")).cpus().length, node: process.version },
      date: new Date().toISOString(),
    },
    null,
    2,
  ) + "\n",
);
const colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"];
const series: Series[] = Object.entries(results).flatMap(([name, r], i) => [
  {
    name: `${name}: lib/oci ImageStore.pull`,
    color: colors[i * 2]!,
    points: r.oursMs.map((ms, k) => [k + 1, +ms.toFixed(1)] as [number, number]),
  },
  {
    name: `${name}: skopeo copy + umoci unpack`,
    color: colors[i * 2 + 1]!,
    points: r.baselineMs.map((ms, k) => [k + 1, +ms.toFixed(1)] as [number, number]),
  },
]);
writeFileSync(
  join(outDir, "image-pull.svg"),
  plotSvg("Pull a unikernel image from a loopback registry, ready to boot", "run", "milliseconds", series),
);
console.log(`wrote ${join(outDir, "image-pull.json")} and .svg`);
