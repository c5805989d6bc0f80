// CRI dispatch against the real thing: Debian's containerd (CRI plugin, runc, native snapshotter)
// in a temp dir behind our shim's --fallback-runtime-endpoint, a Linux image built with lib/oci and
// served by Debian's docker-registry. Through OUR socket: an ordinary pod and container run in
// containerd, a superfluid pod runs beside it (in-memory hypervisor TEST DOUBLE standing in for
// Xen), lists merge, logs are written, both are stopped and removed; then containerd is halted and
// the shim reports it (Status condition, UNAVAILABLE on calls) while our pod stays up.
import test from "ava";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { status as grpcStatus, type ServiceError } from "@grpc/grpc-js";
import { buildContainerImage, buildLayer, pushImage } from "../../../lib/oci/index.js";
import { startContainerd, type TestContainerd } from "../../../e2e/harness/containerd.js";
import { startRegistry, type TestRegistry } from "../../../e2e/harness/registry.js";
import { startUnitShim, type UnitShim } from "../testing/unit-shim.js";
import { FALLBACK_UNAVAILABLE } from "./status-merge.js";

const UNIKERNEL = "registry.test/hello:1";
type Cond = { type: string; status: boolean; reason: string; message: string };
type Sandbox = { id: string; metadata: { name: string }; state: string };
type Ctr = { id: string; pod_sandbox_id: string; state: string };

let registry: TestRegistry;
let containerd: TestContainerd;
let shim: UnitShim;
let linuxImage: string;

test.before(async () => {
  registry = await startRegistry();
  linuxImage = `${registry.host}/test/busybox:1`;
  const image = buildContainerImage(
    [buildLayer([{ path: "bin/busybox", data: readFileSync("/bin/busybox"), mode: 0o755 }])],
    { entrypoint: ["/bin/busybox", "sleep", "3600"], env: ["PATH=/bin"] },
  );
  await pushImage(image, linuxImage, { plainHttp: true });
  containerd = await startContainerd({ plainHttpRegistries: [registry.host], sandboxImage: linuxImage });
  shim = await startUnitShim({ fallbackEndpoint: containerd.endpoint });
  shim.images.available.add(UNIKERNEL);
});

test.after.always(async () => {
  await shim?.dispose();
  await containerd?.stop();
  await registry?.stop();
});

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

// Host network, as kube-proxy's pod: containerd then needs no CNI network (the test changes nothing on
// the host's network); its CNI config dir holds a loopback-only list so it reports NetworkReady. As
// the kubelet does for host-network pods, no hostname is set (the pod shares the node's).
const podConfig = (name: string) => ({
  metadata: { name, namespace: "default", uid: `uid-${name}`, attempt: 0 },
  hostname: "",
  log_directory: join(shim.dir, "logs", name),
  labels: { app: name },
  annotations: {},
  linux: { security_context: { namespace_options: { network: "NODE" } } },
});

/** An ordinary pod, the kubelet's way: sandbox, then the pull naming the pod, then the container. */
async function runLinuxPod(name: string) {
  const cri = shim.cri;
  const config = podConfig(name);
  const { pod_sandbox_id: sb } = await cri.runtime<{ pod_sandbox_id: string }>("RunPodSandbox", {
    config,
    runtime_handler: "",
  });
  const { image_ref: imageRef } = await cri.image<{ image_ref: string }>("PullImage", {
    image: { image: linuxImage },
    sandbox_config: config,
  });
  const { container_id: ctr } = await cri.runtime<{ container_id: string }>("CreateContainer", {
    pod_sandbox_id: sb,
    config: {
      metadata: { name: "app", attempt: 0 },
      image: { image: imageRef },
      command: ["/bin/busybox", "sh", "-c", "echo hello-from-runc; exec /bin/busybox sleep 3600"],
      log_path: "app/0.log",
      linux: {},
    },
    sandbox_config: config,
  });
  await cri.runtime("StartContainer", { container_id: ctr });
  return { config, sb, ctr, imageRef };
}

/** A superfluid pod (our runtime handler) with its one container started; the image is pulled. */
async function runUnikernelPod(name: string): Promise<{ sb: string; ctr: string }> {
  const config = podConfig(name);
  const { pod_sandbox_id: sb } = await shim.cri.runtime<{ pod_sandbox_id: string }>("RunPodSandbox", {
    config,
    runtime_handler: "superfluid",
  });
  const { container_id: ctr } = await shim.cri.runtime<{ container_id: string }>("CreateContainer", {
    pod_sandbox_id: sb,
    config: { metadata: { name: "main", attempt: 0 }, image: { image: UNIKERNEL }, log_path: "main/0.log" },
    sandbox_config: config,
  });
  await shim.cri.runtime("StartContainer", { container_id: ctr });
  return { sb, ctr };
}

async function failure(p: Promise<unknown>): Promise<ServiceError> {
  return p.then(
    () => {
      throw new Error("the call succeeded");
    },
    (e: ServiceError) => e,
  );
}

