// `npm run bench:migrate`, two parts (BENCH_PARTS=suspend,migrate picks; default both):
// * suspend: suspend + resume of the `hello` VM through the node agent (runPolicy Suspended, then
//   Running, each timed from the API patch to the condition the agent writes) against `xl save` +
//   `xl restore` of a hello domain of the same kernel, memory and vif on the same emulated node, timed
//   inside dom0. Plot: bench/results/migrate-suspend.svg.
// * migrate: hello moved between two emulated nodes, our stream vs xl save + copy + restore
//   (bench/migrate-stream.ts). Plot: bench/results/migrate.svg.
// Rounds interleave ours and the baseline. Prints medians and ratios, writes bench/results/migrate.json
// (a part not run keeps its previous figures).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "../lib/paths.js";
import { EXAMPLE_IMAGES } from "../e2e/cluster/images.js";
import { KubeClient, paths } from "../lib/kube/client.js";
import { UNIKERNELVM_PLURAL, type RunPolicy, type UnikernelVM } from "../api/index.js";
import { condition, runVmPod, startAgentBed } from "../e2e/harness/agent-bed.js";
import { plotSvg } from "./operator-plot.js";
import { benchMigrationStream } from "./migrate-stream.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 6);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const round = (x: number) => Math.round(x);

const out = join(REPO_ROOT, "bench", "results");
const parts = new Set((process.env.BENCH_PARTS ?? "suspend,migrate").split(","));
mkdirSync(out, { recursive: true });
const previous = existsSync(join(out, "migrate.json"))
  ? (JSON.parse(readFileSync(join(out, "migrate.json"), "utf8")) as Record<string, unknown>)
  : {};
const save = (result: Record<string, unknown>) =>
  writeFileSync(join(out, "migrate.json"), JSON.stringify(result, null, 2) + "\n");

if (parts.has("suspend")) await benchSuspendResume();
if (parts.has("migrate")) {
  const m = await benchMigrationStream(ROUNDS);
  const current = existsSync(join(out, "migrate.json"))
    ? (JSON.parse(readFileSync(join(out, "migrate.json"), "utf8")) as Record<string, unknown>)
    : previous;
  save({ ...current, liveMigration: m });
  writeFileSync(
    join(out, "migrate.svg"),
    plotSvg(`hello moved between two emulated Xen nodes (${m.memoryMiB} MiB), per round`, "round", "ms", [
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
      {
        name: `ours, total (median ${m.median.oursTotalMs} ms)`,
        color: "#aec7e8",
        points: m.ours.totalMs.map((v, i) => [i + 1, v]),
      },
      {
        name: `xl, total (median ${m.median.xlTotalMs} ms)`,
        color: "#ff9896",
        points: m.xl.totalMs.map((v, i) => [i + 1, v]),
      },
    ]),
  );
  console.log(
    `median migration: ours downtime ${m.median.oursDowntimeMs} ms, total ${m.median.oursTotalMs} ms; xl downtime ${m.median.xlDowntimeMs} ms, total ${m.median.xlTotalMs} ms; ratios (ours/xl) downtime ${m.ratio.downtimeOursOverXl}, total ${m.ratio.totalOursOverXl}; wrote bench/results/migrate.json and migrate.svg`,
  );
}

