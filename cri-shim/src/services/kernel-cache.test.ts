// The kernel cache (tmpfs) is collected with its images, through the real CRI server over the
// in-memory hypervisor TEST DOUBLE: a copy stays while its image or a container needs it, and no longer.
import test from "ava";
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startUnitShim, type UnitShim } from "../testing/unit-shim.js";

const A = "registry.test/a:1";
const B = "registry.test/b:1";

async function run(shim: UnitShim, name: string, image: string): Promise<{ sb: string; ctr: string }> {
  shim.images.available.add(image);
  await shim.cri.image("PullImage", { image: { image } });
  const config = {
    metadata: { name, namespace: "default", uid: `uid-${name}`, attempt: 0 },
    hostname: name,
    log_directory: join(shim.dir, "logs", name),
  };
  const { pod_sandbox_id: sb } = await shim.cri.runtime<{ pod_sandbox_id: string }>("RunPodSandbox", {
    config,
  });
  const { container_id: ctr } = await shim.cri.runtime<{ container_id: string }>("CreateContainer", {
    pod_sandbox_id: sb,
    config: { metadata: { name: "main", attempt: 0 }, image: { image }, log_path: "main/0.log" },
    sandbox_config: config,
  });
  await shim.cri.runtime("StartContainer", { container_id: ctr });
  return { sb, ctr };
}

const cached = (shim: UnitShim) => readdirSync(join(shim.dir, "kernels")).sort();
const idOf = async (shim: UnitShim, ref: string) => (await shim.images.get(ref))!.id.replace(/^sha256:/, "");

test("a kernel copy goes with its image, and not while a container still names it", async (t) => {
  const shim = await startUnitShim();
  t.teardown(() => shim.dispose());
  const a = await run(shim, "a", A);
  const b = await run(shim, "b", B);
  const [idA, idB] = [await idOf(shim, A), await idOf(shim, B)];
  t.deepEqual(cached(shim), [idA, idB].sort());

  // The kubelet's image GC: B's pod goes first, then the image; the copy in tmpfs goes with it.
  await shim.cri.runtime("StopPodSandbox", { pod_sandbox_id: b.sb });
  await shim.cri.runtime("RemovePodSandbox", { pod_sandbox_id: b.sb });
  t.deepEqual(cached(shim), [idA, idB].sort(), "the image is still there: its kernel copy stays");
  await shim.cri.image("RemoveImage", { image: { image: B } });
  t.deepEqual(cached(shim), [idA]);

  // A's image removed while an exited container of it is still recorded: the copy stays until the
  // container record goes (a restore would read it), then it goes too.
  await shim.cri.runtime("StopContainer", { container_id: a.ctr, timeout: 0 });
  await shim.cri.image("RemoveImage", { image: { image: A } });
  t.deepEqual(cached(shim), [idA]);
  await shim.cri.runtime("RemoveContainer", { container_id: a.ctr });
  t.deepEqual(cached(shim), []);
});

test("at start, copies of images removed while the shim was down are collected", async (t) => {
  let shim = await startUnitShim();
  t.teardown(() => shim.dispose());
  await run(shim, "a", A);
  const idA = await idOf(shim, A);
  const stray = join(shim.dir, "kernels", "f".repeat(64));
  mkdirSync(stray);
  writeFileSync(join(stray, "kernel"), "an image nobody has any more");
  shim = await shim.restart();
  t.false(existsSync(stray));
  t.deepEqual(cached(shim), [idA]);
});
