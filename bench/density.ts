// `npm run bench:density [-- --force] [--out DIR]`: how many unikernels one emulated Xen node holds
// through Kubernetes, and what each costs.
//
// 1. One cluster (e2e/cluster: control plane, real scheduler, operator, one emulated Xen node whose
//    dom0 runs the shim with the lean backend and a real kubelet), the node's memory sized for the run.
// 2. N hello UnikernelVMs (DENSITY_VMS, default 1,000) in batches of DENSITY_BATCH (default 50)
//    through the apiserver, each guest ticking once an hour. Per VM: its index, apply→Ready ms and
//    the Xen memory in use when it was seen Ready. After each batch: dom0's memory (the shim's,
//    xenstored's, xenconsoled's and the kubelet's RSS, and dom0's used memory as a whole).
// 3. The kubelet and the operator are stopped, the VMs' sandboxes removed over CRI, and a CRI-only
//    run (gRPC straight to the shim in dom0, bench/density-dom0.ts) starts VMs until the first failure
//    or DENSITY_CRI_MAX (default 2,000) or DENSITY_CRI_DEADLINE_MIN minutes of creating, and says
//    why it stopped.
//
// Writes density.json and density.svg to bench/results (or --out). Refuses to run when the 1-minute
// load average at the start is 1.5 or more (the figures would measure the neighbours), unless --force.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { randomBytes } from "node:crypto";
import { REPO_ROOT } from "../lib/paths.js";
import { startCluster } from "../e2e/cluster/index.js";
import { exampleImageRef } from "../e2e/cluster/images.js";
import { SHIM_SOCKET } from "../e2e/cluster/kubelet.js";
import { startFleet } from "../e2e/cluster/fleet.js";
import type { CriOnlyResult, DensitySample } from "./density-dom0.js";
import { KERNEL_FIELDS, slabGrowthPerVm, slabKiB } from "./density-fields.js";
import { densitySvg } from "./density-plot.js";
import { median } from "./stats.js";

const { values } = parseArgs({ options: { force: { type: "boolean" }, out: { type: "string" } } });
const envInt = (name: string, def: number) => {
  const v = Number(process.env[name] ?? def);
  if (!Number.isInteger(v) || v < 0) throw new Error(`${name} must be a non-negative integer`);
  return v;
};
const N = envInt("DENSITY_VMS", 1000);
const BATCH = Math.max(1, envInt("DENSITY_BATCH", 50));
const CRI_MAX = envInt("DENSITY_CRI_MAX", 2000);
/** The CRI-only run starts no VM after this many minutes of creating (0: no limit) and reports how far it got. */
const CRI_DEADLINE_MIN = envInt("DENSITY_CRI_DEADLINE_MIN", 0);
/**
 * DENSITY_EVENTED_PLEG=1: the kubelet's EventedPLEG feature gate on (alpha): it takes container
 * starts and exits from the shim's GetContainerEvents stream and relists every 5 minutes, not every second.
 */
const EVENTED_PLEG = process.env.DENSITY_EVENTED_PLEG === "1";
const GUEST_MIB = 4;
const INTERVAL_S = 3600;
const MAX_LOAD = 1.5;
/** Xen's own memory and slack above dom0 and the guests. */
const XEN_SLACK_MIB = 512;
/** What Xen keeps per domain besides its memory (p2m, shared info, grant and event tables), rounded up. */
const PER_VM_XEN_MIB = 1;
// dom0 held ~1.7 MiB more per VM at 150 VMs (kubelet at GOGC=400 most of it): 1,000 VMs need more
// than 2 GiB; the host's memory is taken lazily, so room costs nothing until used.
const DOM0_MIB = envInt("DENSITY_DOM0_MIB", 3072);
/** The kubelet's GOGC: Go's default, as on a real host (the e2e default 400 inflates its heap). */
const KUBELET_GOGC = envInt("DENSITY_KUBELET_GOGC", 100);
const NODE_MIB = envInt(
  "DENSITY_NODE_MIB",
  DOM0_MIB + XEN_SLACK_MIB + Math.max(N, CRI_MAX) * (GUEST_MIB + PER_VM_XEN_MIB),
);
const BATCH_TIMEOUT_MS = envInt("DENSITY_BATCH_TIMEOUT_S", 900) * 1000;
/**
 * No new batch starts after this many minutes of creating (0: no limit); the run then goes on to
 * its CRI-only part and writes what it measured, with `stoppedEarly` saying why. A run whose batches
 * grow slower than expected still leaves its figures instead of nothing when it must end.
 */
