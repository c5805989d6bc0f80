// `npm run bench:operator`: N UnikernelVMs becoming N Pods through our operator, against
// kube-controller-manager's ReplicaSet controller making N pods from one ReplicaSet, on the same real
// apiserver in one run. Both controllers run as their own processes, both are warmed up first (one
// object each), and pods are counted by polling every 100 ms. Writes bench/results/operator.json and .svg.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import os from "node:os";
import { parseArgs } from "node:util";
import { API_VERSION, RUNTIME_CLASS, UNIKERNELVM_PLURAL, type UnikernelVM } from "../api/index.js";
import { startControlPlane } from "../e2e/harness/control-plane.js";
import { freePort, waitFor } from "../lib/net.js";
import { REPO_ROOT } from "../lib/paths.js";
import { managedTempDir, releaseTempDir, startProcess } from "../lib/process.js";
import { desiredPod } from "../operator/src/desired.js";
import { KubeClient, paths } from "../lib/kube/client.js";
import { plotSvg, type Series } from "./operator-plot.js";

const { values } = parseArgs({
  options: {
    count: { type: "string", default: "1000" },
    workers: { type: "string", default: "16" },
    concurrency: { type: "string", default: "32" },
  },
});
const COUNT = Number(values.count);
const WORKERS = Number(values.workers);
const CONCURRENCY = Number(values.concurrency);
if (
  !Number.isInteger(COUNT) ||
  COUNT < 1 ||
  !Number.isInteger(WORKERS) ||
  WORKERS < 1 ||
  !Number.isInteger(CONCURRENCY) ||
  CONCURRENCY < 1
) {
  console.error("--count, --workers and --concurrency must be positive integers");
  process.exit(2);
}

const vmBody = (name: string): UnikernelVM => ({
  apiVersion: API_VERSION,
  kind: "UnikernelVM",
  metadata: { name },
  spec: { image: "registry.local:5000/superfluid/hello:1", memory: "8Mi" },
});

async function prepare(client: KubeClient, ns: string): Promise<void> {
  await client.request({ method: "POST", path: "/api/v1/namespaces", body: { metadata: { name: ns } } });
  await client.request({
    method: "POST",
    path: `/api/v1/namespaces/${ns}/serviceaccounts`,
    body: { metadata: { name: "default" } },
  });
}

/**
 * Polls the number of pods in a namespace every 100 ms (a list with limit=1 and its
 * remainingItemCount) until it reaches n; returns (ms since t0, count) samples. A watch would give
 * exact timestamps, but a loaded apiserver closes watchers that fall behind, and then events are lost.
 */
