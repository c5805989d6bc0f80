// The operator as a library: the controllers, leader election and the health/metrics endpoint,
// started and stopped as one. main.ts wraps it in a process; tests run it in-process too.
import type { KubeCredentials } from "../../lib/kube/kubeconfig.js";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { hostname } from "node:os";
import { logger } from "../../lib/log.js";
import { Manager } from "../../lib/kube/manager.js";
import { KubeClient } from "../../lib/kube/client.js";
import { FIELD_MANAGER } from "../../api/index.js";
import { LeaderElector } from "./leader.js";
import { metricsAllowed, OperatorMetrics } from "./metrics.js";
import { MigrationController } from "./migration-controller.js";
import { UnikernelVMController } from "./unikernelvm-controller.js";
import type { ResourceModel } from "./desired.js";
import type { ImageDefaults } from "./image-defaults.js";

const log = logger("operator");

export interface OperatorOptions {
  kubeConfig: KubeCredentials;
  /** Watch one namespace (undefined: all namespaces). */
  namespace?: string;
  /** Port for /healthz, /readyz and /metrics; 0 picks a free one, undefined serves none. */
  httpPort?: number;
  httpHost?: string;
  /**
   * Serve /metrics to clients on any address. Off by default: metrics name every VM and namespace,
   * so only loopback clients (a scraper or an authorizing proxy in the same pod) get them, and the
   * kubelet's probes still reach /healthz and /readyz on the pod's address.
   */
  metricsFromAnyAddress?: boolean;
  /** Lease for leader election; undefined runs without (a single replica, or tests). */
  leaderElection?: {
    namespace: string;
    name: string;
    identity?: string;
    leaseDurationSeconds?: number;
    renewDeadlineMs?: number;
    retryPeriodMs?: number;
  };
  workers?: number;
  /** How VM pods request CPU and memory (desired.ts). */
  resources?: ResourceModel;
  /** Reads the default memory of images for VMs that name none (image-defaults.ts). */
  imageDefaults?: ImageDefaults;
  /** Client-side rate limit of API requests (client-go's QPS and burst); undefined: 100 and 200. */
  kubeApiQps?: number;
  kubeApiBurst?: number;
  /** Called when leadership is lost after being held: the process should exit. */
  onLostLeadership?: () => void;
}

export interface RunningOperator {
  readonly port?: number;
  readonly metrics: OperatorMetrics;
  readonly manager: Manager;
  readonly vms: UnikernelVMController;
  readonly migrations: MigrationController;
  /** Resolves once this replica leads and its caches are synced. */
  readonly leading: Promise<void>;
  stop(): Promise<void>;
}

export async function startOperator(opts: OperatorOptions): Promise<RunningOperator> {
  const manager = new Manager({
    kubeConfig: opts.kubeConfig,
    component: FIELD_MANAGER,
    qps: opts.kubeApiQps ?? 100,
    burst: opts.kubeApiBurst ?? 200,
  });
  const { client, events } = manager;
  const metrics = new OperatorMetrics(opts.httpPort !== undefined);
  client.requests.onRequest((verb, resource) => metrics.apiRequests.inc({ verb, resource }));
  const vms = new UnikernelVMController({
    manager,
    metrics,
    namespace: opts.namespace,
    workers: opts.workers,
    ...(opts.resources ? { resources: opts.resources } : {}),
    ...(opts.imageDefaults ? { imageDefaults: opts.imageDefaults } : {}),
  });
  const migrations = new MigrationController(
    { client, events, metrics, ...(opts.resources ? { resources: opts.resources } : {}) },
    {
      vms: vms.vms,
      pods: vms.pods,
      nodes: vms.nodes,
      migrations: vms.migrations,
    },
  );
  let controllersStarted = false;
  let stopping = false;

  let server: Server | undefined;
  if (opts.httpPort !== undefined) {
    server = createServer((req, res) => {
      const url = req.url ?? "/";
      if (url === "/healthz") {
        res.writeHead(200).end("ok");
      } else if (url === "/readyz") {
        // A standby is ready (it serves its purpose by waiting); a leader once its caches are synced.
        const ready = !stopping && (!controllersStarted || vms.synced);
        res.writeHead(ready ? 200 : 503).end(ready ? "ok" : "caches not synced");
      } else if (
        url === "/metrics" &&
        !metricsAllowed(req.socket.remoteAddress, opts.metricsFromAnyAddress)
      ) {
        res
          .writeHead(403)
          .end("metrics are served to loopback clients only (--metrics-from-any-address=true)\n");
      } else if (url === "/metrics") {
        metrics.queueDepth.set({ controller: "unikernelvm" }, vms.queue.depth);
        metrics.queueDepth.set({ controller: "migration" }, migrations.queue.depth);
        for (const [phase, n] of Object.entries(vms.phaseCounts())) metrics.vmsByPhase.set({ phase }, n);
        metrics.registry
          .metrics()
          .then((body) => res.writeHead(200, { "Content-Type": metrics.registry.contentType }).end(body))
          .catch((err: unknown) => res.writeHead(500).end(String(err)));
      } else {
        res.writeHead(404).end("not found");
      }
    });
    await new Promise<void>((resolve, reject) => {
      server!.once("error", reject);
      server!.listen(opts.httpPort, opts.httpHost ?? "0.0.0.0", () => resolve());
    });
  }

  const startControllers = async () => {
    controllersStarted = true;
    await vms.start();
    migrations.start();
    log.info("controllers started", { namespace: opts.namespace ?? "(all)" });
  };

  let elector: LeaderElector | undefined;
  let electionClient: KubeClient | undefined;
  let leading: Promise<void>;
  if (opts.leaderElection) {
    const le = opts.leaderElection;
    // Its own client: lease renewals must not wait behind the controllers' requests in the rate limit.
    electionClient = new KubeClient(opts.kubeConfig);
    elector = new LeaderElector(electionClient, {
      ...le,
      identity: le.identity ?? `${hostname()}_${process.pid}`,
    });
    leading = new Promise<void>((resolve, reject) => {
      elector!.run(
        () => {
          metrics.leader.set(1);
          startControllers().then(resolve, reject);
        },
        () => {
          metrics.leader.set(0);
          // Another replica may lead now: the process exits at once (main.ts); embedded, stop reconciling.
          opts.onLostLeadership?.();
          void Promise.all([vms.stop(), migrations.stop()]);
        },
      );
    });
  } else {
    leading = startControllers();
  }
  leading.catch((err: unknown) =>
    log.error("controllers failed to start", { error: err instanceof Error ? err.message : String(err) }),
  );

  return {
    port: server ? (server.address() as AddressInfo).port : undefined,
    metrics,
    manager,
    vms,
    migrations,
    leading,
    async stop() {
      stopping = true;
      // Finish the reconciles in flight, then let the standby in.
      await migrations.stop();
      await vms.stop();
      await elector?.release();
      electionClient?.close();
      await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
      server?.closeAllConnections();
      await manager.stop();
      log.info("stopped");
    },
  };
}
