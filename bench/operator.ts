// `npm run bench:operator`: N UnikernelVMs becoming N pods (and N statuses) through our operator,
// against kube-controller-manager's ReplicaSet controller making N pods from one ReplicaSet, on the
// same real apiserver in one run, at each N of --counts (default 1,000 and 10,000). Both controllers
// run as their own processes with the same client rate limit, both make one object and then a warm-up
// burst of --warmup objects before the clock starts (a JIT-compiled operator's first burst runs on
// unoptimized code: its time against kcm's is kept as warmupRatio), every
// side's pods are counted by one metadata-only watch (pod-counter.ts); each
// side's RSS (peak) and CPU seconds, and the apiserver's and etcd's CPU seconds over that side's run
// (what each controller costs the control plane), are read from /proc, and the operator's API requests
// by verb and resource from its own client metrics. Two runs with no operator frame its figures: the
// same N creates alone (createVMsAloneMs: the apiserver's CR path by itself), and the same VMs with
// their pods made by a plain client (floorMs, floorRatio: a UnikernelVM and its pod with no controller
// at all). Writes --out (bench/results/operator.json) and an SVG beside it; refuses to write when the
// 1-minute load average at start is 1.5 or more, unless --force.
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { UNIKERNELVM_PLURAL, type UnikernelVM } from "../api/index.js";
import { type ControlPlane, startControlPlane } from "../e2e/harness/control-plane.js";
import { applyRuntimeClass } from "../e2e/harness/runtime-class.js";
import { freePort, waitFor } from "../lib/net.js";
import { REPO_ROOT } from "../lib/paths.js";
import { managedTempDir, releaseTempDir, startProcess } from "../lib/process.js";
import { desiredPod } from "../operator/src/desired.js";
import { KubeClient, paths } from "../lib/kube/client.js";
import { watchResource } from "../lib/kube/informers.js";
import { podCounter, type PodCounter } from "./pod-counter.js";
import { controlPlaneMeter, ProcessMeter } from "./operator-meters.js";
import { inBatches, loadAvgOrExit, machineFacts, runMain, userVm } from "./apiserver-bench.js";
import { plotSvg, type Series } from "./operator-plot.js";

const { values } = parseArgs({
  options: {
    counts: { type: "string", default: "1000,10000" },
    workers: { type: "string", default: "64" },
    concurrency: { type: "string", default: "32" },
    qps: { type: "string", default: "1000" },
    out: { type: "string", default: join(REPO_ROOT, "bench", "results", "operator.json") },
    force: { type: "boolean", default: false },
    /** Rounds at counts up to 2,000 (one at larger counts); the ratio is their median. */
    rounds: { type: "string", default: "5" },
    /**
     * Objects each controller makes before its timed burst (a ReplicaSet of this many pods; this
     * many UnikernelVMs). A JIT-compiled operator's first burst runs on unoptimized code; kcm is
     * compiled ahead of time. The warm-up's own time is kept (warmupRatio): a fresh operator's pace.
     */
    warmup: { type: "string", default: "500" },
    "keep-logs": { type: "boolean", default: false },
    /** Writes the operator's V8 CPU profile here (for finding where its CPU goes; figures are then not comparable). */
    "cpu-prof-dir": { type: "string" },
  },
});
const COUNTS = values.counts.split(",").map(Number);
const WORKERS = Number(values.workers);
const CONCURRENCY = Number(values.concurrency);
const QPS = Number(values.qps);
const ROUNDS = Number(values.rounds);
const WARMUP = Number(values.warmup);
const roundsAt = (n: number) => (n <= 2000 ? ROUNDS : 1);
if (![...COUNTS, WORKERS, CONCURRENCY, QPS, ROUNDS, WARMUP].every((n) => Number.isInteger(n) && n >= 1)) {
  console.error(
    "--counts (comma-separated), --workers, --concurrency, --qps, --rounds and --warmup must be positive integers",
  );
  process.exit(2);
}

