// `npm run bench:migrate [-- --force] [-- --out DIR]`: suspend/resume and migration of `hello`,
// ours against xl, for the shim's default backend and, explicitly, SUPERFLUID_HYPERVISOR=lean
// (once when lean is the default). Parts: BENCH_PARTS=suspend,migrate (default both); backends:
// BENCH_BACKENDS=default,lean (default both); rounds: BENCH_ROUNDS (default 6).
// * suspend (bench/migrate-suspend.ts): through the node agent vs `xl save` + `xl restore` in dom0.
// * migrate (bench/migrate-stream.ts): hello (16 MiB) between two emulated nodes, ours vs
//   `xl save | socat | xl restore` (stop-and-copy).
// * live (bench/migrate-live.ts): the http guest (PVH, 128 MiB) moved live and by stop-and-copy while
//   a client requests it: liveDowntimeMs, stopAndCopyDowntimeMs, liveOverStopAndCopy, failed requests,
//   in <out>/migrate-live.json (its own file: BENCH_PARTS=live runs it alone).
// * faults: the migration fault suite (cri-shim/src/migration/faults.test.ts) runs, and the
//   failpoints it actually fired in passing cases are counted.
// Writes <out>/migrate.json (default bench/results) with, for the default backend and for lean:
//   suspendResumeSpeedup  = xl save+restore / the agent's own save+restore (medians)
//   downtimeRatioOverXl   = ours / xl stop-and-copy downtime (medians)
// plus faultPointsTested and loadAvgAtStart. Refuses to start above load 1.5 unless --force.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { REPO_ROOT } from "../lib/paths.js";
import { DEFAULT_HYPERVISOR } from "../cri-shim/src/hypervisor/backend.js";
import { plotSvg } from "./operator-plot.js";
import { benchMigrationStream, type MigrationBenchResult } from "./migrate-stream.js";
import { benchSuspendResume, type SuspendBenchResult } from "./migrate-suspend.js";
import { benchLiveMigration } from "./migrate-live.js";

const MAX_LOAD = 1.5;
const { values: args } = parseArgs({
  options: { force: { type: "boolean", default: false }, out: { type: "string" } },
});
const loadAvgAtStart = Number((loadavg()[0] ?? 0).toFixed(2));
if (loadAvgAtStart > MAX_LOAD && !args.force) {
  console.error(
    `bench:migrate: load average ${loadAvgAtStart} is above ${MAX_LOAD}; figures would measure the other work. Wait for a quiet machine, or pass --force (and --out to keep them out of bench/results).`,
  );
  process.exit(1);
}
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 6);
const parts = new Set((process.env.BENCH_PARTS ?? "suspend,migrate,live,faults").split(","));
const wanted = (process.env.BENCH_BACKENDS ?? "default,lean").split(",");
// "default": whatever the shim picks on its own (no SUPERFLUID_HYPERVISOR); "lean": set explicitly.
const backends = [...new Set(wanted.map((w) => (w === "default" ? DEFAULT_HYPERVISOR : w)))];
const out = args.out ?? join(REPO_ROOT, "bench", "results");
mkdirSync(out, { recursive: true });
const round3 = (x: number) => Number(x.toFixed(3));

interface BackendResult {
  suspend?: SuspendBenchResult;
  migration?: MigrationBenchResult;
  suspendResumeSpeedup?: number;
  suspendResumeSpeedupViaApi?: number;
  downtimeRatioOverXl?: number;
}

function speedups(
  s: SuspendBenchResult,
): Pick<BackendResult, "suspendResumeSpeedup" | "suspendResumeSpeedupViaApi"> {
  const m = s.median;
  const internal =
    m.agentInternalSaveMs !== null && m.agentInternalRestoreMs !== null
      ? m.agentInternalSaveMs + m.agentInternalRestoreMs
      : undefined;
  return {
    suspendResumeSpeedup: internal ? round3(m.xlTotalMs / internal) : undefined,
    suspendResumeSpeedupViaApi: round3(m.xlTotalMs / m.agentTotalMs),
  };
}

