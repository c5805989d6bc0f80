// Informer caches over our REST client: list, then watch from the list's resourceVersion (with
// bookmarks), relisting after a 410 Gone or a broken stream, so the cache never silently freezes.
// Every object passes through a transform before it is stored: managedFields (often half an object's
// size) are dropped always, and a caller can strip whatever else its controllers never read.
import type { KubeConfig } from "@kubernetes/client-node";
import { logger } from "../log.js";
import type { KubeClient, WatchStream } from "./client.js";

const log = logger("informer");

export type Verb = "add" | "update" | "delete";

export interface Watched<T> {
  get(name: string, namespace?: string): T | undefined;
  list(namespace?: string): T[];
  /** The objects an indexer of WatchOptions.indexers maps to this value (client-go's ByIndex). */
  byIndex(indexer: string, value: string): T[];
  on(verb: Verb, cb: (obj: T) => void): void;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** True once the first list has filled the cache. */
  readonly synced: boolean;
  /** How often its watch ended and was taken up again (resumed, or after a relist). */
  readonly watchRestarts: number;
}

export interface WatchOptions<T> {
  labelSelector?: string;
  /** Narrows list and watch on the server: a CRD's selectableFields, or a built-in kind's fields. */
  fieldSelector?: string;
  /** What the cache keeps of each object (after managedFields are dropped). Must not need I/O. */
  transform?: (obj: T) => T;
  /**
   * Named functions from an object to the values it is found under (client-go's Indexers): a
   * controller that asks "this VM's pods" reads one bucket instead of scanning every pod, which at
   * 10,000 objects per reconcile would make the operator's work grow with the square of N.
   */
  indexers?: Record<string, (obj: T) => string[]>;
  /**
   * Objects as their metadata only (PartialObjectMetadata, as client-go's metadata informers get
   * them): a watcher that needs no spec or status costs the apiserver and itself far less.
   */
  metadataOnly?: boolean;
}

const METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
const METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";

interface Meta {
  metadata?: {
    name?: string;
    namespace?: string;
    resourceVersion?: string;
    managedFields?: unknown;
  };
}

interface ListResult {
  metadata?: { resourceVersion?: string; continue?: string };
  /** null in an empty PartialObjectMetadataList. */
  items: Meta[] | null;
}

/** Drops managedFields: no controller of ours reads them, and they are a large share of each object. */
export function stripManagedFields<T>(obj: T): T {
  const m = (obj as Meta).metadata;
  if (m?.managedFields !== undefined) delete m.managedFields;
  return obj;
}

const keyOf = (o: Meta) => `${o.metadata?.namespace ?? ""}/${o.metadata?.name ?? ""}`;

/**
 * T is the object as the apiserver sends it; our CRD types keep timestamps as strings, hence no
 * KubernetesObject bound. kc is kept in the signature for the callers written against the old one.
 */
