// Informer caches over the REST client: list, then watch from the list's resourceVersion; restarted
// after a watch error (client-node's informer stops on one), so the cache never silently freezes.
import {
  type Informer,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  makeInformer,
  type ObjectCache,
} from "@kubernetes/client-node";
import { logger } from "../log.js";
import type { KubeClient } from "./client.js";

const log = logger("informer");

export interface Watched<T> extends ObjectCache<T> {
  on(verb: "add" | "update" | "delete", cb: (obj: T) => void): void;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** True once the first list has filled the cache. */
  readonly synced: boolean;
}

/** T is the object as the apiserver sends it; our CRD types keep timestamps as strings, hence no KubernetesObject bound. */
export function watchResource<T>(
  kc: KubeConfig,
  client: KubeClient,
  path: string,
  labelSelector?: string,
): Watched<T> {
  let listed = false;
  const list = async () => {
    const result = await client.request<KubernetesListObject<KubernetesObject>>({
      method: "GET",
      path,
      query: { labelSelector },
    });
    listed = true;
    return result;
  };
  const informer = makeInformer<KubernetesObject>(
    kc,
    path,
    list,
    labelSelector,
  ) as unknown as Informer<KubernetesObject> &
    ObjectCache<T> & { on(verb: "add" | "update" | "delete", cb: (obj: T) => void): void };
  let stopped = false;
  let synced = false;
  let restartTimer: NodeJS.Timeout | undefined;
  informer.on("error", (err?: unknown) => {
    if (stopped) return;
    log.warn("watch failed; relisting", { path, error: err instanceof Error ? err.message : String(err) });
    restartTimer = setTimeout(() => {
      if (!stopped)
        informer.start().catch((e: unknown) => log.warn("relist failed", { path, error: String(e) }));
    }, 1000);
  });
  return {
    get: (name, namespace) => informer.get(name, namespace),
    list: (namespace) => informer.list(namespace),
    on: (verb, cb) => informer.on(verb, cb),
    get synced() {
      return synced;
    },
    async start() {
      // start() resolves even when the first list failed (the error handler relists): wait for a real list.
      await informer.start();
      while (!listed && !stopped) await new Promise((r) => setTimeout(r, 100));
      synced = listed;
    },
    async stop() {
      stopped = true;
      if (restartTimer) clearTimeout(restartTimer);
      await informer.stop();
    },
  };
}
