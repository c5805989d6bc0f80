// Leader election on a coordination.k8s.io/v1 Lease, the same protocol as client-go's leaderelection:
// take the lease when it is free or expired, renew it every retry period, give up leadership when a
// renewal has not succeeded within the renew deadline (the process then exits, so that two replicas
// never reconcile at once), release it on a clean shutdown so the standby takes over at once.
import { logger } from "../../lib/log.js";
import { isConflict, isNotFound, type KubeClient, paths } from "../../lib/kube/client.js";

const log = logger("leader");

export interface LeaseOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationSeconds?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
}

interface Lease {
  apiVersion: "coordination.k8s.io/v1";
  kind: "Lease";
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec: {
    holderIdentity?: string | null;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

/** metav1.MicroTime: RFC 3339 with microseconds. */
const microTime = (d: Date) => d.toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");

export class LeaderElector {
  private timer?: NodeJS.Timeout;
  private leading = false;
  private lastRenew = 0;
  private stopped = false;
  private readonly duration: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;

  constructor(
    private readonly client: KubeClient,
    private readonly opts: LeaseOptions,
  ) {
    this.duration = opts.leaseDurationSeconds ?? 15;
    this.renewDeadlineMs = opts.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = opts.retryPeriodMs ?? 2_000;
  }

  get isLeader(): boolean {
    return this.leading;
  }

  /** Calls onStartedLeading once the lease is ours and onStoppedLeading if it is lost. */
  run(onStartedLeading: () => void, onStoppedLeading: () => void): void {
    const tick = async () => {
      if (this.stopped) return;
      let ok = false;
      try {
        ok = await this.tryAcquireOrRenew();
      } catch (err) {
        log.warn("lease update failed", { error: err instanceof Error ? err.message : String(err) });
      }
      if (this.stopped) return;
      const now = Date.now();
      if (ok) {
        this.lastRenew = now;
        if (!this.leading) {
          this.leading = true;
          log.info("became leader", {
            lease: `${this.opts.namespace}/${this.opts.name}`,
            identity: this.opts.identity,
          });
          onStartedLeading();
        }
      } else if (this.leading && now - this.lastRenew > this.renewDeadlineMs) {
        this.leading = false;
        log.error("lost the lease", { lease: `${this.opts.namespace}/${this.opts.name}` });
        onStoppedLeading();
        return;
      }
      this.timer = setTimeout(() => void tick(), this.retryPeriodMs);
    };
    void tick();
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const { namespace, name, identity } = this.opts;
    const now = new Date();
    let lease: Lease;
    try {
      lease = await this.client.request<Lease>({ method: "GET", path: paths.lease(namespace, name) });
    } catch (err) {
      if (!isNotFound(err)) throw err;
      const fresh: Lease = {
        apiVersion: "coordination.k8s.io/v1",
        kind: "Lease",
        metadata: { name, namespace },
        spec: {
          holderIdentity: identity,
          leaseDurationSeconds: this.duration,
          acquireTime: microTime(now),
          renewTime: microTime(now),
          leaseTransitions: 0,
        },
      };
      try {
        await this.client.request({ method: "POST", path: paths.leases(namespace), body: fresh });
        return true;
      } catch (e) {
        if (isConflict(e)) return false;
        throw e;
      }
    }
    const holder = lease.spec.holderIdentity ?? "";
    const renewed = lease.spec.renewTime ? Date.parse(lease.spec.renewTime) : 0;
    const expired = renewed + (lease.spec.leaseDurationSeconds ?? this.duration) * 1000 < now.getTime();
    if (holder !== identity && holder !== "" && !expired) return false;
    const spec: Lease["spec"] = {
      ...lease.spec,
      holderIdentity: identity,
      leaseDurationSeconds: this.duration,
      renewTime: microTime(now),
    };
    if (holder !== identity) {
      spec.acquireTime = microTime(now);
      spec.leaseTransitions = (lease.spec.leaseTransitions ?? 0) + 1;
    }
    try {
      // PUT with the resourceVersion we read: if another replica wrote in between, we lose this round.
      await this.client.request({
        method: "PUT",
        path: paths.lease(namespace, name),
        body: { ...lease, spec },
      });
      return true;
    } catch (e) {
      if (isConflict(e)) return false;
      throw e;
    }
  }

  /** Stops renewing; if we lead, hands the lease back so a standby need not wait for it to expire. */
  async release(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (!this.leading) return;
    this.leading = false;
    const { namespace, name, identity } = this.opts;
    try {
      const lease = await this.client.request<Lease>({ method: "GET", path: paths.lease(namespace, name) });
      if (lease.spec.holderIdentity !== identity) return;
      await this.client.request({
        method: "PUT",
        path: paths.lease(namespace, name),
        body: {
          ...lease,
          spec: {
            ...lease.spec,
            holderIdentity: null,
            leaseDurationSeconds: 1,
            renewTime: microTime(new Date()),
          },
        },
      });
    } catch (err) {
      log.warn("could not release the lease", { error: err instanceof Error ? err.message : String(err) });
    }
  }
}