/** Runs the fault suite with its report on; the distinct failpoints fired in cases that passed. */
function faultPoints():
  { faultPointsTested: number; failpoints: string[]; cases: number } | { error: string } {
  const dir = mkdtempSync(join(tmpdir(), "sf-faults-"));
  const report = join(dir, "faults.json");
  try {
    const r = spawnSync(process.execPath, ["scripts/test.mjs", "cri-shim/src/migration/faults.test"], {
      cwd: REPO_ROOT,
      env: { ...process.env, SUPERFLUID_FAULT_REPORT: report, SUPERFLUID_STAGES: "host" },
      stdio: ["ignore", "inherit", "inherit"],
      timeout: 3_600_000,
    });
    if (r.status !== 0) return { error: `the fault suite failed (exit ${r.status ?? r.signal})` };
    const rep = JSON.parse(readFileSync(report, "utf8")) as { failpointsFired?: string[]; points: string[] };
    const failpoints = rep.failpointsFired ?? [];
    return { faultPointsTested: failpoints.length, failpoints, cases: rep.points.length };
  } catch (err) {
    return { error: `no fault report: ${String(err)}` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const byBackend: Record<string, BackendResult> = {};
const envBefore = process.env.SUPERFLUID_HYPERVISOR;
for (const backend of backends) {
  // The default run leaves the variable unset, as a node would; lean is asked for explicitly.
  if (backend === DEFAULT_HYPERVISOR && wanted.includes("default")) delete process.env.SUPERFLUID_HYPERVISOR;
  else process.env.SUPERFLUID_HYPERVISOR = backend;
  const r: BackendResult = {};
  if (parts.has("suspend")) {
    r.suspend = await benchSuspendResume(ROUNDS, backend);
    Object.assign(r, speedups(r.suspend));
    console.log(
      `[${backend}] suspend+resume: agent's own ${r.suspend.median.agentInternalSaveMs}+${r.suspend.median.agentInternalRestoreMs} ms (API to condition ${r.suspend.median.agentTotalMs} ms), xl ${r.suspend.median.xlSaveMs}+${r.suspend.median.xlRestoreMs} ms: speedup ${r.suspendResumeSpeedup} (via the API ${r.suspendResumeSpeedupViaApi})`,
    );
  }
  if (parts.has("migrate")) {
    r.migration = await benchMigrationStream(ROUNDS, 16, backend);
    r.downtimeRatioOverXl = r.migration.ratio.downtimeOursOverXl;
    const m = r.migration.median;
    console.log(
      `[${backend}] migration downtime: ours ${m.oursDowntimeMs} ms, xl ${m.xlDowntimeMs} ms: ratio ${r.downtimeRatioOverXl}`,
    );
  }
  byBackend[backend] = r;
  plots(backend, r);
}
if (envBefore === undefined) delete process.env.SUPERFLUID_HYPERVISOR;
else process.env.SUPERFLUID_HYPERVISOR = envBefore;

// Live pre-copy is a property of the guest type (PVH on HAP), not of the backend: one run.
// A failure here is reported in the results, not lost with the other parts' figures.
const liveRun = parts.has("live")
  ? await benchLiveMigration(128).catch((err: unknown) => ({ error: String(err) }))
  : undefined;
const live = liveRun && !("error" in liveRun) ? liveRun : undefined;
if (live) writeLivePlot(live);
const faults = parts.has("faults") ? faultPoints() : undefined;
// The default backend's figures, or none when BENCH_BACKENDS left it out (never another backend's).
const headline = byBackend[DEFAULT_HYPERVISOR] ?? {};
const result = {
  what: "suspend/resume and stop-and-copy migration of hello, ours against xl; headline figures for the shim's default backend, every backend's under byBackend",
  loadAvgAtStart,
  forced: args.force && loadAvgAtStart > MAX_LOAD,
  defaultBackend: DEFAULT_HYPERVISOR,
  suspendResumeSpeedup: headline.suspendResumeSpeedup ?? null,
  downtimeRatioOverXl: headline.downtimeRatioOverXl ?? null,
  lean: {
    suspendResumeSpeedup: byBackend.lean?.suspendResumeSpeedup ?? null,
    downtimeRatioOverXl: byBackend.lean?.downtimeRatioOverXl ?? null,
  },
  faultPointsTested: faults && "faultPointsTested" in faults ? faults.faultPointsTested : null,
  faults: faults ?? null,
  byBackend,
};
// The live part has its own file, so that it can run alone (BENCH_PARTS=live) without touching
// the other parts' figures; migrate.json is written when any of those ran.
if (liveRun) {
  const liveOut = {
    what: "live (pre-copy) vs stop-and-copy migration of the http guest (PVH) under a steady client",
    loadAvgAtStart,
    forced: args.force && loadAvgAtStart > MAX_LOAD,
    liveDowntimeMs: live?.liveDowntimeMs ?? null,
    stopAndCopyDowntimeMs: live?.stopAndCopyDowntimeMs ?? null,
    liveOverStopAndCopy: live?.liveOverStopAndCopy ?? null,
    failedRequestsLive: live?.failedRequestsLive ?? null,
    failedRequestsStopAndCopy: live?.failedRequestsStopAndCopy ?? null,
    run: live ? { ...live, samples: undefined } : liveRun,
  };
  writeFileSync(join(out, "migrate-live.json"), JSON.stringify(liveOut, null, 2) + "\n");
  console.log(
    `live ${liveOut.liveDowntimeMs} ms vs stop-and-copy ${liveOut.stopAndCopyDowntimeMs} ms downtime: liveOverStopAndCopy ${liveOut.liveOverStopAndCopy}; failed requests ${liveOut.failedRequestsLive} / ${liveOut.failedRequestsStopAndCopy}; wrote ${join(out, "migrate-live.json")}`,
  );
}
if (parts.has("suspend") || parts.has("migrate") || parts.has("faults")) {
  writeFileSync(join(out, "migrate.json"), JSON.stringify(result, null, 2) + "\n");
  console.log(
    `suspendResumeSpeedup ${result.suspendResumeSpeedup}, downtimeRatioOverXl ${result.downtimeRatioOverXl} (${DEFAULT_HYPERVISOR}); lean ${result.lean.suspendResumeSpeedup}, ${result.lean.downtimeRatioOverXl}; faultPointsTested ${result.faultPointsTested}; load at start ${loadAvgAtStart}; wrote ${join(out, "migrate.json")}`,
  );
}

function writeLivePlot(l: NonNullable<typeof live>): void {
  writeFileSync(
    join(out, "migrate-live.svg"),
    plotSvg(
      `http guest (PVH, ${l.memoryMiB} MiB) moved while a client requests it: live ${l.liveDowntimeMs} ms vs stop-and-copy ${l.stopAndCopyDowntimeMs} ms downtime`,
      "seconds since the move began",
      "request answered (1) or failed (0)",
      [
        {
          name: `live (${l.failedRequestsLive} failed)`,
          color: "#1f77b4",
          points: (l.samples.live ?? []).map(([t, ok]) => [t / 1000, ok]),
        },
        {
          name: `stop-and-copy (${l.failedRequestsStopAndCopy} failed)`,
          color: "#d62728",
          points: (l.samples["stop-and-copy"] ?? []).map(([t, ok]) => [t / 1000, ok * 0.95]),
        },
      ],
    ),
  );
}

function plots(backend: string, r: BackendResult): void {
  const suffix = backend === DEFAULT_HYPERVISOR ? "" : `-${backend}`;
  if (r.suspend) {
    const s = r.suspend;
    writeFileSync(
      join(out, `migrate-suspend${suffix}.svg`),
      plotSvg(`suspend + resume of hello (${backend}), per round (emulated Xen)`, "round", "ms", [
        {
          name: `node agent, API to condition (median ${s.median.agentTotalMs} ms)`,
          color: "#1f77b4",
          points: s.agent.totalMs.map((v, i) => [i + 1, v]),
        },
        {
          name: `agent's own save + restore`,
          color: "#2ca02c",
          points: s.agentInternal.saveMs.map((v, i) => [i + 1, v + (s.agentInternal.restoreMs[i] ?? 0)]),
        },
        {
          name: `xl save + xl restore (median ${s.median.xlTotalMs} ms)`,
          color: "#d62728",
          points: s.xl.totalMs.map((v, i) => [i + 1, v]),
        },
      ]),
    );
  }
  if (r.migration) {
    const m = r.migration;
    writeFileSync(
      join(out, `migrate${suffix}.svg`),
      plotSvg(
        `hello moved between two emulated Xen nodes (${m.memoryMiB} MiB, ${backend}), per round`,
        "round",
        "ms",
        [
          {
            name: `ours, downtime (median ${m.median.oursDowntimeMs} ms)`,
            color: "#1f77b4",
            points: m.ours.downtimeMs.map((v, i) => [i + 1, v]),
          },
          {
            name: `xl save+copy+restore, downtime (median ${m.median.xlDowntimeMs} ms)`,
            color: "#d62728",
            points: m.xl.downtimeMs.map((v, i) => [i + 1, v]),
          },
        ],
      ),
    );
  }
}
