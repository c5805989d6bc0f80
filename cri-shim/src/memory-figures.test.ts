// One guest-memory figure per pod, through the CRI of a real shim over the in-memory hypervisor TEST
// DOUBLE: the domain is built with the pod's superfluid.dev/memory-mib; a pod whose annotation and
// container memory limit disagree is refused at CreateContainer with both figures in the reason,
// and leaves nothing behind.
import test from "ava";
import type { ServiceError } from "@grpc/grpc-js";
import { status } from "@grpc/grpc-js";
import { join } from "node:path";
import { guestMemoryMiB } from "./services/guest-config.js";
import { startUnitShim } from "./testing/unit-shim.js";

const IMAGE = "registry.test/hello:1";
const MiB = 1024 * 1024;

test("figures: the annotation, else the image, else the limit, else the default; annotation and limit must agree", (t) => {
  const f = (annotated?: number, image?: number, limitMiB?: number) =>
    guestMemoryMiB({
      annotated,
      image,
      resources: limitMiB === undefined ? undefined : { memory_limit_in_bytes: String(limitMiB * MiB) },
      fallback: 64,
    });
  t.is(f(16, 128, 16), 16);
  t.is(f(16, 128), 16);
  t.is(f(undefined, 128, 32), 128);
  t.is(f(undefined, undefined, 32), 32);
  t.is(f(), 64);
  t.throws(() => f(16, undefined, 64), {
    message: /annotation superfluid\.dev\/memory-mib says 16 MiB, the container's memory limit says 64 MiB/,
  });
});

test("CRI: a pod whose guest-memory figures disagree is refused with a clear reason; an agreeing one gets its figure", async (t) => {
  const shim = await startUnitShim();
  t.teardown(() => shim.dispose());
  shim.images.available.add(IMAGE);
  await shim.cri.image("PullImage", { image: { image: IMAGE } });
  const run = async (name: string, limitMiB: number) => {
    const config = {
      metadata: { name, namespace: "default", uid: `uid-${name}`, attempt: 0 },
      hostname: name,
      log_directory: join(shim.dir, "logs", name),
      annotations: { "superfluid.dev/memory-mib": "16" },
    };
    const { pod_sandbox_id: sb } = await shim.cri.runtime<{ pod_sandbox_id: string }>("RunPodSandbox", {
      config,
    });
    const created = shim.cri.runtime<{ container_id: string }>("CreateContainer", {
      pod_sandbox_id: sb,
      config: {
        metadata: { name: "main", attempt: 0 },
        image: { image: IMAGE },
        log_path: "main/0.log",
        linux: { resources: { memory_limit_in_bytes: String(limitMiB * MiB) } },
      },
      sandbox_config: config,
    });
    return { sb, created };
  };

  const bad = await run("bad", 64);
  const err = await bad.created.then(
    () => undefined,
    (e: ServiceError) => e,
  );
  t.is(err?.code, status.INVALID_ARGUMENT);
  t.log(err?.details);
  t.regex(
    err?.details ?? "",
    /guest memory figures disagree: .* says 16 MiB, the container's memory limit says 64 MiB/,
  );
  t.deepEqual(await shim.hv.list(), [], "no domain was built");
  const listed = await shim.cri.runtime<{ containers?: unknown[] }>("ListContainers", {});
  t.deepEqual(listed.containers ?? [], [], "no container record");

  const good = await run("good", 16);
  const { container_id: ctr } = await good.created;
  const [dom] = await shim.hv.list();
  t.is(dom?.maxMemoryKiB, 16 * 1024, "the domain has the one figure");
  await shim.cri.runtime("RemoveContainer", { container_id: ctr });
  for (const sb of [bad.sb, good.sb]) await shim.cri.runtime("RemovePodSandbox", { pod_sandbox_id: sb });
  t.deepEqual(await shim.hv.list(), []);
});
