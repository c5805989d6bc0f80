// A spec the CRD accepts but whose Pod the apiserver refuses (here a nodeSelector value that is no
// label value) is a terminal error: Ready=False/InvalidSpec naming the refusal, an Event, no pod, and
// no retry loop. Against the real apiserver with the operator in-process.
import test from "ava";
import type { CoreV1Event, V1Pod } from "@kubernetes/client-node";
import { paths } from "../../lib/kube/client.js";
import { until, useOperator } from "./operator-harness.js";

const operator = useOperator(test, "child-rejection");

async function errorReconciles(): Promise<number> {
  const { op } = await operator.ready();
  const m = await op.metrics.reconciles.get();
  return m.values
    .filter((v) => v.labels.controller === "unikernelvm" && v.labels.outcome === "error")
    .reduce((n, v) => n + v.value, 0);
}

test("a pod the apiserver refuses is a condition and an Event, not a retry loop", async (t) => {
  const { client, cluster } = await operator.ready();
  const ns = cluster.namespace;
  await operator.applyVM("refused", { nodeSelector: { zone: "not a label value!" } });
  const ready = await until("Ready=False InvalidSpec", async () => {
    const vm = await operator.getVM("refused");
    const c = vm.status?.conditions?.find((x) => x.type === "Ready");
    return c?.reason === "InvalidSpec" && c;
  });
  t.is(ready.status, "False");
  t.regex(ready.message, /the apiserver refused Pod refused-[0-9a-f]{10}: .*nodeSelector/);
  const events = await until("an InvalidSpec Event", async () => {
    const list = await client.request<{ items: CoreV1Event[] }>({
      method: "GET",
      path: paths.events(ns),
      query: { fieldSelector: "involvedObject.name=refused" },
    });
    const e = list.items.filter((x) => x.reason === "InvalidSpec");
    return e.length > 0 && e;
  });
  t.is(events[0]!.type, "Warning");
  const pods = await client.request<{ items: V1Pod[] }>({ method: "GET", path: paths.pods(ns) });
  t.deepEqual(
    pods.items.filter((p) => p.metadata?.labels?.["superfluid.dev/vm"] === "refused"),
    [],
  );
  // No retries: the count of failed reconciles that back off does not move.
  const before = await errorReconciles();
  await new Promise((r) => setTimeout(r, 3000));
  t.is(await errorReconciles(), before, "no reconcile retried the refused pod");

  // A fixed spec makes a pod and clears the condition.
  await operator.applyVM("refused", { nodeSelector: { zone: "a" } });
  const pod = await until("a pod", async () => {
    const list = await client.request<{ items: V1Pod[] }>({ method: "GET", path: paths.pods(ns) });
    return list.items.find((p) => p.metadata?.labels?.["superfluid.dev/vm"] === "refused");
  });
  t.is(pod.spec?.nodeSelector?.zone, "a");
  const cleared = await until("InvalidSpec cleared", async () => {
    const c = (await operator.getVM("refused")).status?.conditions?.find((x) => x.type === "Ready");
    return c?.reason !== "InvalidSpec" && c;
  });
  t.not(cleared.reason, "InvalidSpec");
});

test("a VM whose Service would take a name starting with a digit gets InvalidSpec, and no pod or Service", async (t) => {
  // The CRD accepts the name (a DNS-1123 label); only a Service's name must start with a letter,
  // which the operator checks (a CEL rule on the whole object would cost every create).
  const { client, cluster } = await operator.ready();
  const ns = cluster.namespace;
  await operator.applyVM("1web", { ports: [{ containerPort: 80 }], service: {} });
  const ready = await until("Ready=False InvalidSpec", async () => {
    const c = (await operator.getVM("1web")).status?.conditions?.find((x) => x.type === "Ready");
    return c?.reason === "InvalidSpec" && c;
  });
  t.is(ready.status, "False");
  t.regex(
    ready.message,
    /metadata\.name "1web" must start with a letter when spec\.service\.name is not set/,
  );
  const ours = async (path: string) =>
    (await client.request<{ items: V1Pod[] }>({ method: "GET", path })).items.filter(
      (o) => o.metadata?.labels?.["superfluid.dev/vm"] === "1web",
    );
  t.deepEqual(await ours(paths.pods(ns)), []);
  t.deepEqual(await ours(paths.services(ns)), []);
  // Naming the Service in the spec makes both.
  await operator.applyVM("1web", { ports: [{ containerPort: 80 }], service: { name: "web" } });
  const [svc] = await until("the Service", async () => {
    const s = await ours(paths.services(ns));
    return s.length === 1 && s;
  });
  t.is(svc!.metadata?.name, "web");
  t.is(await until("a pod", async () => (await ours(paths.pods(ns))).length), 1);
  const cleared = await until("InvalidSpec cleared", async () => {
    const c = (await operator.getVM("1web")).status?.conditions?.find((x) => x.type === "Ready");
    return c?.reason !== "InvalidSpec" && c;
  });
  t.not(cleared.reason, "InvalidSpec");
});