const DEADLINE_MIN = envInt("DENSITY_DEADLINE_MIN", 0);

const round2 = (x: number) => Number(x.toFixed(2));

const loadAvgAtStart = loadavg()[0]!;
if (loadAvgAtStart >= MAX_LOAD && !values.force) {
  console.error(
    `load average ${loadAvgAtStart.toFixed(2)} >= ${MAX_LOAD}: not measuring (--force, to a scratch --out, to run anyway)`,
  );
  process.exit(1);
}
// The lean backend, with a pool of shells of the guests' shape; a CPU share small enough for N VMs
// on dom0's 4 CPUs (1m each: the RuntimeClass overhead adds another 1m).
process.env.SUPERFLUID_HYPERVISOR ??= "lean";
process.env.SUPERFLUID_POOL_SHAPES ??= String(GUEST_MIB);
process.env.CPU_ALLOCATION_RATIO ??= "1000";

const t0 = Date.now();
const cluster = await startCluster({
  namePrefix: "density",
  nodeMemoryMiB: NODE_MIB,
  dom0MemoryMiB: DOM0_MIB,
  maxPods: Math.max(1024, N + 16),
  kubeletGogc: KUBELET_GOGC,
  ...(EVENTED_PLEG ? { kubeletFeatureGates: { EventedPLEG: true } } : {}),
  // Room for the CRI-only run's addresses too (a /21 has 2,046).
  podPrefixLength: Math.max(N, CRI_MAX) > 2000 ? 20 : 21,
});
const node = cluster.nodes[0]!;
const namespace = `density-${randomBytes(3).toString("hex")}`;
const sampleDir = join(node.xen.hostDir, "density");
mkdirSync(sampleDir, { recursive: true });
const samplesPath = join(sampleDir, "samples.jsonl");
const dom0Tool = join(REPO_ROOT, "dist", "bundle", "density-dom0.mjs");
const dom0Sample = `${node.xen.dom0HostDir}/density`;

