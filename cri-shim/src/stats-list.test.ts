// The kubelet's stats polls over many pods (ListContainerStats, ListPodSandboxStats) ask the
// hypervisor once for all domains, not once per domain: with a thousand VMs, a query each was a
// thousand koffi calls queued at once (koffi refuses more than 256) every poll. Over the real gRPC
// server with the in-memory hypervisor TEST DOUBLE, whose queries are counted.
import test from "ava";
import { runPodThroughCri, startUnitShim } from "./testing/unit-shim.js";

const IMAGE = "registry.test/hello:1";
const PODS = 6;

test(`stats of ${PODS} pods come from one domain list, grouped per sandbox`, async (t) => {
  const shim = await startUnitShim();
  t.teardown(() => shim.dispose());
  const cri = shim.cri;
  const pods: { sb: string; ctr: string }[] = [];
  for (let i = 0; i < PODS; i++)
    pods.push(
      await runPodThroughCri(shim, {
        name: `p${i}`,
        namespace: "default",
        image: IMAGE,
        annotations: { "superfluid.dev/memory-mib": String(4 + i) },
      }),
    );

  const hv = shim.hv;
  const calls = { info: 0, list: 0 };
  const info = hv.info.bind(hv);
  const list = hv.list.bind(hv);
  hv.info = (domid) => (calls.info++, info(domid));
  hv.list = () => (calls.list++, list());

  type Mem = { memory: { working_set_bytes: { value: string } } };
  const cs = await cri.runtime<{ stats: Array<Mem & { attributes: { id: string } }> }>("ListContainerStats", {
    filter: null,
  });
  t.is(cs.stats.length, PODS);
  t.is(calls.info, 0, "no query per domain");
  t.true(calls.list >= 1);
  for (const [i, p] of pods.entries()) {
    const s = cs.stats.find((x) => x.attributes.id === p.ctr);
    t.is(s?.memory.working_set_bytes.value, String((4 + i) * 1024 * 1024), `container ${i}'s own domain`);
  }

  const ss = await cri.runtime<{
    stats: Array<{
      attributes: { id: string };
      linux: Mem & { containers: Array<{ attributes: { id: string } }> };
    }>;
  }>("ListPodSandboxStats", { filter: null });
  t.is(ss.stats.length, PODS);
  t.is(calls.info, 0, "no query per domain");
  for (const [i, p] of pods.entries()) {
    const s = ss.stats.find((x) => x.attributes.id === p.sb);
    t.deepEqual(
      s?.linux.containers.map((c) => c.attributes.id),
      [p.ctr],
      `sandbox ${i} holds its own container`,
    );
    t.is(s?.linux.memory.working_set_bytes.value, String((4 + i) * 1024 * 1024));
  }
});
