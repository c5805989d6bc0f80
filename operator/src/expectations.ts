// What this operator has written that its informer caches may not show yet: kube-controller-manager's
// "expectations". Without them, a reconcile that runs before the watch delivers our own write would
// write again (a second apply of the pod, a status write, a finalizer patch that conflicts), which on
// a loaded apiserver multiplies the work. Entries end when the cache catches up, or after a while in
// case the event that would show it never comes (a relist, another writer).
import type { V1Pod } from "@kubernetes/client-node";
import type { UnikernelVMStatus } from "../../api/index.js";

const TTL_MS = 30_000;

/**
 * Whether resourceVersion a is older than b. Kubernetes calls them opaque, but they are etcd
 * revisions; anything unparsable counts as not older, which ends the expectation (safe: the cache is
 * then trusted, at worst one extra write).
 */
function olderThan(a: string | undefined, b: string | undefined): boolean {
  if (a === undefined || b === undefined || !/^[0-9]+$/.test(a) || !/^[0-9]+$/.test(b)) return false;
  return BigInt(a) < BigInt(b);
}

interface Written {
  finalizerAt?: number;
  pod?: { pod: V1Pod; at: number };
  status?: { status: UnikernelVMStatus; resourceVersion?: string; at: number };
}

export class Expectations {
  private readonly byKey = new Map<string, Written>();

  private entry(key: string): Written {
    let w = this.byKey.get(key);
    if (!w) this.byKey.set(key, (w = {}));
    return w;
  }

  private fresh(at: number | undefined): boolean {
    return at !== undefined && Date.now() - at < TTL_MS;
  }

  finalizerAdded(key: string): void {
    this.entry(key).finalizerAt = Date.now();
  }
  expectsFinalizer(key: string): boolean {
    return this.fresh(this.byKey.get(key)?.finalizerAt);
  }

  podApplied(key: string, pod: V1Pod): void {
    this.entry(key).pod = { pod, at: Date.now() };
  }
  /** The pod we applied under this name, while the cache does not have it yet. */
  expectedPod(key: string, name: string | undefined): V1Pod | undefined {
    const p = this.byKey.get(key)?.pod;
    return p && this.fresh(p.at) && p.pod.metadata?.name === name ? p.pod : undefined;
  }

  /** Some pod we applied for this VM is not in the cache yet. */
  expectsAnyPod(key: string): boolean {
    const p = this.byKey.get(key)?.pod;
    return !!p && this.fresh(p.at);
  }

  /** cachedResourceVersion: what the cache shows right now (its watch may already have passed our write). */
  statusWritten(
    key: string,
    status: UnikernelVMStatus,
    resourceVersion: string | undefined,
    cachedResourceVersion: string | undefined,
  ): void {
    const w = this.entry(key);
    w.status = olderThan(cachedResourceVersion, resourceVersion)
      ? { status, resourceVersion, at: Date.now() }
      : undefined;
    this.prune(key, w);
  }
  /** The status we last wrote, while the cache still shows an older one. */
  expectedStatus(key: string): UnikernelVMStatus | undefined {
    const s = this.byKey.get(key)?.status;
    return s && this.fresh(s.at) ? s.status : undefined;
  }

  /** The cache saw the VM at this resourceVersion with these finalizers. */
  observeVM(key: string, resourceVersion: string | undefined, hasFinalizer: boolean): void {
    const w = this.byKey.get(key);
    if (!w) return;
    if (hasFinalizer) w.finalizerAt = undefined;
    if (w.status && !olderThan(resourceVersion, w.status.resourceVersion)) w.status = undefined;
    this.prune(key, w);
  }

  /** The cache saw (or lost) a pod of this VM. */
  observePod(key: string, name: string | undefined): void {
    const w = this.byKey.get(key);
    if (!w) return;
    if (w.pod?.pod.metadata?.name === name) w.pod = undefined;
    this.prune(key, w);
  }

  forget(key: string): void {
    this.byKey.delete(key);
  }

  private prune(key: string, w: Written): void {
    if (!w.finalizerAt && !w.pod && !w.status) this.byKey.delete(key);
  }
}