function samples(): DensitySample[] {
  if (!existsSync(samplesPath)) return [];
  return readFileSync(samplesPath, "utf8")
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as DensitySample);
}
const lastSample = () => samples().at(-1);
/** The first sample taken after this call (the sampler writes one every 2 s). */
async function nextSample(): Promise<DensitySample> {
  const after = lastSample()?.seq ?? -1;
  for (let i = 0; i < 300; i++) {
    const s = lastSample();
    if (s && s.seq > after + 1) return s;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error("the dom0 sampler stopped writing samples");
}
const dom0KiB = (s: DensitySample) => s.shimKiB + s.xenstoredKiB + s.xenconsoledKiB + s.kubeletKiB;
const xenUsedKiB = (s: DensitySample) => s.xenTotalKiB - s.xenFreeKiB;

interface BatchRecord {
  vms: number;
  readyAfterMs: number;
  sample: DensitySample;
  /** dom0's slab caches (KiB), read once per batch: what the kernel holds per VM, by cache. */
  slab: Record<string, number>;
}
/** dom0's /proc/slabinfo as KiB per cache ({} if it cannot be read). */
const dom0Slab = async (): Promise<Record<string, number>> => {
  const r = await node.xen.exec("cat /proc/slabinfo").catch(() => undefined);
  return r?.code === 0 ? slabKiB(r.stdout) : {};
};
const perVm: Array<{ index: number; name: string; createMs: number; xenUsedKiB: number }> = [];
const batches: BatchRecord[] = [];
let cri: CriOnlyResult | undefined;
let criCleanupMs = 0;
let baseline: DensitySample | undefined;
let baselineSlab: Record<string, number> = {};
let failure: string | undefined;
let stoppedEarly: string | undefined;

try {
  await cluster.kubectl(["create", "namespace", namespace]);
  const started = await node.xen.exec(
    `mkdir -p ${dom0Sample}; setsid node ${dom0Tool} sample ${dom0Sample}/samples.jsonl ${node.xen.dom0HostDir}/shim/shim.pid ${node.xen.dom0HostDir}/kubelet/kubelet.pid </dev/null >${dom0Sample}/sampler.log 2>&1 & echo $! >${dom0Sample}/sampler.pid`,
  );
  if (started.code !== 0) throw new Error(`starting the dom0 sampler failed: ${started.stderr}`);
  baseline = await nextSample();
  baselineSlab = await dom0Slab();

  const fleet = await startFleet(cluster.cp, {
    namespace,
    image: exampleImageRef("hello"),
    intervalSeconds: INTERVAL_S,
    // Named, not left to the image's default: the operator on this host cannot reach the registry
    // as dom0 names it (localhost:5000 is dom0's forward), and would fall back to 16 MiB.
    memory: `${GUEST_MIB}Mi`,
  });
  const index = new Map<string, number>();
  fleet.onReady((name, ms) => {
    const s = lastSample();
    perVm.push({ index: index.get(name)!, name, createMs: ms, xenUsedKiB: s ? xenUsedKiB(s) : NaN });
  });
  try {
    const creating = Date.now();
    for (let from = 0; from < N; from += BATCH) {
      if (DEADLINE_MIN > 0 && Date.now() - creating > DEADLINE_MIN * 60_000) {
        stoppedEarly = `DENSITY_DEADLINE_MIN=${DEADLINE_MIN}: no batch started after ${DEADLINE_MIN} min of creating, at ${from} VMs`;
        console.log(stoppedEarly);
        break;
      }
      const names = Array.from({ length: Math.min(BATCH, N - from) }, (_, i) => `hello-${from + i}`);
      names.forEach((n, i) => index.set(n, from + i));
      const b0 = Date.now();
      await fleet.create(names);
      try {
        await fleet.waitReady(names, BATCH_TIMEOUT_MS);
      } catch (err) {
        failure = `batch at VM ${from}: ${(err as Error).message}`;
        break;
      }
      const sample = await nextSample();
      batches.push({
        vms: from + names.length,
        readyAfterMs: Date.now() - b0,
        sample,
        slab: await dom0Slab(),
      });
      console.log(
        `${from + names.length} VMs Ready (batch ${Date.now() - b0} ms); dom0 ${Math.round(dom0KiB(sample) / 1024)} MiB in the four, Xen ${Math.round(xenUsedKiB(sample) / 1024)} MiB used`,
      );
    }
  } finally {
    await fleet.close();
  }

  // The CRI-only run: nobody else may act on the shim's pods meanwhile. DENSITY_CRI_MAX=0 skips it
  // (and the cleanup before it), so the two halves can run as two shorter runs.
  if (CRI_MAX > 0) {
    await cluster.operator?.stop();
    await node.kubelet.stop();
    const c0 = Date.now();
    const r = await node.xen.exec(
      `node ${dom0Tool} cri ${SHIM_SOCKET} ${exampleImageRef("hello")} ${CRI_MAX} ${GUEST_MIB} /var/log/density-cri ${CRI_DEADLINE_MIN}`,
      { timeoutMs: 6 * 3_600_000 },
    );
    if (r.code !== 0) throw new Error(`the CRI-only run failed: ${r.stderr.slice(-3000)}`);
    const out = JSON.parse(r.stdout.trim().split("\n").pop()!) as CriOnlyResult;
    cri = out;
    criCleanupMs = out.cleanupMs;
    console.log(
      `CRI-only: ${out.started} VMs (${out.stoppedBecause}) in ${Date.now() - c0} ms (cleanup ${out.cleanupMs} ms, netback drained ${out.netbackDrainMs} ms, ${out.vifsLeft} vifs left)`,
    );
  }
} catch (err) {
  failure ??= (err as Error).message;
  console.error(await cluster.diagnostics(namespace).catch(() => ""));
} finally {
  await node.xen.exec(`kill $(cat ${dom0Sample}/sampler.pid)`).catch(() => undefined);
  await cluster.stop();
}

perVm.sort((a, b) => a.index - b.index);
const createMs = Object.fromEntries(perVm.map((v) => [v.index, v.createMs]));
const ms = perVm.map((v) => v.createMs);
const last = batches.at(-1);
const vmsReady = perVm.length;
const firstWindow = ms.slice(10, 60).length > 0 ? ms.slice(10, 60) : ms;
const result = {
  what: "hello UnikernelVMs (4 MiB, one tick an hour) through the apiserver, scheduler, operator and kubelet onto one emulated Xen node (lean backend), in batches; then a CRI-only run straight to the shim",
  loadAvgAtStart: round2(loadAvgAtStart),
  loadAvgAtEnd: round2(loadavg()[0]!),
  vmsRequested: N,
  batch: BATCH,
  node: {
    memoryMiB: NODE_MIB,
    dom0MemoryMiB: DOM0_MIB,
    guestMemoryMiB: GUEST_MIB,
    cpus: 4,
    accel: "tcg",
    // QEMU's TCG threads: "single" runs the node's 4 vCPUs on one host thread (the e2e default),
    // "multi" one thread each (SUPERFLUID_XEN_TCG_THREAD=multi; for a node alone on the machine).
    tcgThread: process.env.SUPERFLUID_XEN_TCG_THREAD === "multi" ? "multi" : "single",
    kubeletGogc: KUBELET_GOGC,
    kubeletEventedPleg: EVENTED_PLEG,
    // Every clocksource dom0's kernel used over the run's samples (qemu.ts: `tsc=reliable`).
    dom0Clocksources: [
      ...new Set([baseline, ...batches.map((b) => b.sample)].map((s) => s?.clocksource)),
    ].filter((c): c is string => c !== undefined),
  },
  vmsReady,
  createMs,
  medianCreateMs: Math.round(median(ms)),
  lastOverFirst: round2(median(ms.slice(-50)) / median(firstWindow)),
  // Everything in dom0 counted: its used memory (MemTotal - MemAvailable) grew by this per VM.
  dom0KiBPerVm:
    last && baseline && vmsReady
      ? Math.round((last.sample.dom0UsedKiB - baseline.dom0UsedKiB) / vmsReady)
      : null,
  // Of that, the four processes that hold per-VM state.
  dom0ProcessesKiBPerVm:
    last && baseline && vmsReady ? Math.round((dom0KiB(last.sample) - dom0KiB(baseline)) / vmsReady) : null,
  // Of the rest, the kernel's share by /proc/meminfo line (tmpfs, slab, kernel stacks, ...).
  dom0KernelKiBPerVm:
    last && baseline && vmsReady && last.sample.dom0Kernel && baseline.dom0Kernel
      ? Object.fromEntries(
          KERNEL_FIELDS.map((k) => [
            k,
            Math.round((last.sample.dom0Kernel[k] - baseline.dom0Kernel[k]) / vmsReady),
          ]),
        )
      : null,
  // The slab caches behind SUnreclaim/SReclaimable's growth, largest first (KiB per VM).
  dom0SlabKiBPerVm: last && vmsReady ? slabGrowthPerVm(baselineSlab, last.slab, vmsReady) : null,
  xenKiBPerVm:
    last && baseline && vmsReady
      ? Math.round((xenUsedKiB(last.sample) - xenUsedKiB(baseline)) / vmsReady)
      : null,
  criOnlyMax: cri?.started ?? null,
  criOnlyStoppedBecause: cri?.stoppedBecause ?? null,
  criOnlyMedianCreateMs: cri ? Math.round(median(cri.createMs)) : null,
  criOnlyCleanupMs: criCleanupMs,
  // After the cleanup, the wait for netback to unregister the removed domains' vifs, and any left.
  criOnlyNetbackDrainMs: cri?.netbackDrainMs ?? null,
  criOnlyVifsLeft: cri?.vifsLeft ?? null,
  criOnlyDeadlineMin: CRI_DEADLINE_MIN || null,
  failure: failure ?? null,
  stoppedEarly: stoppedEarly ?? null,
  totalMs: Date.now() - t0,
  baseline: baseline ?? null,
  batches: batches.map((b) => ({ vms: b.vms, readyAfterMs: b.readyAfterMs, ...b.sample })),
  xenUsedKiBAtReady: Object.fromEntries(perVm.map((v) => [v.index, v.xenUsedKiB])),
  criOnlyCreateMs: cri?.createMs ?? [],
};
const outDir = values.out ?? join(REPO_ROOT, "bench", "results");
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, "density.json"), JSON.stringify(result, null, 2) + "\n");
writeFileSync(
  join(outDir, "density.svg"),
  densitySvg({
    createMs: perVm.map((v) => [v.index + 1, v.createMs]),
    criCreateMs: (cri?.createMs ?? []).map((v, i) => [i + 1, v]),
    xenMiB: perVm.map((v) => [v.index + 1, (v.xenUsedKiB - (baseline ? xenUsedKiB(baseline) : 0)) / 1024]),
    dom0MiB: batches.map((b) => [b.vms, (b.sample.dom0UsedKiB - (baseline?.dom0UsedKiB ?? 0)) / 1024]),
  }),
);
console.log(
  `density: ${vmsReady}/${N} VMs Ready, median apply→Ready ${result.medianCreateMs} ms, lastOverFirst ${result.lastOverFirst}, dom0 ${result.dom0KiBPerVm} KiB/VM (the four processes ${result.dom0ProcessesKiBPerVm}), Xen ${result.xenKiBPerVm} KiB/VM, CRI-only ${result.criOnlyMax} (${result.criOnlyStoppedBecause}); load ${result.loadAvgAtStart}; wrote ${outDir}/density.json and density.svg${failure ? `; FAILED: ${failure}` : ""}`,
);
process.exitCode = failure ? 1 : 0;
