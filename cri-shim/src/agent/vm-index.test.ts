// The node agent finds each VM's container through an index rebuilt only when the CRI stores change:
// the resync looks every VM up every few seconds, and a scan of all sandboxes and containers per
// lookup made that quadratic in the VMs. The index answers as the scan did (bound by namespace,
// name and uid; a stopped container is no VM's). CRI shim over the in-memory hypervisor TEST DOUBLE.
import test from "ava";
import { join } from "node:path";
import { runPodThroughCri, startUnitShim, type UnitShim } from "../testing/unit-shim.js";
import { DomainOps } from "./domain-ops.js";
import { agentRuntime } from "./node-runtime.js";

const IMAGE = "registry.test/hello:1";
const VMS = 40;

const runPod = async (shim: UnitShim, name: string, namespace: string, annotations: Record<string, string>) =>
  (await runPodThroughCri(shim, { name, namespace, image: IMAGE, annotations })).ctr;

test(`${VMS} VMs: each found by namespace, name and uid, with one pass over the stores per change`, async (t) => {
  const shim = await startUnitShim();
  t.teardown(() => shim.dispose());
  const claim = (i: number, ns = "ns") => ({
    "superfluid.dev/vm": `${ns}/vm-${i}`,
    "superfluid.dev/vm-uid": `u-${i}`,
  });
  const ctrs: string[] = [];
  for (let i = 0; i < VMS; i++) ctrs.push(await runPod(shim, `pod-${i}`, "ns", claim(i)));
  // Copies the claim of vm-0 from another namespace: never vm-0's.
  await runPod(shim, "stranger", "other", claim(0, "ns"));

  const rt = agentRuntime(
    shim.runtime,
    new DomainOps(shim.runtime.ctx, shim.runtime.containers, join(shim.dir, "checkpoints")),
  );
  // The exit monitor lists the containers on its own timer: stopped, so that only lookups count.
  await shim.runtime.monitor.stop();
  const containers = shim.runtime.ctx.containers;
  let scans = 0;
  const list = containers.list.bind(containers);
  containers.list = () => (scans++, list());
  const vm = (i: number, uid = `u-${i}`) => ({ metadata: { namespace: "ns", name: `vm-${i}`, uid } });

  for (let round = 0; round < 3; round++)
    for (let i = 0; i < VMS; i++) t.is(rt.vmContainer(vm(i))?.meta.id, ctrs[i], `vm-${i}`);
  t.is(scans, 1, `${3 * VMS} lookups, one pass over the containers`);
  t.is(rt.vmContainer(vm(3, "another-uid")), undefined, "another uid is another VM");
  t.is(rt.vmContainer({ metadata: { namespace: "other", name: "vm-0", uid: "u-0" } }), undefined);

  // A change in the stores is seen at the next lookup.
  await shim.cri.runtime("StopContainer", { container_id: ctrs[5], timeout: 0 });
  t.is(rt.vmContainer(vm(5)), undefined, "a stopped container is no VM's");
  t.is(rt.vmContainer(vm(6))?.meta.id, ctrs[6]);
  t.is(scans, 2);
});
