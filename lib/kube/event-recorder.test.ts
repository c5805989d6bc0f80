// The recorder against a real apiserver: events wait while the process has urgent work, go when
// it ends, and an event held past holdMaxMs goes anyway.
import test from "ava";
import { useCluster } from "../../e2e/harness/ava.js";
import { waitFor } from "../net.js";
import { KubeClient, paths } from "./client.js";
import { EventRecorder } from "./events.js";

const cluster = useCluster(test, "event-recorder");

const target = (ns: string, name: string) => ({
  apiVersion: "v1",
  kind: "ConfigMap",
  metadata: { name, namespace: ns, uid: `uid-${name}` },
});

async function eventsFor(client: KubeClient, ns: string, name: string): Promise<string[]> {
  const list = await client.request<{ items: { reason?: string }[] }>({
    method: "GET",
    path: paths.events(ns),
    query: { fieldSelector: `involvedObject.name=${name}` },
  });
  return list.items.map((e) => e.reason ?? "").sort();
}

test("held events wait for the burst to end, then all go", async (t) => {
  const { namespace: ns, cp } = cluster();
  const client = new KubeClient(cp.kubeConfig);
  t.teardown(() => client.close());
  let busy = true;
  const rec = new EventRecorder(client, { component: "test", holdWhile: () => busy, holdMaxMs: 60_000 });
  for (const reason of ["One", "Two", "Three"]) rec.record(target(ns, "held"), "Normal", reason, reason);
  await new Promise((r) => setTimeout(r, 1000));
  t.deepEqual(await eventsFor(client, ns, "held"), [], "nothing is written while the queues are busy");
  busy = false;
  await waitFor(
    "the held events",
    async () => (await eventsFor(client, ns, "held")).length === 3 || undefined,
    10_000,
    50,
  );
  t.deepEqual(await eventsFor(client, ns, "held"), ["One", "Three", "Two"]);
});

test("an event held past holdMaxMs goes while still busy", async (t) => {
  const { namespace: ns, cp } = cluster();
  const client = new KubeClient(cp.kubeConfig);
  t.teardown(() => client.close());
  const rec = new EventRecorder(client, { component: "test", holdWhile: () => true, holdMaxMs: 300 });
  const t0 = Date.now();
  rec.record(target(ns, "overdue"), "Warning", "Late", "late but not lost");
  await waitFor(
    "the overdue event",
    async () => (await eventsFor(client, ns, "overdue")).length === 1 || undefined,
    10_000,
    50,
  );
  t.true(Date.now() - t0 >= 300, "it waited its holdMaxMs first");
  t.deepEqual(await eventsFor(client, ns, "overdue"), ["Late"]);
});
