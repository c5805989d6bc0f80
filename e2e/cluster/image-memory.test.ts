// One guest-memory figure, from the image when the spec names none: against a real kube-apiserver,
// a real registry (Debian's docker-registry) holding the examples' images as `npm run image` builds
// them (hello declares 4 MiB, http 128 MiB), and the operator in-process reading them. Each VM's pod
// carries the same figure as its guest-memory request and limit, its memory-mib annotation (what the
// shim reserves and builds the domain with) and its memory limit (what the shim checks it against).
// An image the operator cannot read gets the CRD's default and a Warning Event saying so.
import test from "ava";
import type { CoreV1Event, V1Pod } from "@kubernetes/client-node";
import { setTimeout as sleep } from "node:timers/promises";
import { ANNOTATIONS, LABELS, RESOURCES } from "../../api/index.js";
import { paths } from "../../lib/kube/client.js";
import { ImageDefaults, registryReader } from "../../operator/src/image-defaults.js";
import { type ControlPlane, startControlPlane } from "../harness/control-plane.js";
import { startRegistry, type TestRegistry } from "../harness/registry.js";
import { operatorBed } from "./operator-bed.js";
import { pushExampleImages } from "./images.js";

let cp: ControlPlane | undefined;
let registry: TestRegistry | undefined;
test.after.always(async () => {
  await registry?.stop();
  await cp?.stop();
});

async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(250);
  }
}

test("a VM without spec.memory gets its image's default memory, one figure on its pod", async (t) => {
  t.timeout(5 * 60_000);
  [cp, registry] = await Promise.all([startControlPlane(), startRegistry()]);
  const images = await pushExampleImages(registry);
  const { client, createVM } = await operatorBed(t, cp, {
    imageDefaults: new ImageDefaults(registryReader([registry.host]), { timeoutMs: 10_000 }),
  });

  const cases: Array<[string, string, string | undefined, number]> = [
    ["from-hello", images.hello!.hostRef, undefined, 4],
    ["from-http", images.http!.hostRef, undefined, 128],
    ["spec-wins", images.http!.hostRef, "32Mi", 32],
    // Nothing listens on port 1: the operator cannot read it and falls back to the default.
    ["unreadable", "127.0.0.1:1/superfluid/nope:1", undefined, 16],
  ];
  for (const [name, image, memory] of cases) await createVM(name, { image, ...(memory ? { memory } : {}) });
  const pods = await until("a pod per VM", async () => {
    const list = await client.request<{ items: V1Pod[] }>({
      method: "GET",
      path: paths.pods("default"),
      query: { labelSelector: LABELS.vm },
    });
    return list.items.length === cases.length ? list.items : undefined;
  });
  for (const [name, , , mib] of cases) {
    const pod = pods.find((p) => p.metadata?.labels?.[LABELS.vm] === name)!;
    const r = pod.spec!.containers[0]!.resources!;
    t.deepEqual(
      {
        annotation: pod.metadata?.annotations?.[ANNOTATIONS.memoryMiB],
        request: r.requests?.[RESOURCES.guestMemoryMiB],
        limit: r.limits?.[RESOURCES.guestMemoryMiB],
        memoryLimit: r.limits?.memory,
      },
      { annotation: String(mib), request: String(mib), limit: String(mib), memoryLimit: `${mib}Mi` },
      name,
    );
  }
  const warning = await until("the ImageMemoryUnknown Event", async () => {
    const list = await client.request<{ items: CoreV1Event[] }>({
      method: "GET",
      path: paths.events("default"),
      query: { fieldSelector: "involvedObject.name=unreadable" },
    });
    return list.items.find((e) => e.reason === "ImageMemoryUnknown");
  });
  t.is(warning.type, "Warning");
  t.regex(
    warning.message ?? "",
    /could not read the default memory of image 127\.0\.0\.1:1\/superfluid\/nope:1 .*16 MiB: set spec\.memory/,
  );
  t.log(warning.message);
});
