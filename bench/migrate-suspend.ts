// The suspend half of `npm run bench:migrate`: suspend + resume of the `hello` VM through the node
// agent (runPolicy Suspended, then Running, each timed from the API patch to the condition the agent
// writes; and the agent's own save/restore time from its log) against `xl save` + `xl restore` of a
// hello domain of the same kernel, memory and vif on the same emulated node, timed inside dom0.
// Rounds interleave ours and xl. The shim's backend is SUPERFLUID_HYPERVISOR's (the caller sets it).
import { KubeClient, paths } from "../lib/kube/client.js";
import { UNIKERNELVM_PLURAL, type RunPolicy, type UnikernelVM } from "../api/index.js";
import { EXAMPLE_IMAGES } from "../e2e/cluster/images.js";
import { condition, runVmPod, startAgentBed } from "../e2e/harness/agent-bed.js";
import { median } from "./stats.js";

const round = (x: number) => Math.round(x);

export interface SuspendBenchResult {
  backend: string;
  memoryMiB: number;
  rounds: number;
  agent: { suspendMs: number[]; resumeMs: number[]; totalMs: number[] };
  agentInternal: { saveMs: number[]; restoreMs: number[] };
  xl: { saveMs: number[]; restoreMs: number[]; totalMs: number[] };
  median: {
    agentTotalMs: number;
    agentInternalSaveMs: number | null;
    agentInternalRestoreMs: number | null;
    xlSaveMs: number;
    xlRestoreMs: number;
    xlTotalMs: number;
  } & Record<string, number | null>;
  [k: string]: unknown;
}

export async function benchSuspendResume(rounds: number, backend: string): Promise<SuspendBenchResult> {
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
    type Logged = { ms: number; phases?: Record<string, number> } & Record<string, unknown>;
    const agentOps = () => {
      const lines = bed.shim.log(1_000_000).split("\n");
      const logged = (msg: string) =>
        lines
          .filter((l) => l.includes(`"message":"${msg}"`))
          .map((l) => JSON.parse(l.slice(l.indexOf("{"))) as Logged);
      const pick = (l: Logged, keys: string[]) => Object.fromEntries(keys.map((k) => [k, l[k]]));
      const saves = logged("domain suspended to disk");
      const restores = logged("domain restored");
      return {
        save: saves.map((l) => l.ms),
        restore: restores.map((l) => l.ms),
        // where the agent's time went, and the backend's own phases (lean: in-process save/restore)
        phases: {
          save: saves.map((l) => l.phases),
          restore: restores.map((l) => l.phases),
          backendSave: logged("domain saved in-process").map((l) =>
            pick(l, ["ms", "suspendMs", "suspendedAtMs", "filterCpuMs"]),
          ),
          backendRestore: logged("domain restored in-process").map((l) =>
            pick(l, ["ms", "beginMs", "betweenMs", "fillXcMs", "filterCpuMs", "fillXsMs"]),
          ),
        },
      };
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
    for (let i = 0; i < rounds; i++) {
      if (i % 2 === 0) {
        await viaAgent();
        await viaXl();
      } else {
        await viaXl();
        await viaAgent();
      }
      console.log(
        `round ${i + 1}/${rounds}: agent ${round(ours.suspendMs[i]!)}+${round(ours.resumeMs[i]!)} ms, xl ${round(xl.saveMs[i]!)}+${round(xl.restoreMs[i]!)} ms`,
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
      backend,
      what: "suspend+resume of hello: node agent (runPolicy patch -> condition observed through the API) vs `xl save` + `xl restore` in dom0; same kernel, memory, one vif; same emulated node, interleaved",
      memoryMiB,
      rounds: rounds,
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
        phases: ops.phases,
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
    return result;
  } finally {
    await bed.stop();
  }
}