async function countPods(client: KubeClient, ns: string, n: number, t0: number): Promise<[number, number][]> {
  const samples: [number, number][] = [];
  for (;;) {
    const list = await client.request<{ items: unknown[]; metadata: { remainingItemCount?: number } }>({
      method: "GET",
      path: paths.pods(ns),
      query: { limit: 1 },
    });
    const count = list.items.length + (list.metadata.remainingItemCount ?? 0);
    samples.push([performance.now() - t0, count]);
    if (count >= n) return samples;
    if (performance.now() - t0 > 900_000)
      throw new Error(`only ${count} of ${n} pods in ${ns} after 15 minutes`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function inBatches(n: number, concurrency: number, fn: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

async function main(): Promise<void> {
  const loadAtStart = Number(os.loadavg()[0]!.toFixed(2));
  const cp = await startControlPlane();
  const client = new KubeClient(cp.kubeConfig);
  const logs = managedTempDir("sf-bench-");
  try {
    await client.apply(
      `/apis/node.k8s.io/v1/runtimeclasses/${RUNTIME_CLASS}`,
      {
        apiVersion: "node.k8s.io/v1",
        kind: "RuntimeClass",
        metadata: { name: RUNTIME_CLASS },
        handler: RUNTIME_CLASS,
      },
      "bench",
    );
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
    await prepare(client, "bench-uvm");
    await prepare(client, "bench-rs");

    // Ours: the operator process, as the chart runs it (leader election off: one replica).
    const port = await freePort();
    const op = startProcess(
      "operator",
      process.execPath,
      [
        join(REPO_ROOT, "dist/operator/src/main.js"),
        `--kubeconfig=${cp.kubeconfigPath}`,
        "--namespace=bench-uvm",
        `--http-port=${port}`,
        "--leader-elect=false",
        `--workers=${WORKERS}`,
      ],
      {
        logPath: join(logs, "operator.log"),
        env: { ...process.env, LOG_LEVEL: "warn", LOG_FORMAT: "json" },
      },
    );
    await waitFor(
      "operator ready",
      async () =>
        (await fetch(`http://127.0.0.1:${port}/readyz`).then(
          (r) => r.ok,
          () => false,
        )) || undefined,
      60_000,
      100,
    );
    await client.request({
      method: "POST",
      path: paths.custom(UNIKERNELVM_PLURAL, "bench-uvm"),
      body: vmBody("warmup"),
    });
    await countPods(client, "bench-uvm", 1, performance.now());

    console.log(
      `operator: ${COUNT} UnikernelVMs -> ${COUNT} pods (${WORKERS} workers, ${CONCURRENCY} concurrent creates)`,
    );
    const t0 = performance.now();
    const ours = countPods(client, "bench-uvm", COUNT + 1, t0);
    let createdAt = 0;
    await inBatches(COUNT, CONCURRENCY, async (i) =>
      client.request({
        method: "POST",
        path: paths.custom(UNIKERNELVM_PLURAL, "bench-uvm"),
        body: vmBody(`vm-${i}`),
      }),
    );
    createdAt = performance.now() - t0;
    // Counts include the warm-up pod.
    const oursSamples = (await ours).map(([t, n]) => [t, Math.max(0, n - 1)] as [number, number]);
    const oursMs = oursSamples[oursSamples.length - 1]![0];
    const statusMs = await waitFor(
      "every VM's status names its pod",
      async () => {
        const list = await client.request<{ items: UnikernelVM[] }>({
          method: "GET",
          path: paths.custom(UNIKERNELVM_PLURAL, "bench-uvm"),
        });
        return list.items.filter((v) => v.status?.podName).length >= COUNT + 1
          ? performance.now() - t0
          : undefined;
      },
      600_000,
      250,
    );
    await op.stop();
    console.log(
      `  VMs created in ${createdAt.toFixed(0)} ms, ${COUNT} pods in ${oursMs.toFixed(0)} ms, all statuses in ${statusMs.toFixed(0)} ms`,
    );

    // Baseline: kube-controller-manager's ReplicaSet controller, same pod template.
    const kcm = await cp.startControllerManager({ controllers: ["replicaset"] });
    const template = desiredPod({
      ...vmBody("rs"),
      metadata: { name: "rs", namespace: "bench-rs", uid: "none" },
    })!;
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
    await client.request({
      method: "POST",
      path: "/apis/apps/v1/namespaces/bench-rs/replicasets",
      body: rs("warmup", 1),
    });
    await countPods(client, "bench-rs", 1, performance.now());
    console.log(`kube-controller-manager: 1 ReplicaSet -> ${COUNT} pods`);
    const t1 = performance.now();
    const base = countPods(client, "bench-rs", COUNT + 1, t1);
    await client.request({
      method: "POST",
      path: "/apis/apps/v1/namespaces/bench-rs/replicasets",
      body: rs("bench", COUNT),
    });
    const baseSamples = (await base).map(([t, n]) => [t, Math.max(0, n - 1)] as [number, number]);
    const baseMs = baseSamples[baseSamples.length - 1]![0];
    await kcm.stop();
    console.log(`  ${COUNT} pods in ${baseMs.toFixed(0)} ms`);

    const ratio = oursMs / baseMs;
    console.log(
      `\nratio (operator / ReplicaSet controller): ${ratio.toFixed(2)} (${ratio < 1 ? "faster" : "slower"})`,
    );
    const result = {
      benchmark: "operator",
      count: COUNT,
      operatorWorkers: WORKERS,
      createConcurrency: CONCURRENCY,
      operator: {
        podsMs: Math.round(oursMs),
        createVMsMs: Math.round(createdAt),
        allStatusesMs: Math.round(statusMs),
      },
      replicaSetController: { podsMs: Math.round(baseMs) },
      ratio: Number(ratio.toFixed(3)),
      machine: {
        cpus: os.cpus().length,
        node: process.version,
        // The apiserver shares the CPUs with everything else: the load says how much it had.
        loadAverage1mAtStart: loadAtStart,
        loadAverage1mAtEnd: Number(os.loadavg()[0]!.toFixed(2)),
      },
      date: new Date().toISOString(),
    };
    const out = join(REPO_ROOT, "bench", "results");
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, "operator.json"), JSON.stringify(result, null, 2) + "\n");
    const series: Series[] = [
      {
        name: `superfluid operator (${WORKERS} workers)`,
        color: "#1f77b4",
        points: oursSamples.map(([t, n]) => [t / 1000, n]),
      },
      {
        name: "kube-controller-manager ReplicaSet",
        color: "#d62728",
        points: baseSamples.map(([t, n]) => [t / 1000, n]),
      },
    ];
    writeFileSync(
      join(out, "operator.svg"),
      plotSvg(
        `${COUNT} pods: UnikernelVMs via the operator vs one ReplicaSet`,
        "seconds",
        "pods created",
        series,
      ),
    );
    console.log(`wrote bench/results/operator.json and operator.svg`);
  } finally {
    client.close();
    await cp.stop();
    releaseTempDir(logs);
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err instanceof Error ? err.stack : String(err));
    process.exit(1);
  },
);
