// The node agent acts on a VM's domain only through a sandbox bound to it by the pod's own namespace,
// the VM's name and its uid: a pod in another namespace that copies the VM's annotations, or one
// without the uid, is never paused for it. Real apiserver; CRI shim over the in-memory hypervisor
// TEST DOUBLE (the Xen proof of pausing is agent.xen.test.ts).
import test from "ava";
import { join } from "node:path";
import { API_VERSION, type UnikernelVM, UNIKERNELVM_PLURAL } from "../../../api/index.js";
import { useCluster } from "../../../e2e/harness/ava.js";
import { KubeClient, paths } from "../../../lib/kube/client.js";
import { startUnitShim, type UnitShim } from "../testing/unit-shim.js";
import { NodeAgent } from "./agent.js";

const cluster = useCluster(test, "vm-binding");
const IMAGE = "registry.test/hello:1";
const NODE = "bind-node-1";

async function runPod(shim: UnitShim, name: string, namespace: string, annotations: Record<string, string>) {
  shim.images.available.add(IMAGE);
  await shim.cri.image("PullImage", { image: { image: IMAGE } });
  const config = {
    metadata: { name, namespace, uid: `uid-${name}`, attempt: 0 },
    hostname: name,
    log_directory: join(shim.dir, "logs", name),
    annotations,
  };
  const { pod_sandbox_id: sb } = await shim.cri.runtime<{ pod_sandbox_id: string }>("RunPodSandbox", {
    config,
  });
  const { container_id: ctr } = await shim.cri.runtime<{ container_id: string }>("CreateContainer", {
    pod_sandbox_id: sb,
    config: { metadata: { name: "main", attempt: 0 }, image: { image: IMAGE }, log_path: "main/0.log" },
    sandbox_config: config,
  });
  await shim.cri.runtime("StartContainer", { container_id: ctr });
  return shim.runtime.ctx.containers.get(ctr)!.status.domid!;
}

test("only the sandbox bound by namespace, name and uid is paused for the VM", async (t) => {
  const ns = cluster().namespace;
  const client = new KubeClient(cluster().cp.kubeConfig);
  t.teardown(() => client.close());
  const path = paths.customObject(UNIKERNELVM_PLURAL, ns, "web");
  const vm = await client.request<UnikernelVM>({
    method: "POST",
    path: paths.custom(UNIKERNELVM_PLURAL, ns),
    body: {
      apiVersion: API_VERSION,
      kind: "UnikernelVM",
      metadata: { name: "web" },
      spec: { image: IMAGE, runPolicy: "Paused" },
    },
  });
  await client.request({
    method: "PATCH",
    path: `${path}/status`,
    body: { status: { nodeName: NODE, phase: "Running" } },
    contentType: "application/merge-patch+json",
  });
  const uid = vm.metadata.uid!;
  const shim = await startUnitShim();
  t.teardown(() => shim.dispose());
  // Pods that claim the VM without being bound to it: another namespace, and no uid.
  const claim = { "superfluid.dev/vm": `${ns}/web`, "superfluid.dev/vm-uid": uid };
  const stranger = await runPod(shim, "stranger", "other-tenant", claim);
  const noUid = await runPod(shim, "no-uid", ns, { "superfluid.dev/vm": `${ns}/web` });
  const agent = new NodeAgent({
    kubeConfig: cluster().cp.kubeConfig,
    nodeName: NODE,
    runtime: shim.runtime,
    nodeAddress: "127.0.0.1",
    resyncMs: 200,
    checkpointDir: join(shim.dir, "checkpoints"),
  });
  await agent.start();
  t.teardown(() => agent.stop());
  await new Promise((r) => setTimeout(r, 1500));
  t.is((await shim.hv.info(stranger))?.state, "running", "a pod in another namespace is not the VM");
  t.is((await shim.hv.info(noUid))?.state, "running", "an annotation without the uid binds nothing");

  // The VM's own pod: paused as its runPolicy says.
  const own = await runPod(shim, "web-abc", ns, claim);
  const deadline = Date.now() + 10_000;
  while ((await shim.hv.info(own))?.state !== "paused" && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 100));
  t.is((await shim.hv.info(own))?.state, "paused");
  t.is((await shim.hv.info(stranger))?.state, "running");
});
