// The pod counter bench:operator times each side with, against the real apiserver: it counts the pods
// added after it opened (not those already there), resolves at the count asked for, and its last
// sample is the latest pod's.
import test from "ava";
import { useCluster } from "../e2e/harness/ava.js";
import { KubeClient, paths } from "../lib/kube/client.js";
import { podCounter } from "./pod-counter.js";

const cluster = useCluster(test, "pod-counter");

const pod = (name: string) => ({
  apiVersion: "v1",
  kind: "Pod",
  metadata: { name },
  spec: {
    automountServiceAccountToken: false,
    containers: [{ name: "c", image: "registry.local:5000/superfluid/hello:1" }],
  },
});

test("counts the pods added since it opened; its last sample is the last pod", async (t) => {
  const { cp, namespace } = cluster();
  const client = new KubeClient(cp.kubeConfig);
  const post = (name: string) =>
    client.request({ method: "POST", path: paths.pods(namespace), body: pod(name) });
  // No controller makes the namespace's default ServiceAccount here; pods are admitted only with one.
  await client.request({
    method: "POST",
    path: `/api/v1/namespaces/${namespace}/serviceaccounts`,
    body: { metadata: { name: "default" } },
  });
  await post("before");
  const counter = await podCounter(client, namespace);
  try {
    await post("warmup");
    await counter.reach(1, 30_000);
    t.is(counter.count, 1, "the pod made before it opened is not counted");
    counter.startSampling();
    const all = counter.reach(21, 60_000);
    await Promise.all(Array.from({ length: 20 }, (_, i) => post(`p-${i}`)));
    await all;
    const samples = counter.samples();
    t.is(samples.at(-1)![1], 20, "samples count from startSampling");
    t.true(
      samples.every(([ms, n], i) => i === 0 || (ms >= samples[i - 1]![0] && n > samples[i - 1]![1])),
      "time and count grow",
    );
    // More than the namespace will ever hold: the wait ends at its timeout with how far it got.
    await t.throwsAsync(counter.reach(25, 300), { message: /only 21 of 25 pods/ });
  } finally {
    counter.close();
    client.close();
  }
});
