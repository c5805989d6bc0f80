// The kubelet's stats polls over many pods (ListContainerStats, ListPodSandboxStats) ask the
// hypervisor once for all domains, not once per domain: with a thousand VMs, a query each was a
// thousand koffi calls queued at once (koffi refuses more than 256) every poll. Over the real gRPC
// server with the in-memory hypervisor TEST DOUBLE, whose queries are counted.
import test from "ava";
import { join } from "node:path";
import { startUnitShim } from "./testing/unit-shim.js";

const IMAGE = "registry.test/hello:1";
const PODS = 6;

test(`stats of ${PODS} pods come from one domain list, grouped per sandbox`, async (t) => {
  const shim = await startUnitShim();
  t.teardown(() => shim.dispose());
  const cri = shim.cri;
  shim.images.available.add(IMAGE);
  await cri.image("PullImage", { image: { image: IMAGE } });
  const pods: { sb: string; ctr: string }[] = [];
  for (let i = 0; i < PODS; i++) {
    const name = `p${i}`;
    const config = {
      metadata: { name, namespace: "default", uid: `uid-${name}`, attempt: 0 },
      log_directory: join(shim.dir, "logs", name),
      annotations: { "superfluid.dev/memory-mib": String(4 + i) },
    };
    const { pod_sandbox_id: sb } = await cri.runtime<{ pod_sandbox_id: string }>("RunPodSandbox", { config });
    const { container_id: ctr } = await cri.runtime<{ container_id: string }>("CreateContainer", {
      pod_sandbox_id: sb,
      config: { metadata: { name: "main", attempt: 0 }, image: { image: IMAGE }, log_path: "main/0.log" },
      sandbox_config: config,
    });
    await cri.runtime("StartContainer", { container_id: ctr });
    pods.push({ sb, ctr });
  }

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
