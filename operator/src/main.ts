// The operator process: flags and environment, signals. Exit codes: 0 after SIGTERM/SIGINT, 1 on a
// start failure or a lost lease (the Deployment restarts it as a standby).
import { loadCredentials } from "../../lib/kube/kubeconfig.js";
import { parseArgs } from "node:util";
import { logger } from "../../lib/log.js";
import { DEFAULT_CPU_ALLOCATION_RATIO } from "./desired.js";
import { startOperator } from "./operator.js";
import { ImageDefaults, registryReader } from "./image-defaults.js";

const log = logger("operator");

const { values } = parseArgs({
  options: {
    kubeconfig: { type: "string", default: process.env.KUBECONFIG },
    namespace: { type: "string", default: process.env.WATCH_NAMESPACE },
    "http-port": { type: "string", default: process.env.HTTP_PORT ?? "8080" },
    // /metrics for loopback clients only unless true (a string for the same reason as leader-elect).
    "metrics-from-any-address": { type: "string", default: process.env.METRICS_FROM_ANY_ADDRESS ?? "false" },
    // A string, not a boolean: the chart passes --leader-elect=true|false, which parseArgs refuses for booleans.
    "leader-elect": { type: "string", default: process.env.LEADER_ELECT ?? "true" },
    "lease-namespace": { type: "string", default: process.env.POD_NAMESPACE },
    "lease-name": { type: "string", default: "superfluid-operator" },
    "lease-duration-seconds": { type: "string", default: "15" },
    workers: { type: "string", default: process.env.WORKERS ?? "64" },
    "kube-api-qps": { type: "string", default: process.env.KUBE_API_QPS ?? "100" },
    "kube-api-burst": { type: "string", default: process.env.KUBE_API_BURST ?? "200" },
    "cpu-allocation-ratio": {
      type: "string",
      default: process.env.CPU_ALLOCATION_RATIO ?? String(DEFAULT_CPU_ALLOCATION_RATIO),
    },
    // Registries the operator reads images' default memory from over plain HTTP (as the shim's flag).
    "plain-http-registries": {
      type: "string",
      default: process.env.PLAIN_HTTP_REGISTRIES ?? "localhost,127.0.0.1",
    },
    help: { type: "boolean", default: false },
  },
});

if (values.help) {
  process.stdout
    .write(`superfluid-operator [--kubeconfig PATH] [--namespace NS] [--http-port 8080] [--leader-elect=false]
  [--metrics-from-any-address=false]
  [--lease-namespace NS] [--lease-name NAME] [--lease-duration-seconds 15] [--workers 64]
  [--kube-api-qps 100] [--kube-api-burst 200]
  [--cpu-allocation-ratio ${DEFAULT_CPU_ALLOCATION_RATIO}]   (guest vCPUs per node CPU the scheduler counts)
  [--plain-http-registries localhost,127.0.0.1]   (where it reads images' default memory without TLS)
Without --kubeconfig: $KUBECONFIG, then the in-cluster service account.\n`);
  process.exit(0);
}

function positiveInt(flag: string, raw: string | undefined, allowZero = false): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < (allowZero ? 0 : 1)) {
    log.error(
      `--${flag} must be a ${allowZero ? "non-negative" : "positive"} integer, got ${JSON.stringify(raw)}`,
    );
    process.exit(2);
  }
  return n;
}

if (values["leader-elect"] !== "true" && values["leader-elect"] !== "false") {
  log.error(`--leader-elect must be true or false, got ${JSON.stringify(values["leader-elect"])}`);
  process.exit(2);
}
if (values["metrics-from-any-address"] !== "true" && values["metrics-from-any-address"] !== "false") {
  log.error(
    `--metrics-from-any-address must be true or false, got ${JSON.stringify(values["metrics-from-any-address"])}`,
  );
  process.exit(2);
}
const httpPort = positiveInt("http-port", values["http-port"], true);
const workers = positiveInt("workers", values.workers);
const kubeApiQps = positiveInt("kube-api-qps", values["kube-api-qps"]);
const kubeApiBurst = positiveInt("kube-api-burst", values["kube-api-burst"]);
const cpuAllocationRatio = Number(values["cpu-allocation-ratio"]);
if (!Number.isFinite(cpuAllocationRatio) || cpuAllocationRatio <= 0) {
  log.error(
    `--cpu-allocation-ratio must be a positive number, got ${JSON.stringify(values["cpu-allocation-ratio"])}`,
  );
  process.exit(2);
}
const leaseDurationSeconds = positiveInt("lease-duration-seconds", values["lease-duration-seconds"]);

// Not client-node's KubeConfig: loading that library costs the process ~70 MB (lib/kube/kubeconfig.ts).
const kc = await loadCredentials(values.kubeconfig).catch((err: unknown) => {
  log.error("no credentials", { error: err instanceof Error ? err.message : String(err) });
  process.exit(1);
});
const leaseNamespace = values["lease-namespace"] ?? values.namespace ?? kc.namespace ?? "default";

try {
  const op = await startOperator({
    kubeConfig: kc,
    namespace: values.namespace || undefined,
    httpPort,
    metricsFromAnyAddress: values["metrics-from-any-address"] === "true",
    workers,
    resources: { cpuAllocationRatio },
    imageDefaults: new ImageDefaults(
      registryReader(
        values["plain-http-registries"]!.split(",")
          .map((r) => r.trim())
          .filter(Boolean),
      ),
    ),
    kubeApiQps,
    kubeApiBurst,
    leaderElection:
      values["leader-elect"] === "true"
        ? {
            namespace: leaseNamespace,
            name: values["lease-name"]!,
            leaseDurationSeconds,
            renewDeadlineMs: (leaseDurationSeconds * 2000) / 3,
            retryPeriodMs: Math.max(500, (leaseDurationSeconds * 1000) / 7),
          }
        : undefined,
    onLostLeadership: () => process.exit(1),
  });
  log.info("serving /healthz /readyz /metrics", { port: op.port });
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info("shutting down", { signal });
    const force = setTimeout(() => process.exit(1), 20_000);
    force.unref();
    op.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));
} catch (err) {
  log.error("failed to start", { error: err instanceof Error ? err.message : String(err) });
  process.exit(1);
}