async function benchSuspendResume(): Promise<void> {
  const bed = await startAgentBed("bench-migrate");
  try {
    const client = new KubeClient(bed.cp.kubeConfig);
    const vmPath = paths.customObject(UNIKERNELVM_PLURAL, "default", "bench");
    const vmPod = await runVmPod(bed, "bench");
    const setPolicy = (runPolicy: RunPolicy) =>
      client.request({
        method: "PATCH",
        path: vmPath,
        body: { spec: { runPolicy } },
        contentType: "application/merge-patch+json",
      });
    const until = async (want: (v: UnikernelVM) => boolean) => {
      const deadline = Date.now() + 600_000;
      for (;;) {
        const v = await client.request<UnikernelVM>({ method: "GET", path: vmPath });
        if (want(v)) return;
        if (Date.now() > deadline)
          throw new Error(`timed out; status ${JSON.stringify(v.status)}\n${bed.shim.log(30)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    await bed.sh(
      `for i in $(seq 120); do grep -q 'hello: tick 2' /var/log/pods/bench/main/0.log && exit 0; sleep 1; done; exit 1`,
      200_000,
    );
    const crDomain = (await bed.sh("xl list | awk '/^sf-/ {print $3}'")).trim();
    const memoryMiB = Number(crDomain);
    const kernel = EXAMPLE_IMAGES.find((i) => i.name === "hello")!.kernel;
    await bed.sh(
      `printf 'name="xlbase"\\ntype="pv"\\nkernel="${kernel}"\\nmemory=${memoryMiB}\\nvcpus=1\\nvif=["bridge=${bed.node.bridge},mac=00:16:3e:7f:00:01"]\\non_poweroff="destroy"\\n' >/tmp/xlbase.cfg && xl create /tmp/xlbase.cfg && sleep 3`,
    );

    const ours = { suspendMs: [] as number[], resumeMs: [] as number[] };
    const xl = { saveMs: [] as number[], restoreMs: [] as number[] };
    const agentOps = (): { save: number[]; restore: number[] } => {
      const lines = bed.shim.log(1_000_000).split("\n");
      const ms = (msg: string) =>
        lines
          .filter((l) => l.includes(`"message":"${msg}"`))
          .map((l) => (JSON.parse(l.slice(l.indexOf("{"))) as { ms: number }).ms);
      return { save: ms("domain suspended to disk"), restore: ms("domain restored") };
    };
    const viaAgent = async () => {
      const t0 = performance.now();
      await setPolicy("Suspended");
      await until((v) => condition(v, "Suspended")?.status === "True");
      const t1 = performance.now();
      await setPolicy("Running");
      await until((v) => condition(v, "Suspended")?.status === "False");
      ours.suspendMs.push(t1 - t0);
      ours.resumeMs.push(performance.now() - t1);
    };
    const viaXl = async () => {
      const out = await bed.sh(
        "s=$(date +%s%N); xl save xlbase /var/lib/superfluid/xlbase.ckpt >/dev/null 2>&1; m=$(date +%s%N); xl restore /var/lib/superfluid/xlbase.ckpt >/dev/null 2>&1; e=$(date +%s%N); rm -f /var/lib/superfluid/xlbase.ckpt; echo $s $m $e",
        600_000,
      );
      const [s, m, e] = out.split(" ").map(Number) as [number, number, number];
      xl.saveMs.push((m - s) / 1e6);
      xl.restoreMs.push((e - m) / 1e6);
    };
    for (let i = 0; i < ROUNDS; i++) {
      if (i % 2 === 0) {
        await viaAgent();
        await viaXl();
      } else {
        await viaXl();
        await viaAgent();
      }
      console.log(
        `round ${i + 1}/${ROUNDS}: agent ${round(ours.suspendMs[i]!)}+${round(ours.resumeMs[i]!)} ms, xl ${round(xl.saveMs[i]!)}+${round(xl.restoreMs[i]!)} ms`,
      );
    }
    const ticks = await bed.sh("grep -c 'hello: tick' /var/log/pods/bench/main/0.log");
    await bed.sh("xl destroy xlbase; rm -f /tmp/xlbase.cfg");
    await bed.crictl(`rmp -f ${vmPod.pod}`);
    const ops = agentOps();
    const total = (a: number[], b: number[]) => a.map((x, i) => x + b[i]!);
    const agentTotal = total(ours.suspendMs, ours.resumeMs);
    const xlTotal = total(xl.saveMs, xl.restoreMs);
    const result = {
      what: "suspend+resume of hello: node agent (runPolicy patch -> condition observed through the API) vs `xl save` + `xl restore` in dom0; same kernel, memory, one vif; same emulated node, interleaved",
      memoryMiB,
      rounds: ROUNDS,
      node: { cpus: 1, accel: "tcg" },
      helloTicksAfter: Number(ticks),
      agent: {
        suspendMs: ours.suspendMs.map(round),
        resumeMs: ours.resumeMs.map(round),
        totalMs: agentTotal.map(round),
      },
      agentInternal: {
        saveMs: ops.save,
        restoreMs: ops.restore,
        note: "the agent's own save/restore time (shim log), without the API round trips",
      },
      xl: { saveMs: xl.saveMs.map(round), restoreMs: xl.restoreMs.map(round), totalMs: xlTotal.map(round) },
      median: {
        agentSuspendMs: round(median(ours.suspendMs)),
        agentResumeMs: round(median(ours.resumeMs)),
        agentTotalMs: round(median(agentTotal)),
        agentInternalSaveMs: ops.save.length ? round(median(ops.save)) : null,
        agentInternalRestoreMs: ops.restore.length ? round(median(ops.restore)) : null,
        xlSaveMs: round(median(xl.saveMs)),
        xlRestoreMs: round(median(xl.restoreMs)),
        xlTotalMs: round(median(xlTotal)),
      },
      ratioAgentOverXl: Number((median(agentTotal) / median(xlTotal)).toFixed(3)),
    };
    save({ ...result, ...(previous.liveMigration ? { liveMigration: previous.liveMigration } : {}) });
    writeFileSync(
      join(out, "migrate-suspend.svg"),
      plotSvg("suspend + resume of hello, per round (emulated Xen)", "round", "ms", [
        {
          name: `node agent, API to condition (median ${result.median.agentTotalMs} ms)`,
          color: "#1f77b4",
          points: agentTotal.map((v, i) => [i + 1, v]),
        },
        {
          name: `xl save + xl restore (median ${result.median.xlTotalMs} ms)`,
          color: "#d62728",
          points: xlTotal.map((v, i) => [i + 1, v]),
        },
      ]),
    );
    console.log(
      `median suspend+resume: agent ${result.median.agentTotalMs} ms (${result.median.agentSuspendMs}+${result.median.agentResumeMs}; save/restore inside the agent ${result.median.agentInternalSaveMs}+${result.median.agentInternalRestoreMs}), xl save+restore ${result.median.xlTotalMs} ms (${result.median.xlSaveMs}+${result.median.xlRestoreMs}); ratio ${result.ratioAgentOverXl}; wrote bench/results/migrate.json and migrate-suspend.svg`,
    );
  } finally {
    await bed.stop();
  }
}
