// bench:crd-cost: what one UnikernelVM create costs the apiserver, and which parts of the CRD that
// cost comes from. On a private control plane it times N creates of the bench:operator user's VM
// under the shipped CRD and under copies without its CEL rules, without its schema defaults, and
// without both (bench/crd-variants.ts), beside N creates of that VM's pod by the same client. Each
// round runs every case once, in an order rotated per round so that the apiserver's drift over a
// run spreads evenly; the figures are each case's median over the rounds.
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { UNIKERNELVM_PLURAL, type UnikernelVM } from "../api/index.js";
import { unikernelVMCRD } from "../api/crds.js";
import { applyRuntimeClass } from "../e2e/harness/runtime-class.js";
import { startControlPlane } from "../e2e/harness/control-plane.js";
import { ApiError, KubeClient, paths } from "../lib/kube/client.js";
import { waitFor } from "../lib/net.js";
import { REPO_ROOT } from "../lib/paths.js";
import { desiredPod } from "../operator/src/desired.js";
import { CRD_VARIANTS, type CrdVariant, crdVariant } from "./crd-variants.js";
import { controlPlaneMeter } from "./operator-meters.js";
import { inBatches, loadAvgOrExit, machineFacts, runMain, userVm } from "./apiserver-bench.js";
import { plotSvg } from "./operator-plot.js";
import { median } from "./stats.js";

const { values } = parseArgs({
  options: {
    creates: { type: "string", default: "3000" },
    rounds: { type: "string", default: "5" },
    concurrency: { type: "string", default: "32" },
    out: { type: "string", default: join(REPO_ROOT, "bench", "results", "crd-cost.json") },
    force: { type: "boolean", default: false },
  },
});
const N = Number(values.creates);
const ROUNDS = Number(values.rounds);
const CONCURRENCY = Number(values.concurrency);
if (![N, ROUNDS, CONCURRENCY].every((n) => Number.isInteger(n) && n >= 1)) {
  console.error("--creates, --rounds and --concurrency must be positive integers");
  process.exit(2);
}
const WARMUP = 50;

type Case = CrdVariant | "pods";
const CASES: Case[] = ["pods", ...CRD_VARIANTS];

/**
 * Serves `variant` and waits until the apiserver enforces it: a dry-run create of a VM that only a
 * CEL rule refuses (1Mi of memory) is refused exactly when the variant has rules, and comes back
 * with spec.vcpus exactly when it has defaults.
 */
async function serve(client: KubeClient, variant: CrdVariant, ns: string): Promise<void> {
  const path = `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${unikernelVMCRD.metadata.name}`;
  const current = await client.request<Record<string, unknown>>({ method: "GET", path });
  await client.request({
    method: "PUT",
    path,
    body: { ...current, spec: crdVariant(unikernelVMCRD, variant).spec },
  });
  const rules = variant === "shipped" || variant === "noDefaults";
  const defaults = variant === "shipped" || variant === "noCelRules";
  const dryRun = (spec: Partial<UnikernelVM["spec"]>) =>
    client.request<UnikernelVM>({
      method: "POST",
      path: paths.custom(UNIKERNELVM_PLURAL, ns),
      query: { dryRun: "All" },
      body: { ...userVm("probe"), spec: { ...userVm("probe").spec, ...spec } },
    });
  const refused = (p: Promise<unknown>) =>
    p.then(
      () => false,
      (err: unknown) => {
        if (err instanceof ApiError && err.status === 422) return true;
        throw err;
      },
    );
  await waitFor(
    `the apiserver serving the ${variant} CRD`,
    async () => {
      const defaulted = (await dryRun({})).spec.vcpus !== undefined;
      const ruled = await refused(dryRun({ memory: "1Mi" }));
      return defaulted === defaults && ruled === rules ? true : undefined;
    },
    60_000,
    200,
  );
}

interface Run {
  ms: number;
  apiserverCpuMsPerCreate: number;
  etcdCpuMsPerCreate: number;
}

