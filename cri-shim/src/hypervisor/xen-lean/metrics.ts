// The lean backend's Prometheus metrics, on their own registry (the shim serves it with --metrics-address).
import { Counter, Gauge, Histogram, Registry } from "prom-client";

const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class LeanMetrics {
  readonly registry = new Registry();
  readonly poolShells = new Gauge({
    name: "superfluid_shim_pool_shells",
    help: "Pre-built shells ready in the pool, by shape.",
    labelNames: ["shape"] as const,
    registers: [this.registry],
  });
  readonly createSeconds = new Histogram({
    name: "superfluid_shim_domain_create_seconds",
    help: "createPaused: kernel loaded, vifs attached, domain paused; by path (warm: from a shell, cold).",
    labelNames: ["path"] as const,
    buckets: BUCKETS,
    registers: [this.registry],
  });
  readonly destroySeconds = new Histogram({
    name: "superfluid_shim_domain_destroy_seconds",
    help: "Domain destroy, XenStore nodes removed.",
    buckets: BUCKETS,
    registers: [this.registry],
  });
  readonly coldBuilds = new Counter({
    name: "superfluid_shim_cold_builds_total",
    help: "Creates that found no shell of their shape and built one on the request path.",
    registers: [this.registry],
  });
  readonly remnants = new Counter({
    name: "superfluid_shim_domain_remnants_total",
    help: "What late writers put back after a destroy: directories removed again, domids given up on.",
    labelNames: ["outcome"] as const,
    registers: [this.registry],
  });

  setDepths(depths: Map<string, number>): void {
    this.poolShells.reset();
    for (const [shape, n] of depths) this.poolShells.set({ shape }, n);
  }
}
