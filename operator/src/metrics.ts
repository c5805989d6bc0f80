// The operator's Prometheus metrics, on their own registry so tests can run several operators in one process.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export class OperatorMetrics {
  readonly registry = new Registry();
  readonly reconciles = new Counter({
    name: "superfluid_reconcile_total",
    help: "Reconciles by controller and outcome (success, error, terminal).",
    labelNames: ["controller", "outcome"] as const,
    registers: [this.registry],
  });
  readonly reconcileSeconds = new Histogram({
    name: "superfluid_reconcile_duration_seconds",
    help: "Time one reconcile took.",
    labelNames: ["controller"] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly queueDepth = new Gauge({
    name: "superfluid_workqueue_depth",
    help: "Keys waiting in the work queue.",
    labelNames: ["controller"] as const,
    registers: [this.registry],
  });
  readonly vmsByPhase = new Gauge({
    name: "superfluid_unikernelvms",
    help: "UnikernelVMs by status.phase, as the operator's cache sees them.",
    labelNames: ["phase"] as const,
    registers: [this.registry],
  });
  readonly apiRequests = new Counter({
    name: "superfluid_kube_api_requests_total",
    help: "Requests this process sent to the Kubernetes API, by verb and resource (as the apiserver names them).",
    labelNames: ["verb", "resource"] as const,
    registers: [this.registry],
  });
  readonly leader = new Gauge({
    name: "superfluid_leader",
    help: "1 while this replica holds the leader lease.",
    registers: [this.registry],
  });

  constructor(defaults = false) {
    if (defaults) collectDefaultMetrics({ register: this.registry });
  }

  observe(controller: string, outcome: string, seconds: number): void {
    this.reconciles.inc({ controller, outcome });
    this.reconcileSeconds.observe({ controller }, seconds);
  }
}

/** Whether a client at `remote` may read /metrics: loopback always, others only when allowed. */
export function metricsAllowed(remote: string | undefined, fromAnyAddress = false): boolean {
  if (fromAnyAddress) return true;
  const a = (remote ?? "").replace(/^::ffff:/, "");
  return a === "::1" || /^127\.\d+\.\d+\.\d+$/.test(a);
}
