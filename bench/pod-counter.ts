// How bench:operator sees pods appear: one watch of a namespace's pods, metadata only, opened before
// a side starts. Each pod costs the apiserver one small event, whichever side made it and however long
// that side takes; polling a list instead cost the slower side more polls, each a pass over the
// namespace's pods, and rounded every time up to the next poll (100 ms of a 0.8 s run).
//
// The apiserver closes a watch that falls behind a burst (the ReplicaSet controller's 1,000 pods in
// under a second did that to it): the counter then watches on from the last version it saw, or, when
// that is gone from the apiserver's window, lists the pods and counts the ones it had not seen. Either
// way no pod is missed or counted twice; `resumes` says how often it happened.
import type { KubeClient, WatchEvent, WatchStream } from "../lib/kube/client.js";
import { paths } from "../lib/kube/client.js";

/** The pods' metadata only (PartialObjectMetadata), not whole pods. */
const METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
const METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
/** At most one sample per this many ms (10,000 pods would otherwise make 10,000 points). */
const SAMPLE_EVERY_MS = 20;

interface Meta {
  metadata?: { name?: string; resourceVersion?: string };
}

export interface PodCounter {
  /** Pods added since the counter opened. */
  readonly count: number;
  /** How often its watch was closed and taken up again. */
  readonly resumes: number;
  /** Resolves once `n` pods were added since the counter opened; rejects if the watch fails first. */
  reach(n: number, timeoutMs?: number): Promise<void>;
  /** From now on, samples are (ms since now, pods added since now). */
  startSampling(): void;
  /** The samples since startSampling, the last one at the latest count. */
  samples(): [number, number][];
  close(): void;
}

/** Opens the watch (after a list that gives its starting point and the pods already there). */
export async function podCounter(client: KubeClient, ns: string): Promise<PodCounter> {
  const list = () =>
    client.request<{ metadata: { resourceVersion: string }; items: Meta[] | null }>({
      method: "GET",
      path: paths.pods(ns),
      accept: METADATA_LIST,
    });
  const first = await list();
  const before = new Set((first.items ?? []).map((p) => p.metadata?.name));
  const seen = new Set<string>();
  let resourceVersion = first.metadata.resourceVersion;
  let base = 0;
  let t0 = 0;
  let sampling = false;
  let stretchFrom = 0;
  let resumes = 0;
  let closed = false;
  let failed: Error | undefined;
  let stream: WatchStream | undefined;
  const taken: [number, number][] = [];
  let waiters: { n: number; resolve: () => void; reject: (e: Error) => void }[] = [];

  const settle = () => {
    waiters = waiters.filter((w) => {
      if (seen.size >= w.n) w.resolve();
      else if (failed) w.reject(failed);
      else return true;
      return false;
    });
  };
  const saw = (name: string | undefined) => {
    if (name === undefined || before.has(name) || seen.has(name)) return;
    seen.add(name);
    if (sampling) {
      // A sample per SAMPLE_EVERY_MS, each at the latest pod of its stretch: the last one is exact.
      const ms = performance.now() - t0;
      const n = seen.size - base;
      if (taken.length > 0 && ms - stretchFrom < SAMPLE_EVERY_MS) taken[taken.length - 1] = [ms, n];
      else {
        stretchFrom = ms;
        taken.push([ms, n]);
      }
    }
  };
  const fail = (err: Error) => {
    failed = err;
    settle();
  };
  const relist = async () => {
    const now = await list();
    for (const p of now.items ?? []) saw(p.metadata?.name);
    resourceVersion = now.metadata.resourceVersion;
    settle();
  };
  const watch = () => {
    let gone = false;
    stream = client.watch(
      paths.pods(ns),
      { resourceVersion, allowWatchBookmarks: false },
      (e: WatchEvent) => {
        const o = e.object as Meta & { code?: number };
        if (e.type === "ERROR") {
          // 410: the version is older than the apiserver's window; list, then watch from there.
          if (o.code === 410) gone = true;
          else fail(new Error(`pod watch in ${ns}: ${JSON.stringify(e.object).slice(0, 200)}`));
          return;
        }
        if (o.metadata?.resourceVersion) resourceVersion = o.metadata.resourceVersion;
        if (e.type === "ADDED") {
          saw(o.metadata?.name);
          settle();
        }
      },
      (err) => {
        if (closed || failed) return;
        resumes++;
        if (resumes > 100) return fail(err ?? new Error(`pod watch in ${ns}: closed 100 times`));
        (gone ? relist() : Promise.resolve()).then(watch, (e: unknown) =>
          fail(e instanceof Error ? e : new Error(String(e))),
        );
      },
      { Accept: METADATA_ONLY },
    );
  };
  watch();

  return {
    get count() {
      return seen.size;
    },
    get resumes() {
      return resumes;
    },
    reach(n, timeoutMs = 1_800_000) {
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`only ${seen.size} of ${n} pods in ${ns} after ${timeoutMs} ms`)),
          timeoutMs,
        );
        waiters.push({
          n,
          resolve: () => (clearTimeout(timer), resolve()),
          reject: (e) => (clearTimeout(timer), reject(e)),
        });
        settle();
      });
    },
    startSampling() {
      sampling = true;
      t0 = performance.now();
      base = seen.size;
      taken.length = 0;
    },
    samples: () => taken.map(([t, c]) => [t, c] as [number, number]),
    close() {
      closed = true;
      stream?.close();
    },
  };
}
