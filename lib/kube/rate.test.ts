import test from "ava";
import { RequestCounter, TokenBucket, verbAndResource } from "./rate.js";

test("verbs and resources as the apiserver names them", (t) => {
  const cases: [string, string, Record<string, unknown> | undefined, string][] = [
    ["POST", "/api/v1/namespaces/a/pods", undefined, "create pods"],
    ["GET", "/api/v1/namespaces/a/pods/p", undefined, "get pods"],
    ["GET", "/api/v1/pods", { labelSelector: "x" }, "list pods"],
    ["GET", "/api/v1/nodes", { watch: true }, "watch nodes"],
    [
      "PATCH",
      "/apis/superfluid.dev/v1alpha1/namespaces/a/unikernelvms/v/status",
      undefined,
      "patch unikernelvms/status",
    ],
    ["DELETE", "/api/v1/namespaces/a/services/s", undefined, "delete services"],
    ["POST", "/api/v1/namespaces", undefined, "create namespaces"],
    ["GET", "/api/v1/namespaces/a", undefined, "get namespaces"],
    ["PUT", "/apis/coordination.k8s.io/v1/namespaces/a/leases/l", undefined, "update leases"],
  ];
  for (const [method, path, query, want] of cases) {
    const { verb, resource } = verbAndResource(method, path, query);
    t.is(`${verb} ${resource}`, want, `${method} ${path}`);
  }
});

test("the counter adds up by verb and resource", (t) => {
  const c = new RequestCounter();
  const seen: string[] = [];
  c.onRequest((v, r) => seen.push(`${v} ${r}`));
  c.count("POST", "/api/v1/namespaces/a/pods");
  c.count("POST", "/api/v1/namespaces/b/pods");
  c.count("GET", "/api/v1/pods");
  t.deepEqual(c.snapshot(), { "create pods": 2, "list pods": 1 });
  t.is(c.total, 3);
  t.is(seen.length, 3);
});

test("the token bucket lets a burst through, then the rate", (t) => {
  let now = 0;
  const b = new TokenBucket(10, 3, () => now);
  t.true(b.tryTake());
  t.true(b.tryTake());
  t.true(b.tryTake());
  t.false(b.tryTake());
  now += 100; // one token at 10/s
  t.true(b.tryTake());
  t.false(b.tryTake());
  now += 10_000; // refills to the burst, not beyond
  for (let i = 0; i < 3; i++) t.true(b.tryTake());
  t.false(b.tryTake());
});

test("take() waits its turn at the rate", async (t) => {
  const b = new TokenBucket(100, 1);
  const start = performance.now();
  await Promise.all(Array.from({ length: 6 }, () => b.take()));
  // One at once, five more at 100/s: at least ~50 ms.
  t.true(performance.now() - start >= 40, `${performance.now() - start} ms`);
});
