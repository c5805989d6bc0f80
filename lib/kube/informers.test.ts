// The informer cache against a real apiserver: indexers follow adds, relabels and deletes.
import test from "ava";
import type { V1ConfigMap } from "@kubernetes/client-node";
import { useCluster } from "../../e2e/harness/ava.js";
import { waitFor } from "../net.js";
import { KubeClient } from "./client.js";
import { watchResource } from "./informers.js";

const cluster = useCluster(test, "informers");

const cm = (name: string, owner: string): V1ConfigMap => ({
  apiVersion: "v1",
  kind: "ConfigMap",
  metadata: { name, labels: { owner } },
});

test("byIndex answers from the index: adds, relabels and deletes move objects between buckets", async (t) => {
  const { namespace: ns, cp } = cluster();
  const client = new KubeClient(cp.kubeConfig);
  const cms = `/api/v1/namespaces/${ns}/configmaps`;
  const names = (ps: V1ConfigMap[]) => ps.map((p) => p.metadata!.name!).sort();
  await client.request({ method: "POST", path: cms, body: cm("a1", "a") });
  const cache = watchResource<V1ConfigMap>(undefined, client, cms, {
    indexers: { owner: (p) => (p.metadata?.labels?.owner ? [p.metadata.labels.owner] : []) },
  });
  t.teardown(async () => {
    await cache.stop();
    client.close();
  });
  await cache.start();
  t.deepEqual(names(cache.byIndex("owner", "a")), ["a1"], "the first list fills the index");
  await client.request({ method: "POST", path: cms, body: cm("a2", "a") });
  await client.request({ method: "POST", path: cms, body: cm("b1", "b") });
  await waitFor(
    "a2 and b1 seen",
    async () => cache.byIndex("owner", "b").length === 1 || undefined,
    10_000,
    20,
  );
  await waitFor("a2 seen", async () => cache.byIndex("owner", "a").length === 2 || undefined, 10_000, 20);
  await client.request({
    method: "PATCH",
    path: `${cms}/a2`,
    body: { metadata: { labels: { owner: "b" } } },
    contentType: "application/merge-patch+json",
  });
  await waitFor(
    "a2 relabelled",
    async () => cache.byIndex("owner", "b").length === 2 || undefined,
    10_000,
    20,
  );
  t.deepEqual(names(cache.byIndex("owner", "a")), ["a1"], "a relabelled object leaves its old bucket");
  t.deepEqual(names(cache.byIndex("owner", "b")), ["a2", "b1"]);
  await client.request({
    method: "DELETE",
    path: `${cms}/b1`,
  });
  await waitFor("b1 gone", async () => cache.byIndex("owner", "b").length === 1 || undefined, 10_000, 20);
  t.deepEqual(names(cache.byIndex("owner", "b")), ["a2"]);
  t.deepEqual(cache.byIndex("owner", "nobody"), []);
  t.throws(() => cache.byIndex("missing", "a"), { message: /no indexer missing/ });
});
