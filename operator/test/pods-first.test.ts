// Pods first, against a real apiserver: a burst of new VMs gets its pods before the writes that only
// settle the VMs (finalizer, status). etcd revisions order every write, so for each VM the pod's
// creation must come before the first VM revision that carries our finalizer or a status.
import test from "ava";
import type { V1Pod } from "@kubernetes/client-node";
import { FINALIZER, LABELS, UNIKERNELVM_PLURAL, type UnikernelVM } from "../../api/index.js";
import { paths } from "../../lib/kube/client.js";
import { watchResource } from "../../lib/kube/informers.js";
import { until, useOperator } from "./operator-harness.js";

const operator = useOperator(test, "pods-first");
const N = 24;

test("each VM's pod is created before its finalizer and its status are written", async (t) => {
  const { client } = await operator.ready();
  const ns = operator.cluster().namespace;
  const podAt = new Map<string, bigint>();
  const finalizerAt = new Map<string, bigint>();
  const statusAt = new Map<string, bigint>();
  const pods = watchResource<V1Pod>(undefined, client, paths.pods(ns), `${LABELS.vm}`);
  const vms = watchResource<UnikernelVM>(undefined, client, paths.custom(UNIKERNELVM_PLURAL, ns));
  t.teardown(async () => {
    await pods.stop();
    await vms.stop();
  });
  pods.on("add", (p) => {
    const vm = p.metadata!.labels![LABELS.vm]!;
    if (!podAt.has(vm)) podAt.set(vm, BigInt(p.metadata!.resourceVersion!));
  });
  const seeVM = (vm: UnikernelVM) => {
    const name = vm.metadata.name!;
    const rv = BigInt(vm.metadata.resourceVersion!);
    if (vm.metadata.finalizers?.includes(FINALIZER) && !finalizerAt.has(name)) finalizerAt.set(name, rv);
    if (vm.status?.podName && !statusAt.has(name)) statusAt.set(name, rv);
  };
  vms.on("add", seeVM);
  vms.on("update", seeVM);
  await Promise.all([pods.start(), vms.start()]);

  const names = Array.from({ length: N }, (_, i) => `burst-${i}`);
  await Promise.all(names.map((n) => operator.applyVM(n, {})));
  await until("every VM settled", async () => names.every((n) => finalizerAt.has(n) && statusAt.has(n)));

  for (const n of names) {
    const pod = podAt.get(n);
    t.truthy(pod, `${n} has a pod`);
    t.true(pod! < finalizerAt.get(n)!, `${n}: pod at ${pod}, finalizer at ${finalizerAt.get(n)}`);
    t.true(pod! < statusAt.get(n)!, `${n}: pod at ${pod}, status at ${statusAt.get(n)}`);
  }
});