async function run(client: KubeClient, c: Case, round: number): Promise<Run> {
  const ns = `crd-cost-${c.toLowerCase()}-${round}`;
  await client.request({ method: "POST", path: "/api/v1/namespaces", body: { metadata: { name: ns } } });
  let path: string;
  let body: (i: number) => unknown;
  if (c === "pods") {
    await client.request({
      method: "POST",
      path: `/api/v1/namespaces/${ns}/serviceaccounts`,
      body: { metadata: { name: "default" } },
    });
    path = paths.pods(ns);
    // The operator's pod for the same VM, as bench:operator's floor POSTs it.
    body = (i) =>
      desiredPod({ ...userVm(`vm-${i}`), metadata: { name: `vm-${i}`, namespace: ns, uid: `uid-${i}` } });
  } else {
    await serve(client, c, ns);
    path = paths.custom(UNIKERNELVM_PLURAL, ns);
    body = (i) => userVm(`vm-${i}`);
  }
  for (let i = 0; i < WARMUP; i++) await client.request({ method: "POST", path, body: body(N + i) });
  // The previous case's deletion is still going through the watch caches for a moment.
  await new Promise((r) => setTimeout(r, 1000));
  const meter = controlPlaneMeter();
  const t0 = performance.now();
  await inBatches(N, CONCURRENCY, (i) => client.request({ method: "POST", path, body: body(i) }));
  const ms = Math.round(performance.now() - t0);
  const { apiserverCpuSeconds, etcdCpuSeconds } = meter.stop();
  await client.request({
    method: "DELETE",
    path,
    ...(c === "pods" ? { body: { apiVersion: "v1", kind: "DeleteOptions", gracePeriodSeconds: 0 } } : {}),
  });
  return {
    ms,
    apiserverCpuMsPerCreate: Number(((apiserverCpuSeconds * 1000) / N).toFixed(3)),
    etcdCpuMsPerCreate: Number(((etcdCpuSeconds * 1000) / N).toFixed(3)),
  };
}

async function main(): Promise<void> {
  const loadAvgAtStart = loadAvgOrExit(values.force);
  const cp = await startControlPlane();
  const client = new KubeClient(cp.kubeConfig);
  const runs = Object.fromEntries(CASES.map((c) => [c, [] as Run[]])) as Record<Case, Run[]>;
  try {
    await applyRuntimeClass(client, "bench");
    for (let round = 0; round < ROUNDS; round++) {
      const order = CASES.map((_, i) => CASES[(i + round) % CASES.length]!);
      for (const c of order) {
        const r = await run(client, c, round);
        runs[c].push(r);
        console.log(
          `round ${round + 1}, ${c}: ${N} creates in ${r.ms} ms, apiserver ${r.apiserverCpuMsPerCreate} ms CPU each`,
        );
      }
    }
  } finally {
    client.close();
    await cp.stop();
  }
  const summary = Object.fromEntries(
    CASES.map((c) => [
      c,
      {
        apiserverCpuMsPerCreate: Number(median(runs[c].map((r) => r.apiserverCpuMsPerCreate)).toFixed(3)),
        ms: Math.round(median(runs[c].map((r) => r.ms))),
        runs: runs[c],
      },
    ]),
  ) as Record<Case, { apiserverCpuMsPerCreate: number; ms: number; runs: Run[] }>;
  const shipped = summary.shipped;
  const vsShipped = (c: Case) => ({
    cpu: Number((summary[c].apiserverCpuMsPerCreate / shipped.apiserverCpuMsPerCreate).toFixed(3)),
    time: Number((summary[c].ms / shipped.ms).toFixed(3)),
  });
  const result = {
    benchmark: "crd-cost",
    /** A UnikernelVM create against a pod create, the apiserver's CPU for each (medians). */
    vmOverPodCpu: Number((shipped.apiserverCpuMsPerCreate / summary.pods.apiserverCpuMsPerCreate).toFixed(3)),
    vmOverPodTime: Number((shipped.ms / summary.pods.ms).toFixed(3)),
    /** Each variant's CPU and time per create over the shipped CRD's. */
    vsShipped: Object.fromEntries(CRD_VARIANTS.filter((v) => v !== "shipped").map((v) => [v, vsShipped(v)])),
    loadAvgAtStart,
    cases: summary,
    settings: { creates: N, rounds: ROUNDS, concurrency: CONCURRENCY, warmup: WARMUP },
    machine: machineFacts(values.force),
    date: new Date().toISOString(),
  };
  mkdirSync(dirname(values.out), { recursive: true });
  writeFileSync(values.out, JSON.stringify(result, null, 2) + "\n");
  const colors: Record<Case, string> = {
    pods: "#7f7f7f",
    shipped: "#d62728",
    noCelRules: "#1f77b4",
    noDefaults: "#2ca02c",
    neither: "#9467bd",
  };
  const svg = values.out.replace(/\.json$/, "") + ".svg";
  writeFileSync(
    svg,
    plotSvg(
      `Apiserver CPU per create: the UnikernelVM CRD and its parts (${N} creates a round)`,
      "round",
      "ms of apiserver CPU per create",
      CASES.map((c) => ({
        name: c === "pods" ? "the VM's pod" : `UnikernelVM, ${c} CRD`,
        color: colors[c],
        points: runs[c].map((r, i) => [i + 1, r.apiserverCpuMsPerCreate] as [number, number]),
      })),
    ),
  );
  console.log(
    JSON.stringify({
      vmOverPodCpu: result.vmOverPodCpu,
      vmOverPodTime: result.vmOverPodTime,
      vsShipped: result.vsShipped,
    }),
  );
  console.log(`wrote ${values.out} and ${svg}`);
}

runMain(main);