test.serial(
  "an ordinary pod runs in containerd and a superfluid pod in the shim, through one socket",
  async (t) => {
    const cri = shim.cri;
    const status = await cri.runtime<{ status: { conditions: Cond[] } }>("Status", {});
    t.deepEqual(
      status.status.conditions.map((c) => [c.type, c.status]),
      [
        ["RuntimeReady", true],
        ["NetworkReady", true],
      ],
      JSON.stringify(status.status.conditions),
    );

    // The kubelet's order: sandbox first, then the image pull naming the pod, then the container.
    const { config: linuxPod, sb: linuxSb, ctr: linuxCtr, imageRef: linuxRef } = await runLinuxPod("linux");
    t.false(
      shim.runtime.ctx.sandboxes.resolve(linuxSb) !== undefined,
      "containerd's sandbox is not in our store",
    );
    t.regex(linuxRef, /^sha256:[0-9a-f]{64}$/);

    // A unikernel pod beside it: pulled by format (no pod named), run with our handler.
    await cri.image("PullImage", { image: { image: UNIKERNEL } });
    t.truthy(await shim.images.get(UNIKERNEL), "the unikernel image landed in our store");
    const { sb: ukSb, ctr: ukCtr } = await runUnikernelPod("uk");
    t.truthy(shim.runtime.ctx.sandboxes.resolve(ukSb), "our sandbox is ours");

    // Merged lists: both sandboxes, both containers, both images.
    const { items } = await cri.runtime<{ items: Sandbox[] }>("ListPodSandbox", {});
    t.deepEqual(items.map((s) => s.id).sort(), [linuxSb, ukSb].sort());
    const { containers } = await cri.runtime<{ containers: Ctr[] }>("ListContainers", {});
    t.deepEqual(
      containers.map((c) => [c.id, c.pod_sandbox_id, c.state]).sort(),
      [
        [linuxCtr, linuxSb, "CONTAINER_RUNNING"],
        [ukCtr, ukSb, "CONTAINER_RUNNING"],
      ].sort(),
    );
    const { images } = await cri.image<{ images: Array<{ id: string; repo_tags: string[] }> }>(
      "ListImages",
      {},
    );
    t.true(
      images.some((i) => i.repo_tags.includes(linuxImage)),
      "containerd's image listed",
    );
    t.true(
      images.some((i) => i.repo_tags.includes(UNIKERNEL)),
      "our image listed",
    );
    const { stats } = await cri.runtime<{ stats: Array<{ attributes: { id: string } }> }>(
      "ListContainerStats",
      {},
    );
    t.true(
      stats.some((s) => s.attributes.id === linuxCtr),
      "containerd's container has stats",
    );
    const fs = await cri.image<{
      image_filesystems: Array<{ fs_id: { mountpoint: string } }>;
      container_filesystems: unknown[];
    }>("ImageFsInfo", {});
    t.true(
      fs.image_filesystems[0]!.fs_id.mountpoint.startsWith(containerd.dir),
      "containerd's file system first",
    );
    t.is(fs.image_filesystems.length, 2);
    t.deepEqual(fs.container_filesystems, [], "containerd names none; ours is not the node's container fs");

    // Id-keyed calls go where the id lives.
    const linuxStatus = await cri.runtime<{ status: { state: string; log_path: string } }>(
      "ContainerStatus",
      {
        container_id: linuxCtr,
      },
    );
    t.is(linuxStatus.status.state, "CONTAINER_RUNNING");
    const imageStatus = await cri.image<{ image: { id: string } | null }>("ImageStatus", {
      image: { image: linuxImage },
    });
    t.is(imageStatus.image?.id, linuxRef);

    // The container's log, in the kubelet's CRI log format, where the kubelet looks for it.
    const logFile = join(linuxPod.log_directory, "app/0.log");
    const log = await waitFor("the container's log line", async () => {
      const text = existsSync(logFile) ? readFileSync(logFile, "utf8") : "";
      return text.includes("hello-from-runc") ? text : undefined;
    });
    t.regex(log, /^\S+ stdout F hello-from-runc$/m);
    t.is(linuxStatus.status.log_path, logFile);

    // ExecSync is forwarded to containerd's container; ours refuses with its reason.
    const exec = await cri.runtime<{ stdout: Buffer; exit_code: number }>("ExecSync", {
      container_id: linuxCtr,
      cmd: ["/bin/busybox", "echo", "inside"],
      timeout: "10",
    });
    t.is(exec.exit_code, 0);
    t.is(Buffer.from(exec.stdout).toString(), "inside\n");
    const refused = await failure(
      cri.runtime("ExecSync", { container_id: ukCtr, cmd: ["ls"], timeout: "1" }),
    );
    t.is(refused.code, grpcStatus.UNIMPLEMENTED);
    // The streaming calls answer with containerd's own streaming server URL.
    const { url } = await cri.runtime<{ url: string }>("Exec", {
      container_id: linuxCtr,
      cmd: ["/bin/busybox", "sh"],
      stdout: true,
    });
    t.regex(url, /^http:\/\/127\.0\.0\.1:\d+\/exec\//);

    // A handler no runtime on the node serves: containerd's own error, naming it.
    const kata = await failure(
      cri.runtime("RunPodSandbox", { config: podConfig("kata"), runtime_handler: "kata" }),
    );
    t.regex(kata.details, /fallback runtime unix:\/\/.*: .*"kata"/);

    // Stop and remove both; nothing is left on either side.
    await cri.runtime("StopContainer", { container_id: linuxCtr, timeout: "1" });
    await cri.runtime("RemoveContainer", { container_id: linuxCtr });
    await cri.runtime("StopPodSandbox", { pod_sandbox_id: linuxSb });
    await cri.runtime("RemovePodSandbox", { pod_sandbox_id: linuxSb });
    await cri.runtime("StopPodSandbox", { pod_sandbox_id: ukSb });
    await cri.runtime("RemovePodSandbox", { pod_sandbox_id: ukSb });
    t.deepEqual((await cri.runtime<{ items: Sandbox[] }>("ListPodSandbox", {})).items, []);
    t.deepEqual((await cri.runtime<{ containers: Ctr[] }>("ListContainers", {})).containers, []);
  },
);

test.serial(
  "GetContainerEvents beside a containerd without it: the stream ends with containerd's answer",
  async (t) => {
    // Debian's containerd 1.6 does not serve GetContainerEvents. Our events alone would leave the
    // kubelet blind to containerd's pods for its 5-minute relists, so the stream ends with containerd's
    // error (the kubelet falls back to relisting every second after five tries).
    const stream = shim.cri.runtimeStream("GetContainerEvents");
    const got: unknown[] = [];
    stream.on("data", (m) => got.push(m));
    const err = await new Promise<ServiceError>((resolve) => stream.on("error", resolve));
    t.is(err.code, grpcStatus.UNIMPLEMENTED);
    t.regex(err.details, /^fallback runtime's events: /);
    t.deepEqual(got, []);
    t.is(shim.runtime.events.subscriberCount, 0, "our side of it unsubscribed");
  },
);

test.serial(
  "containerd down mid-call: reported in Status and on its calls; no pod of either side is lost",
  async (t) => {
    const cri = shim.cri;
    await cri.image("PullImage", { image: { image: UNIKERNEL } });
    const { sb: ukSb, ctr: ukCtr } = await runUnikernelPod("uk-2");
    const linux = await runLinuxPod("linux-3");

    // containerd goes away in the middle of a call: that call fails, naming it; the shim stays up.
    const inFlight = failure(
      cri.runtime("ExecSync", {
        container_id: linux.ctr,
        cmd: ["/bin/busybox", "sleep", "20"],
        timeout: "60",
      }),
    );
    await new Promise((r) => setTimeout(r, 1000));
    await containerd.halt();
    t.regex((await inFlight).details, /fallback runtime unix:\/\//);

    const status = await cri.runtime<{ status: { conditions: Cond[] } }>("Status", {});
    const ready = status.status.conditions.find((c) => c.type === "RuntimeReady");
    t.false(ready?.status);
    t.is(ready?.reason, FALLBACK_UNAVAILABLE);
    t.true(ready?.message.includes(containerd.endpoint), ready?.message);

    const list = await failure(cri.runtime("ListPodSandbox", {}));
    t.is(list.code, grpcStatus.UNAVAILABLE);
    t.regex(list.details, /fallback runtime unix:\/\/.* is unavailable \(ListPodSandbox\)/);
    const run = await failure(
      cri.runtime("RunPodSandbox", { config: podConfig("linux-2"), runtime_handler: "" }),
    );
    t.is(run.code, grpcStatus.UNAVAILABLE);

    // Our side answers as before: the pod and its domain are untouched.
    const ours = await cri.runtime<{ status: { state: string } }>("ContainerStatus", { container_id: ukCtr });
    t.is(ours.status.state, "CONTAINER_RUNNING");
    t.is((await shim.hv.list()).length, 1);

    // containerd back: the shim reconnects on its own.
    await containerd.resume();
    await waitFor("RuntimeReady again", async () => {
      const s = await cri.runtime<{ status: { conditions: Cond[] } }>("Status", {});
      return s.status.conditions.every((c) => c.status) ? true : undefined;
    });
    // Neither side lost its pod: containerd's container outlived containerd (its runc shim kept it).
    const { items } = await cri.runtime<{ items: Sandbox[] }>("ListPodSandbox", {});
    t.deepEqual(items.map((s) => s.id).sort(), [ukSb, linux.sb].sort());
    const { containers } = await cri.runtime<{ containers: Ctr[] }>("ListContainers", {});
    t.deepEqual(
      containers.map((c) => [c.id, c.state]).sort(),
      [
        [linux.ctr, "CONTAINER_RUNNING"],
        [ukCtr, "CONTAINER_RUNNING"],
      ].sort(),
    );
    await cri.runtime("StopContainer", { container_id: linux.ctr, timeout: "1" });
    for (const sb of [ukSb, linux.sb]) {
      await cri.runtime("StopPodSandbox", { pod_sandbox_id: sb });
      await cri.runtime("RemovePodSandbox", { pod_sandbox_id: sb });
    }
    t.deepEqual((await cri.runtime<{ items: Sandbox[] }>("ListPodSandbox", {})).items, []);
  },
);
