// How bench:operator sees pods appear: one informer of a namespace's pods, metadata only
// (lib/kube/informers.ts), started before a side starts. Each pod costs the apiserver one small
// event, whichever side made it and however long that side takes; polling a list instead cost the
// slower side more polls, each a pass over the namespace's pods, and rounded every time up to the
// next poll (100 ms of a 0.8 s run). The apiserver closes such a watch now and then under a burst
// (the ReplicaSet controller's 1,000 pods in under a second): the informer takes it up again from its
// last version, or relists, and counts no pod twice; `resumes` says how often.
import type { KubeClient } from "../lib/kube/client.js";
import { paths } from "../lib/kube/client.js";
import { watchResource } from "../lib/kube/informers.js";

/** At most one sample per this many ms (10,000 pods would otherwise make 10,000 points). */
const SAMPLE_EVERY_MS = 20;

interface Meta {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string };
}

export interface PodCounter {
  /** Pods added since the counter opened. */
  readonly count: number;
  /** How often its watch was closed and taken up again. */
  readonly resumes: number;
  /** Resolves once `n` pods were added since the counter opened; rejects at the timeout. */
  reach(n: number, timeoutMs?: number): Promise<void>;
  /** From now on, samples are (ms since now, pods added since now). */
  startSampling(): void;
  /** The samples since startSampling, the last one at the latest count. */
  samples(): [number, number][];
  close(): void;
}

/** Starts the informer (its first list is the pods already there, not counted). */
export async function podCounter(client: KubeClient, ns: string): Promise<PodCounter> {
  const pods = watchResource<Meta>(undefined, client, paths.pods(ns), {
    metadataOnly: true,
    transform: (p) => ({ metadata: { ...p.metadata } }),
  });
  await pods.start();
  let count = 0;
  let base = 0;
  let t0 = 0;
  let sampling = false;
  let stretchFrom = 0;
  const taken: [number, number][] = [];
  let waiters: { n: number; resolve: () => void }[] = [];
  pods.on("add", () => {
    count++;
    if (sampling) {
      // A sample per SAMPLE_EVERY_MS, each at the latest pod of its stretch: the last one is exact.
      const ms = performance.now() - t0;
      if (taken.length > 0 && ms - stretchFrom < SAMPLE_EVERY_MS)
        taken[taken.length - 1] = [ms, count - base];
      else {
        stretchFrom = ms;
        taken.push([ms, count - base]);
      }
    }
    waiters = waiters.filter((w) => (count >= w.n ? (w.resolve(), false) : true));
  });
  return {
    get count() {
      return count;
    },
    get resumes() {
      return pods.watchRestarts;
    },
    reach(n, timeoutMs = 1_800_000) {
      if (count >= n) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const waiter = { n, resolve: () => (clearTimeout(timer), resolve()) };
        const timer = setTimeout(() => {
          waiters = waiters.filter((w) => w !== waiter);
          reject(new Error(`only ${count} of ${n} pods in ${ns} after ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.push(waiter);
      });
    },
    startSampling() {
      sampling = true;
      t0 = performance.now();
      base = count;
      taken.length = 0;
    },
    samples: () => taken.map(([t, c]) => [t, c] as [number, number]),
    close: () => void pods.stop(),
  };
}