export function watchResource<T>(
  _kc: KubeConfig | undefined,
  client: KubeClient,
  path: string,
  selectorOrOptions?: string | WatchOptions<T>,
): Watched<T> {
  const opts: WatchOptions<T> =
    typeof selectorOrOptions === "string" ? { labelSelector: selectorOrOptions } : (selectorOrOptions ?? {});
  const transform = (o: T): T => {
    const stripped = stripManagedFields(o);
    return opts.transform ? opts.transform(stripped) : stripped;
  };
  const cache = new Map<string, T>();
  const byNamespace = new Map<string, Map<string, T>>();
  const handlers: Record<Verb, ((o: T) => void)[]> = { add: [], update: [], delete: [] };
  let synced = false;
  let stopped = false;
  let watchRestarts = 0;
  let stream: WatchStream | undefined;
  let retry: NodeJS.Timeout | undefined;
  let resourceVersion: string | undefined;

  const emit = (verb: Verb, o: T) => {
    for (const h of handlers[verb]) {
      try {
        h(o);
      } catch (err) {
        log.warn("handler failed", { path, verb, error: err instanceof Error ? err.message : String(err) });
      }
    }
  };
  const indexers = Object.entries(opts.indexers ?? {});
  /** indexer -> value -> key -> object */
  const indices = new Map<string, Map<string, Map<string, T>>>(indexers.map(([name]) => [name, new Map()]));
  const unindex = (k: string, o: T) => {
    for (const [name, fn] of indexers) {
      const byValue = indices.get(name)!;
      for (const v of fn(o)) {
        const bucket = byValue.get(v);
        bucket?.delete(k);
        if (bucket?.size === 0) byValue.delete(v);
      }
    }
  };
  const index = (k: string, o: T) => {
    for (const [name, fn] of indexers) {
      const byValue = indices.get(name)!;
      for (const v of fn(o)) {
        let bucket = byValue.get(v);
        if (!bucket) byValue.set(v, (bucket = new Map()));
        bucket.set(k, o);
      }
    }
  };
  const put = (o: T): "add" | "update" => {
    const k = keyOf(o as Meta);
    const before = cache.get(k);
    const existed = before !== undefined;
    if (before !== undefined) unindex(k, before);
    index(k, o);
    cache.set(k, o);
    const ns = (o as Meta).metadata?.namespace ?? "";
    let inNs = byNamespace.get(ns);
    if (!inNs) byNamespace.set(ns, (inNs = new Map()));
    inNs.set(k, o);
    return existed ? "update" : "add";
  };
  const remove = (k: string): T | undefined => {
    const o = cache.get(k);
    if (!o) return undefined;
    cache.delete(k);
    unindex(k, o);
    byNamespace.get((o as Meta).metadata?.namespace ?? "")?.delete(k);
    return o;
  };

  /** A full list, in pages, replacing the cache: the differences become events. */
  const relist = async () => {
    const items: T[] = [];
    let cont: string | undefined;
    let rv: string | undefined;
    do {
      const page = await client.request<ListResult>({
        method: "GET",
        path,
        query: {
          labelSelector: opts.labelSelector,
          fieldSelector: opts.fieldSelector,
          limit: 500,
          continue: cont,
        },
        ...(opts.metadataOnly ? { accept: METADATA_LIST } : {}),
      });
      for (const it of page.items ?? []) items.push(transform(it as T));
      cont = page.metadata?.continue || undefined;
      rv = page.metadata?.resourceVersion;
    } while (cont);
    const seen = new Set<string>();
    for (const o of items) {
      seen.add(keyOf(o as Meta));
      const before = cache.get(keyOf(o as Meta)) as Meta | undefined;
      const unchanged = before?.metadata?.resourceVersion === (o as Meta).metadata?.resourceVersion;
      const verb = put(o);
      if (!unchanged || verb === "add") emit(verb, o);
    }
    for (const k of [...cache.keys()]) {
      if (seen.has(k)) continue;
      const gone = remove(k);
      if (gone) emit("delete", gone);
    }
    resourceVersion = rv;
    synced = true;
  };

  const schedule = (fn: () => void, ms: number) => {
    if (stopped) return;
    retry = setTimeout(fn, ms);
  };

  const watch = () => {
    if (stopped) return;
    stream = client.watch(
      path,
      {
        labelSelector: opts.labelSelector,
        fieldSelector: opts.fieldSelector,
        resourceVersion,
        allowWatchBookmarks: true,
        timeoutSeconds: 300,
      },
      (event) => {
        const o = event.object as Meta;
        if (event.type === "BOOKMARK") {
          resourceVersion = o.metadata?.resourceVersion ?? resourceVersion;
          return;
        }
        if (event.type === "ERROR") {
          // 410 Gone: the resourceVersion is too old; anything else: start over too.
          resourceVersion = undefined;
          return;
        }
        const obj = transform(event.object as T);
        resourceVersion = o.metadata?.resourceVersion ?? resourceVersion;
        if (event.type === "DELETED") {
          remove(keyOf(o));
          emit("delete", obj);
        } else {
          emit(put(obj), obj);
        }
      },
      (err) => {
        stream = undefined;
        if (stopped) return;
        watchRestarts++;
        if (err) log.warn("watch ended", { path, error: err.message });
        // A watch that ends cleanly (timeoutSeconds) resumes where it was; a lost resourceVersion relists.
        if (resourceVersion) schedule(watch, err ? 1000 : 0);
        else schedule(loop, 1000);
      },
      opts.metadataOnly ? { Accept: METADATA_ONLY } : {},
    );
  };

  const loop = () => {
    relist().then(watch, (err: unknown) => {
      log.warn("list failed; retrying", { path, error: err instanceof Error ? err.message : String(err) });
      schedule(loop, 1000);
    });
  };

  return {
    get: (name, namespace) => cache.get(`${namespace ?? ""}/${name}`),
    list: (namespace) =>
      namespace === undefined ? [...cache.values()] : [...(byNamespace.get(namespace)?.values() ?? [])],
    byIndex: (indexer, value) => {
      const byValue = indices.get(indexer);
      if (!byValue) throw new Error(`${path}: no indexer ${indexer}`);
      return [...(byValue.get(value)?.values() ?? [])];
    },
    on: (verb, cb) => void handlers[verb].push(cb),
    get synced() {
      return synced;
    },
    get watchRestarts() {
      return watchRestarts;
    },
    async start() {
      stopped = false;
      // The first list is awaited (retried until it works or stop() is called), then the watch runs on.
      for (;;) {
        try {
          await relist();
          break;
        } catch (err) {
          if (stopped) return;
          log.warn("list failed; retrying", {
            path,
            error: err instanceof Error ? err.message : String(err),
          });
          await new Promise((r) => setTimeout(r, 1000));
        }
      }
      watch();
    },
    async stop() {
      stopped = true;
      if (retry) clearTimeout(retry);
      stream?.close();
      stream = undefined;
    },
  };
}