async function prepare(client: KubeClient, ns: string): Promise<void> {
  await client.request({ method: "POST", path: "/api/v1/namespaces", body: { metadata: { name: ns } } });
  await client.request({
    method: "POST",
    path: `/api/v1/namespaces/${ns}/serviceaccounts`,
    body: { metadata: { name: "default" } },
  });
}

/** The operator's API requests by "verb resource", from its /metrics. */
async function operatorRequests(port: number): Promise<Record<string, number>> {
  const text = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text());
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^superfluid_kube_api_requests_total\{([^}]*)\} (\d+)/gm)) {
    const labels = Object.fromEntries([...m[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    out[`${labels.verb} ${labels.resource}`] = Number(m[2]);
  }
  return out;
}

/** The operator's requests once they stopped moving (2 s without one; at most 2 minutes). */
async function requestsQuiet(port: number): Promise<Record<string, number>> {
  let last = await operatorRequests(port);
  for (let quiet = 0, i = 0; quiet < 4 && i < 240; i++) {
    await new Promise((r) => setTimeout(r, 500));
    const now = await operatorRequests(port);
    quiet = JSON.stringify(now) === JSON.stringify(last) ? quiet + 1 : 0;
    last = now;
  }
  return last;
}

/** User and system CPU seconds of a process.cpuUsage() difference. */
const cpuSeconds = (u: NodeJS.CpuUsage) => Number(((u.user + u.system) / 1e6).toFixed(2));

function minus(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(a)) if (v - (b[k] ?? 0) > 0) out[k] = v - (b[k] ?? 0);
  return out;
}

interface SideResult {
  /** The warm-up's WARMUP pods, from a controller that had made one object before (its cold pace). */
  warmupPodsMs: number;
  podsMs: number;
  statusesMs: number;
  rssMiB: number;
  cpuSeconds: number;
  /** The controller's own CPU seconds until its N pods existed (on the same 2 cores as the apiserver). */
  cpuSecondsToPods: number;
  apiserverCpuSeconds: number;
  apiserverCpuSecondsToPods: number | null;
  etcdCpuSeconds: number;
  /** How often the bench's pod watch was closed by the apiserver and taken up again (pod-counter.ts). */
  podWatchResumes: number;
  samples: [number, number][];
}

/**
 * The apiserver's own cost of creating n UnikernelVMs, with no operator writing to them: the same
 * creates as the operator's run, in a namespace no controller watches, then deleted. Against the
 * operator run's createVMsMs it separates what the CRD costs from what the operator's writes
 * (pods, finalizer, status, Events) take from the same apiserver meanwhile.
 */
async function createVMsAlone(
  client: KubeClient,
  n: number,
  round: number,
): Promise<{ ms: number; apiserverCpuSeconds: number; etcdCpuSeconds: number }> {
  const ns = `bench-uvm-alone-${n}-${round}`;
  await prepare(client, ns);
  const path = paths.custom(UNIKERNELVM_PLURAL, ns);
  await client.request({ method: "POST", path, body: userVm("warmup") });
  const cpMeter = controlPlaneMeter();
  const t0 = performance.now();
  await inBatches(n, CONCURRENCY, (i) => client.request({ method: "POST", path, body: userVm(`vm-${i}`) }));
  const ms = performance.now() - t0;
  const { apiserverCpuSeconds, etcdCpuSeconds } = cpMeter.stop();
  await client.request({ method: "DELETE", path });
  return { ms: Math.round(ms), apiserverCpuSeconds, etcdCpuSeconds };
}

/**
 * The floor: what the same apiserver takes to make n UnikernelVMs and n pods when nothing watches
 * or decides: the bench's own client creates the VMs as in the operator's run, and each VM's pod
 * (the operator's pod for it) as soon as the VM is made. The operator can come near this, not under it:
 * against the ReplicaSet controller's time it shows what the CRD's writes cost by themselves.
 */
async function vmsAndPodsFloor(
  client: KubeClient,
  n: number,
  round: number,
): Promise<{ ms: number; apiserverCpuSeconds: number; clientCpuSeconds: number; podWatchResumes: number }> {
  const ns = `bench-floor-${n}-${round}`;
  await prepare(client, ns);
  const path = paths.custom(UNIKERNELVM_PLURAL, ns);
  // Each VM's pod goes out as soon as the VM is made, beside the next VM creates (as the operator's do).
  const podsMade: Promise<unknown>[] = [];
  const one = async (name: string) => {
    const vm = await client.request<UnikernelVM>({ method: "POST", path, body: userVm(name) });
    podsMade.push(client.request({ method: "POST", path: paths.pods(ns), body: desiredPod(vm) }));
  };
  // Seen as the other sides' pods are: through the same watch.
  const counter = await podCounter(client, ns);
  let ms: number;
  let apiserverCpuSeconds: number;
  let clientCpuSeconds: number;
  let podWatchResumes: number;
  try {
    await one("warmup");
    await Promise.all(podsMade.splice(0));
    await counter.reach(1);
    const cpMeter = controlPlaneMeter();
    const cpu0 = process.cpuUsage();
    counter.startSampling();
    const pods = counter.reach(n + 1);
    await inBatches(n, CONCURRENCY, (i) => one(`vm-${i}`));
    await Promise.all(podsMade);
    await pods;
    ms = counter.samples().at(-1)![0];
    clientCpuSeconds = cpuSeconds(process.cpuUsage(cpu0));
    ({ apiserverCpuSeconds } = cpMeter.stop());
    podWatchResumes = counter.resumes;
  } finally {
    counter.close();
  }
  // Gone before the operator's run, as the VMs alone are: its caches and the apiserver's hold no more.
  await client.request({
    method: "DELETE",
    path: paths.pods(ns),
    body: { apiVersion: "v1", kind: "DeleteOptions", gracePeriodSeconds: 0 },
  });
  await client.request({ method: "DELETE", path });
  return { ms: Math.round(ms), apiserverCpuSeconds, clientCpuSeconds, podWatchResumes };
}

async function runOperator(cp: ControlPlane, client: KubeClient, logs: string, n: number, round: number) {
  const ns = `bench-uvm-${n}-${round}`;
  await prepare(client, ns);
  const alone = await createVMsAlone(client, n, round);
  const createVMsAloneMs = alone.ms;
  console.log(
    `apiserver alone: ${n} UnikernelVMs created in ${createVMsAloneMs} ms (no operator; apiserver ${alone.apiserverCpuSeconds} s CPU, etcd ${alone.etcdCpuSeconds} s)`,
  );
  const floor = await vmsAndPodsFloor(client, n, round);
  console.log(
    `floor: ${n} UnikernelVMs and their ${n} pods by a plain client in ${floor.ms} ms (apiserver ${floor.apiserverCpuSeconds} s CPU, the client ${floor.clientCpuSeconds} s); the pod watch resumed ${floor.podWatchResumes} times`,
  );
  const port = await freePort();
  let counter: PodCounter | undefined;
  const op = startProcess(
    "operator",
    process.execPath,
    [
      ...(values["cpu-prof-dir"] ? ["--cpu-prof", `--cpu-prof-dir=${values["cpu-prof-dir"]}`] : []),
      join(REPO_ROOT, "dist/operator/src/main.js"),
      `--kubeconfig=${cp.kubeconfigPath}`,
      `--namespace=${ns}`,
      `--http-port=${port}`,
      "--leader-elect=false",
      `--workers=${WORKERS}`,
      `--kube-api-qps=${QPS}`,
      `--kube-api-burst=${QPS}`,
    ],
    {
      logPath: join(logs, `operator-${n}-${round}.log`),
      env: { ...process.env, LOG_LEVEL: "warn", LOG_FORMAT: "json" },
    },
  );
  try {
    const ready = async () =>
      (await fetch(`http://127.0.0.1:${port}/readyz`).then(
        (r) => r.ok,
        () => false,
      )) || undefined;
    await waitFor("operator ready", ready, 60_000, 100);
    counter = await podCounter(client, ns);
    const vmPath = paths.custom(UNIKERNELVM_PLURAL, ns);
    await client.request({ method: "POST", path: vmPath, body: userVm("first") });
    await counter.reach(1);
    const warm0 = performance.now();
    await inBatches(WARMUP, CONCURRENCY, (i) =>
      client.request({ method: "POST", path: vmPath, body: userVm(`warmup-${i}`) }),
    );
    await counter.reach(1 + WARMUP);
    const warmupPodsMs = Math.round(performance.now() - warm0);
    // The warm-up's statuses, finalizers and Events are written before the clock starts.
    await requestsQuiet(port);
    // Statuses through a watch: polling 10,000 whole VMs would load the apiserver more than the operator does.
    const withStatus = new Set<string>();
    const vms = watchResource<UnikernelVM>(undefined, client, paths.custom(UNIKERNELVM_PLURAL, ns), {
      transform: (vm) =>
        ({ ...vm, spec: { image: "" }, status: { podName: vm.status?.podName } }) as UnikernelVM,
    });
    const note = (vm: UnikernelVM) => vm.status?.podName && withStatus.add(vm.metadata.name!);
    vms.on("add", note);
    vms.on("update", note);
    const before = await operatorRequests(port);
    const meter = new ProcessMeter(op.pid);
    const cpMeter = controlPlaneMeter();
    console.log(
      `operator: ${n} UnikernelVMs -> ${n} pods (${WORKERS} workers, ${CONCURRENCY} concurrent creates)`,
    );
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    counter.startSampling();
    const pods = counter.reach(n + 1 + WARMUP);
    await inBatches(n, CONCURRENCY, (i) =>
      client.request({ method: "POST", path: vmPath, body: userVm(`vm-${i}`) }),
    );
    const createMs = performance.now() - t0;
    await pods;
    cpMeter.podsReached();
    const cpuSecondsToPods = meter.cpuSoFar();
    const userCpuSecondsToPods = cpuSeconds(process.cpuUsage(cpu0));
    const samples = counter.samples();
    const podWatchResumes = counter.resumes;
    counter.close();
    // What the operator sent while the pods were being made: what shared the apiserver with them.
    const requestsToPods = minus(await operatorRequests(port), before);
    // Watched from here, not during the pods: the ReplicaSet's side has no watcher loading the
    // apiserver then either. Its first list holds the statuses already written.
    await vms.start();
    const statusesMs = await waitFor(
      "every VM's status names its pod",
      async () => (withStatus.size >= n + 1 + WARMUP ? performance.now() - t0 : undefined),
      1_800_000,
      50,
    );
    // Events go out after the writes they tell of: count once the operator's requests stop moving.
    const after = await requestsQuiet(port);
    const usage = { ...meter.stop(), cpuSecondsToPods, ...cpMeter.stop() };
    const requests = minus(after, before);
    await vms.stop();
    const total = Object.values(requests).reduce((a, b) => a + b, 0);
    const result: SideResult & {
      createVMsMs: number;
      createVMsAloneMs: number;
      createVMsAloneApiserverCpuSeconds: number;
      floorMs: number;
      floorApiserverCpuSeconds: number;
      floorClientCpuSeconds: number;
      userCpuSecondsToPods: number;
      floorPodWatchResumes: number;
      requests: Record<string, number>;
      requestsToPods: Record<string, number>;
      requestsPerVm: number;
    } = {
      warmupPodsMs,
      podsMs: Math.round(samples.at(-1)![0]),
      statusesMs: Math.round(statusesMs),
      createVMsMs: Math.round(createMs),
      createVMsAloneMs,
      createVMsAloneApiserverCpuSeconds: alone.apiserverCpuSeconds,
      floorMs: floor.ms,
      floorApiserverCpuSeconds: floor.apiserverCpuSeconds,
      floorClientCpuSeconds: floor.clientCpuSeconds,
      userCpuSecondsToPods,
      floorPodWatchResumes: floor.podWatchResumes,
      ...usage,
      requests,
      requestsToPods,
      requestsPerVm: Number((total / n).toFixed(3)),
      podWatchResumes,
      samples,
    };
    console.log(
      `  VMs created in ${result.createVMsMs} ms (${createVMsAloneMs} ms alone), pods in ${result.podsMs} ms (the ${WARMUP} of the warm-up in ${warmupPodsMs} ms), statuses in ${result.statusesMs} ms; ` +
        `until the pods: operator ${cpuSecondsToPods} s CPU, the user ${userCpuSecondsToPods} s; ` +
        `RSS ${usage.rssMiB} MiB, CPU ${usage.cpuSeconds} s (apiserver ${usage.apiserverCpuSeconds} s, ${usage.apiserverCpuSecondsToPods} s of it until the pods; etcd ${usage.etcdCpuSeconds} s), ${result.requestsPerVm} requests/VM ${JSON.stringify(requests)}, until the pods ${JSON.stringify(requestsToPods)}; the pod watch resumed ${podWatchResumes} times`,
    );
    return result;
  } finally {
    counter?.close();
    await op.stop();
  }
}

async function runReplicaSet(
  cp: ControlPlane,
  client: KubeClient,
  n: number,
  round: number,
): Promise<SideResult> {
  const ns = `bench-rs-${n}-${round}`;
  await prepare(client, ns);
  const kcm = await cp.startControllerManager({ controllers: ["replicaset"] });
  let counter: PodCounter | undefined;
  try {
    const template = desiredPod({ ...userVm("rs"), metadata: { name: "rs", namespace: ns, uid: "none" } })!;
    const rs = (name: string, replicas: number) => ({
      apiVersion: "apps/v1",
      kind: "ReplicaSet",
      metadata: { name },
      spec: {
        replicas,
        selector: { matchLabels: { rs: name } },
        template: {
          metadata: { labels: { rs: name }, annotations: template.metadata!.annotations },
          spec: template.spec,
        },
      },
    });
    const rsPath = `/apis/apps/v1/namespaces/${ns}/replicasets`;
    counter = await podCounter(client, ns);
    await client.request({ method: "POST", path: rsPath, body: rs("first", 1) });
    await counter.reach(1);
    const warm0 = performance.now();
    await client.request({ method: "POST", path: rsPath, body: rs("warmup", WARMUP) });
    await counter.reach(1 + WARMUP);
    const warmupPodsMs = Math.round(performance.now() - warm0);
    const replicas = async (name: string) =>
      (await client.request<{ status?: { replicas?: number } }>({ method: "GET", path: `${rsPath}/${name}` }))
        .status?.replicas ?? 0;
    await waitFor(
      "the warm-up ReplicaSet's status",
      async () => (await replicas("warmup")) >= WARMUP || undefined,
      120_000,
      100,
    );
    const meter = new ProcessMeter(kcm.pid);
    const cpMeter = controlPlaneMeter();
    console.log(`kube-controller-manager: 1 ReplicaSet -> ${n} pods`);
    const t1 = performance.now();
    counter.startSampling();
    const pods = counter.reach(n + 1 + WARMUP);
    await client.request({ method: "POST", path: rsPath, body: rs("bench", n) });
    await pods;
    cpMeter.podsReached();
    const cpuSecondsToPods = meter.cpuSoFar();
    const samples = counter.samples();
    const podWatchResumes = counter.resumes;
    counter.close();
    const statusesMs = await waitFor(
      "the ReplicaSet's status counts its pods",
      async () => ((await replicas("bench")) >= n ? performance.now() - t1 : undefined),
      1_800_000,
      100,
    );
    await new Promise((r) => setTimeout(r, 2000));
    const usage = { ...meter.stop(), cpuSecondsToPods, ...cpMeter.stop() };
    const result = {
      warmupPodsMs,
      podsMs: Math.round(samples.at(-1)![0]),
      statusesMs: Math.round(statusesMs),
      ...usage,
      podWatchResumes,
      samples,
    };
    console.log(
      `  pods in ${result.podsMs} ms (the ${WARMUP} of the warm-up in ${warmupPodsMs} ms), status in ${result.statusesMs} ms; RSS ${usage.rssMiB} MiB, CPU ${usage.cpuSeconds} s (apiserver ${usage.apiserverCpuSeconds} s, ${usage.apiserverCpuSecondsToPods} s of it until the pods; etcd ${usage.etcdCpuSeconds} s); the pod watch resumed ${podWatchResumes} times`,
    );
    return result;
  } finally {
    counter?.close();
    await kcm.stop();
  }
}

/** The pods of one count go before the next, so neither side's caches hold the last round's. */
async function clear(client: KubeClient, n: number, round: number): Promise<void> {
  await client.request({
    method: "DELETE",
    path: `/apis/apps/v1/namespaces/bench-rs-${n}-${round}/replicasets`,
    body: { apiVersion: "v1", kind: "DeleteOptions", propagationPolicy: "Orphan" },
  });
  for (const ns of [`bench-rs-${n}-${round}`, `bench-uvm-${n}-${round}`, `bench-floor-${n}-${round}`])
    await client.request({
      method: "DELETE",
      path: paths.pods(ns),
      body: { apiVersion: "v1", kind: "DeleteOptions", gracePeriodSeconds: 0 },
    });
  // The round's UnikernelVMs go too, so that a later count's apiserver and etcd hold no more objects
  // than the first's. The operator is stopped: its finalizer is taken off by hand.
  for (const ns of [
    `bench-uvm-${n}-${round}`,
    `bench-uvm-alone-${n}-${round}`,
    `bench-floor-${n}-${round}`,
  ]) {
    const path = paths.custom(UNIKERNELVM_PLURAL, ns);
    await client.request({ method: "DELETE", path });
    const left = await client.request<{ items: UnikernelVM[] }>({ method: "GET", path });
    const held = left.items.filter((vm) => vm.metadata.finalizers?.length);
    await inBatches(held.length, CONCURRENCY, (i) =>
      client.request({
        method: "PATCH",
        path: `${path}/${held[i]!.metadata.name}`,
        body: { metadata: { finalizers: null } },
        contentType: "application/merge-patch+json",
      }),
    );
  }
}

async function main(): Promise<void> {
  const loadAvgAtStart = loadAvgOrExit(values.force);
  const cp = await startControlPlane();
  const client = new KubeClient(cp.kubeConfig);
  const logs = managedTempDir("sf-bench-");
  type Round = {
    operator: Awaited<ReturnType<typeof runOperator>>;
    replicaSetController: SideResult;
    ratio: number;
    floorRatio: number;
    vmsAloneRatio: number;
    warmupRatio: number;
  };
  const runs: Record<string, Round & { roundRatios: number[] }> = {};
  try {
    await applyRuntimeClass(client, "bench");
    // One Xen node object, so that both sides' pods are merely unscheduled (no scheduler runs), not node-less.
    await client.request({
      method: "POST",
      path: paths.nodes(),
      body: {
        apiVersion: "v1",
        kind: "Node",
        metadata: { name: "xen-bench", labels: { "superfluid.dev/xen": "true" } },
      },
    });
    for (const n of COUNTS) {
      const rounds: Round[] = [];
      for (let round = 1; round <= roundsAt(n); round++) {
        // The baseline first: its pod cache is cluster-wide, and must not hold the operator's pods.
        const base = await runReplicaSet(cp, client, n, round);
        const ours = await runOperator(cp, client, logs, n, round);
        const ratio = Number((ours.podsMs / base.podsMs).toFixed(3));
        const floorRatio = Number((ours.floorMs / base.podsMs).toFixed(3));
        // The user's N VM creates alone, with no pod at all, against the ReplicaSet's N pods.
        const vmsAloneRatio = Number((ours.createVMsAloneMs / base.podsMs).toFixed(3));
        // The warm-up bursts against each other: a freshly started operator against a fresh kcm.
        const warmupRatio = Number((ours.warmupPodsMs / base.warmupPodsMs).toFixed(3));
        console.log(
          `ratio at ${n}, round ${round} (operator / ReplicaSet controller, time to ${n} pods): ${ratio}; the floor's (VMs and pods by a plain client): ${floorRatio}; the user's VM creates alone: ${vmsAloneRatio}; the ${WARMUP} of the warm-up: ${warmupRatio}\n`,
        );
        rounds.push({
          operator: ours,
          replicaSetController: base,
          ratio,
          floorRatio,
          vmsAloneRatio,
          warmupRatio,
        });
        // Only between rounds; the control plane goes anyway after the last. A deletecollection of
        // 10,000 pods can outlast the client's 30 s on a loaded machine: that must not lose the figures.
        if (n !== COUNTS.at(-1) || round < roundsAt(n))
          await clear(client, n, round).catch((err: unknown) =>
            console.warn(
              `clearing the ${n} round's pods: ${err instanceof Error ? err.message : String(err)}`,
            ),
          );
      }
      // The median round stands for the count; every round's ratio is kept beside it.
      const median = [...rounds].sort((a, b) => a.ratio - b.ratio)[Math.floor(rounds.length / 2)]!;
      runs[n] = { ...median, roundRatios: rounds.map((r) => r.ratio) };
      if (rounds.length > 1)
        console.log(`ratio at ${n}: median ${median.ratio} of ${rounds.map((r) => r.ratio).join(", ")}\n`);
    }
  } finally {
    client.close();
    await cp.stop();
    if (values["keep-logs"]) console.log(`logs kept in ${logs}`);
    else releaseTempDir(logs);
  }
  const largest = runs[Math.max(...COUNTS)]!;
  const strip = <T extends { samples: unknown }>({ samples: _s, ...rest }: T) => rest;
  const result = {
    benchmark: "operator",
    ratio1000: runs[1000]?.ratio ?? null,
    ratio10000: runs[10000]?.ratio ?? null,
    floorRatio1000: runs[1000]?.floorRatio ?? null,
    floorRatio10000: runs[10000]?.floorRatio ?? null,
    vmsAloneRatio1000: runs[1000]?.vmsAloneRatio ?? null,
    vmsAloneRatio10000: runs[10000]?.vmsAloneRatio ?? null,
    warmupRatio1000: runs[1000]?.warmupRatio ?? null,
    warmupRatio10000: runs[10000]?.warmupRatio ?? null,
    requestsPerVm: largest.operator.requestsPerVm,
    operatorRssMiB10000: runs[10000]?.operator.rssMiB ?? null,
    kcmRssMiB10000: runs[10000]?.replicaSetController.rssMiB ?? null,
    loadAvgAtStart,
    runs: Object.fromEntries(
      Object.entries(runs).map(([n, r]) => [
        n,
        {
          ratio: r.ratio,
          roundRatios: r.roundRatios,
          floorRatio: r.floorRatio,
          vmsAloneRatio: r.vmsAloneRatio,
          warmupRatio: r.warmupRatio,
          operator: strip(r.operator),
          replicaSetController: strip(r.replicaSetController),
        },
      ]),
    ),
    settings: {
      operatorWorkers: WORKERS,
      createConcurrency: CONCURRENCY,
      kubeApiQpsBothSides: QPS,
      roundsUpTo2000: ROUNDS,
      warmupObjects: WARMUP,
    },
    machine: machineFacts(values.force),
    date: new Date().toISOString(),
  };
  mkdirSync(dirname(values.out), { recursive: true });
  writeFileSync(values.out, JSON.stringify(result, null, 2) + "\n");
  const palette = ["#1f77b4", "#d62728"];
  const series: Series[] = Object.entries(runs).flatMap(([n, r], i) => [
    {
      name: `operator, ${n} VMs`,
      color: palette[0]!,
      dash: i > 0,
      points: r.operator.samples.map(([t, c]) => [t / 1000, c / Number(n)]),
    },
    {
      name: `ReplicaSet controller, ${n} pods`,
      color: palette[1]!,
      dash: i > 0,
      points: r.replicaSetController.samples.map(([t, c]) => [t / 1000, c / Number(n)]),
    },
  ]);
  const svg = values.out.replace(/\.json$/, "") + ".svg";
  writeFileSync(
    svg,
    plotSvg(
      "Pods created: UnikernelVMs via the operator vs one ReplicaSet",
      "seconds",
      "fraction of N pods",
      series,
    ),
  );
  console.log(`wrote ${values.out} and ${svg}`);
}

runMain(main);
