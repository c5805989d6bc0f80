// What the controllers of one process share, as controller-runtime's manager: one REST client (one
// connection pool, one rate limit, one request count), one event recorder, one informer per watched
// collection however many controllers read it, and the work queues, stopped together.
import type { KubeCredentials } from "./kubeconfig.js";
import { type ClientOptions, KubeClient } from "./client.js";
import { EventRecorder } from "./events.js";
import { type Watched, watchResource, type WatchOptions } from "./informers.js";
import { type QueueOptions, type Reconciler, WorkQueue } from "./queue.js";

export interface ManagerOptions extends ClientOptions {
  kubeConfig: KubeCredentials;
  /** The Events' source component (and the default field manager's name in logs). */
  component: string;
}

export class Manager {
  readonly client: KubeClient;
  readonly events: EventRecorder;
  private readonly informers = new Map<string, { watched: Watched<unknown>; started?: Promise<void> }>();
  private readonly queues: WorkQueue[] = [];
  private stopped = false;

  constructor(readonly options: ManagerOptions) {
    this.client = new KubeClient(options.kubeConfig, options);
    this.events = new EventRecorder(this.client, {
      component: options.component,
      holdWhile: () => this.queues.some((q) => q.busy),
    });
  }

  /**
   * The informer for this collection, made on the first call; later callers share it (and its
   * transform: the first caller's decides what the cache keeps, so callers of one path agree on it).
   * start() on the returned informer starts it once, whoever calls it. Indexers likewise: the first
   * caller's are the ones kept.
   */
  informer<T>(path: string, opts: WatchOptions<T> = {}): Watched<T> {
    const key = `${path}?${opts.labelSelector ?? ""}`;
    let entry = this.informers.get(key);
    if (!entry) {
      const inner = watchResource<T>(undefined, this.client, path, opts) as Watched<unknown>;
      const e: { watched: Watched<unknown>; started?: Promise<void> } = {
        watched: {
          get: (n, ns) => inner.get(n, ns),
          list: (ns) => inner.list(ns),
          byIndex: (name, value) => inner.byIndex(name, value),
          on: (verb, cb) => inner.on(verb, cb),
          get synced() {
            return inner.synced;
          },
          get watchRestarts() {
            return inner.watchRestarts;
          },
          start: () => (e.started ??= inner.start()),
          stop: () => inner.stop(),
        },
      };
      this.informers.set(key, (entry = e));
    }
    return entry.watched as Watched<T>;
  }

  queue(reconcile: Reconciler, options: QueueOptions): WorkQueue {
    const q = new WorkQueue(reconcile, options);
    this.queues.push(q);
    return q;
  }

  /** Every informer made so far has listed. */
  get synced(): boolean {
    return [...this.informers.values()].every((e) => e.watched.synced);
  }

  /** Stops the queues (letting reconciles in flight finish), then the informers, then sends the last events. */
  async stopControllers(): Promise<void> {
    await Promise.all(this.queues.map((q) => q.shutdown()));
    await Promise.all([...this.informers.values()].map((e) => e.watched.stop()));
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.stopControllers();
    await Promise.race([this.events.flush(), new Promise((r) => setTimeout(r, 2000))]);
    this.client.close();
  }
}
