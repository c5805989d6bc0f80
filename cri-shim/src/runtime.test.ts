// The CRI services end to end over the real gRPC server, the real unix socket and Debian's real
// host-local IPAM plugin, with the in-memory hypervisor TEST DOUBLE standing in for Xen (the Xen
// proofs are cri-shim/*.xen.test.ts). Assertions look at the world: log files, leases, domains, state.
import test from "ava";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { ServiceError } from "@grpc/grpc-js";
import { startUnitShim, type UnitShim } from "./testing/unit-shim.js";

const IMAGE = "registry.test/hello:1";

function sandboxConfig(
  shim: UnitShim,
  name: string,
  annotations: Record<string, string> = {},
): Record<string, unknown> {
  return {
    metadata: { name, namespace: "default", uid: `uid-${name}`, attempt: 0 },
    hostname: name,
    log_directory: join(shim.dir, "logs", name),
    labels: { app: name },
    annotations,
  };
}

async function waitUntil(what: string, probe: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await probe())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function leases(shim: UnitShim): string[] {
  const dir = join(shim.ipamDir, "superfluid");
  return existsSync(dir) ? readdirSync(dir).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : [];
}

async function expectCode(
  t: { is: (a: unknown, b: unknown, m?: string) => void; regex: (s: string, r: RegExp) => void },
  p: Promise<unknown>,
  code: string,
  message: RegExp,
): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: ServiceError) => e,
  );
  t.is(err ? (await import("@grpc/grpc-js")).status[err.code] : "OK", code, `expected ${code}`);
  t.regex(err?.details ?? "", message);
}

async function runHello(
  shim: UnitShim,
  name: string,
  annotations: Record<string, string> = {},
): Promise<{ sb: string; ctr: string }> {
  const cri = shim.cri;
  shim.images.available.add(IMAGE);
  await cri.image("PullImage", { image: { image: IMAGE } });
  const config = sandboxConfig(shim, name, annotations);
  const { pod_sandbox_id: sb } = await cri.runtime<{ pod_sandbox_id: string }>("RunPodSandbox", { config });
  const { container_id: ctr } = await cri.runtime<{ container_id: string }>("CreateContainer", {
    pod_sandbox_id: sb,
    config: {
      metadata: { name: "main", attempt: 0 },
      image: { image: IMAGE },
      log_path: "main/0.log",
      args: ["greeting=hi"],
    },
    sandbox_config: config,
  });
  await cri.runtime("StartContainer", { container_id: ctr });
  return { sb, ctr };
}

test("a pod runs through the whole CRI lifecycle and leaves nothing behind", async (t) => {
  const shim = await startUnitShim();
  t.teardown(() => shim.dispose());
  const cri = shim.cri;
  t.is(statSync(shim.socket).mode & 0o777, 0o600);
  const v = await cri.runtime<{ runtime_name: string; runtime_api_version: string }>("Version");
  t.is(v.runtime_name, "superfluid");
  t.is(v.runtime_api_version, "v1");
  const st = await cri.runtime<{ status: { conditions: { type: string; status: boolean }[] } }>("Status");
  t.deepEqual(
    st.status.conditions.map((c) => [c.type, c.status]),
    [
      ["RuntimeReady", true],
      ["NetworkReady", true],
    ],
  );

  const { sb, ctr } = await runHello(shim, "web");
  const insp = await cri.runtime<{ status: { network: { ip: string }; state: string } }>("PodSandboxStatus", {
    pod_sandbox_id: sb,
  });
  t.is(insp.status.state, "SANDBOX_READY");
  t.regex(insp.status.network.ip, /^10\.89\.0\.\d+$/);
  t.deepEqual(leases(shim), [insp.status.network.ip]);

  // The domain was built with the kernel from the tmpfs cache and the pod's IP on its command line.
  const [domain] = await shim.hv.list();
  t.is(domain?.name, `sf-${sb.slice(0, 12)}`);
  t.is(domain?.state, "running");
  const cs = await cri.runtime<{ status: { state: string; log_path: string }; info: { info: string } }>(
    "ContainerStatus",
    { container_id: ctr, verbose: true },
  );
  t.is(cs.status.state, "CONTAINER_RUNNING");
  const detail = JSON.parse(cs.info.info) as { cmdline: string; kernelPath: string };
  t.true(
    detail.cmdline.includes(`ip=${insp.status.network.ip}/24`) &&
      detail.cmdline.includes("gw=10.89.0.1") &&
      detail.cmdline.includes("greeting=hi"),
    detail.cmdline,
  );
  t.true(detail.kernelPath.startsWith(join(shim.dir, "kernels")));

  // The console reaches the CRI log file in the kubelet's format.
  const logPath = join(shim.dir, "logs", "web", "main", "0.log");
  t.is(cs.status.log_path, logPath);
  await waitUntil(
    "ready line in the log",
    () => existsSync(logPath) && readFileSync(logPath, "utf8").includes("hello: ready"),
  );
  t.regex(
    readFileSync(logPath, "utf8"),
    /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z stdout F hello: ready cmdline=".*"$/m,
  );
  t.false(readFileSync(logPath, "utf8").includes("\r"));

  const stats = await cri.runtime<{
    stats: {
      cpu: { usage_core_nano_seconds: { value: string } };
      memory: { working_set_bytes: { value: string } };
    };
  }>("ContainerStats", { container_id: ctr });
  t.is(stats.stats.memory.working_set_bytes.value, String(8 * 1024 * 1024)); // the image's default memory
  t.true(BigInt(stats.stats.cpu.usage_core_nano_seconds.value) > 0n);
  const list = await cri.runtime<{ containers: { id: string }[] }>("ListContainers", {
    filter: { pod_sandbox_id: sb, label_selector: {} },
  });
  t.deepEqual(
    list.containers.map((c) => c.id),
    [ctr],
  );

  // Balloon down and one more vcpu.
  await cri.runtime("UpdateContainerResources", {
    container_id: ctr,
    linux: { memory_limit_in_bytes: String(6 * 1024 * 1024), cpu_quota: "200000", cpu_period: "100000" },
  });
  const after = await shim.hv.info(domain!.domid);
  t.is(after?.memoryKiB, 6 * 1024);
  t.is(after?.vcpus, 2);

  await cri.runtime("StopContainer", { container_id: ctr, timeout: "5" });
  const stopped = await cri.runtime<{ status: { state: string; exit_code: number; reason: string } }>(
    "ContainerStatus",
    { container_id: ctr },
  );
  t.like(stopped.status, { state: "CONTAINER_EXITED", exit_code: 0, reason: "Completed" });
  t.deepEqual(await shim.hv.list(), []);
  await cri.runtime("StopContainer", { container_id: ctr, timeout: "5" }); // idempotent

  await cri.runtime("RemoveContainer", { container_id: ctr });
  t.false(existsSync(logPath));
  await cri.runtime("StopPodSandbox", { pod_sandbox_id: sb });
  t.deepEqual(leases(shim), []);
  await cri.runtime("RemovePodSandbox", { pod_sandbox_id: sb });
  await cri.runtime("RemovePodSandbox", { pod_sandbox_id: sb }); // idempotent
  await cri.runtime("StopPodSandbox", { pod_sandbox_id: sb }); // idempotent after removal too
  await cri.runtime("StopContainer", { container_id: ctr, timeout: "1" });
  t.deepEqual((await cri.runtime<{ items: unknown[] }>("ListPodSandbox")).items, []);
  t.deepEqual(readdirSync(join(shim.stateDir, "sandboxes")), []);
  t.deepEqual(readdirSync(join(shim.stateDir, "containers")), []);
});

test("bad input gets the right gRPC code and a clear message, and leaks nothing", async (t) => {
  const shim = await startUnitShim();
  t.teardown(() => shim.dispose());
  const cri = shim.cri;
  await expectCode(
    t,
    cri.image("PullImage", { image: { image: "registry.test/nope:1" } }),
    "NOT_FOUND",
    /manifest unknown/,
  );
  await expectCode(
    t,
    cri.runtime("RunPodSandbox", {
      config: sandboxConfig(shim, "a", { "superfluid.dev/memory-mib": "lots" }),
    }),
    "INVALID_ARGUMENT",
    /memory-mib: must be a positive integer/,
  );
  await expectCode(
    t,
    cri.runtime("RunPodSandbox", { config: sandboxConfig(shim, "a", { "superfluid.dev/args": "[1,2" }) }),
    "INVALID_ARGUMENT",
    /args: not valid JSON/,
  );
  await expectCode(
    t,
    cri.runtime("RunPodSandbox", {
      config: sandboxConfig(shim, "big", { "superfluid.dev/memory-mib": "60000" }),
    }),
    "RESOURCE_EXHAUSTED",
    /needs 60000 MiB.*4096 MiB free/,
  );
  await expectCode(t, cri.runtime("RunPodSandbox", {}), "INVALID_ARGUMENT", /config is required/);
  await expectCode(
    t,
    cri.runtime("RunPodSandbox", {
      config: { ...sandboxConfig(shim, "x"), metadata: { name: "x\u0000y", namespace: "d", uid: "u" } },
    }),
    "INVALID_ARGUMENT",
    /metadata.name contains control characters/,
  );
  await expectCode(
    t,
    cri.runtime("RunPodSandbox", {
      config: { ...sandboxConfig(shim, "x"), metadata: { name: "x".repeat(5000), namespace: "d", uid: "u" } },
    }),
    "INVALID_ARGUMENT",
    /5000 characters/,
  );
  await expectCode(
    t,
    cri.runtime("RunPodSandbox", { config: { ...sandboxConfig(shim, "x"), hostname: "bad host;rm" } }),
    "INVALID_ARGUMENT",
    /not a valid host name/,
  );
  await expectCode(
    t,
    cri.runtime("RunPodSandbox", { config: { ...sandboxConfig(shim, "x"), log_directory: "relative/../x" } }),
    "INVALID_ARGUMENT",
    /log_directory must be a normalised absolute path/,
  );
  await expectCode(
    t,
    cri.runtime("RunPodSandbox", { config: sandboxConfig(shim, "x"), runtime_handler: "runc" }),
    "INVALID_ARGUMENT",
    /runtime handler "runc" is not served here/,
  );
  t.deepEqual(leases(shim), [], "no IP leased by refused sandboxes");

  const { sb, ctr } = await runHello(shim, "dup");
  await expectCode(
    t,
    cri.runtime("RunPodSandbox", { config: sandboxConfig(shim, "dup") }),
    "ALREADY_EXISTS",
    /already used by sandbox/,
  );
  await expectCode(
    t,
    cri.runtime("CreateContainer", {
      pod_sandbox_id: sb,
      config: { metadata: { name: "main", attempt: 0 }, image: { image: IMAGE } },
    }),
    "ALREADY_EXISTS",
    /already exists/,
  );
  await expectCode(
    t,
    cri.runtime("CreateContainer", {
      pod_sandbox_id: sb,
      config: { metadata: { name: "two", attempt: 0 }, image: { image: IMAGE } },
    }),
    "FAILED_PRECONDITION",
    /one container/,
  );
  await expectCode(
    t,
    cri.runtime("CreateContainer", {
      pod_sandbox_id: sb,
      config: { metadata: { name: "x", attempt: 0 }, image: { image: IMAGE }, log_path: "../../etc/passwd" },
    }),
    "INVALID_ARGUMENT",
    /log_path must be relative/,
  );
  await expectCode(
    t,
    cri.runtime("CreateContainer", {
      pod_sandbox_id: "f".repeat(64),
      config: { metadata: { name: "x", attempt: 0 }, image: { image: IMAGE } },
    }),
    "NOT_FOUND",
    /pod sandbox "f+" not found/,
  );
  await expectCode(
    t,
    cri.runtime("StartContainer", { container_id: ctr }),
    "FAILED_PRECONDITION",
    /is running, only a created container can start/,
  );
  await expectCode(
    t,
    cri.runtime("ExecSync", { container_id: ctr, cmd: ["sh"] }),
    "UNIMPLEMENTED",
    /unikernels have no shell\/process model/,
  );
  await expectCode(
    t,
    cri.runtime("Exec", { container_id: ctr, cmd: ["sh"] }),
    "UNIMPLEMENTED",
    /unikernels have no shell\/process model/,
  );
  await expectCode(t, cri.runtime("Attach", { container_id: ctr }), "UNIMPLEMENTED", /crictl logs/);
  await expectCode(
    t,
    cri.runtime("PortForward", { pod_sandbox_id: sb }),
    "UNIMPLEMENTED",
    /network namespace/,
  );
  await expectCode(
    t,
    cri.runtime("ContainerStatus", { container_id: "" }),
    "INVALID_ARGUMENT",
    /container_id is required/,
  );
  await expectCode(
    t,
    cri.runtime("UpdateContainerResources", {
      container_id: ctr,
      linux: { memory_limit_in_bytes: String(64 << 20) },
    }),
    "INVALID_ARGUMENT",
    /above the domain's maximum/,
  );

  // An image that was never pulled, in a fresh sandbox: refused, and that sandbox's domain never exists.
  const other = await cri.runtime<{ pod_sandbox_id: string }>("RunPodSandbox", {
    config: sandboxConfig(shim, "other"),
  });
  await expectCode(
    t,
    cri.runtime("CreateContainer", {
      pod_sandbox_id: other.pod_sandbox_id,
      config: { metadata: { name: "m", attempt: 0 }, image: { image: "registry.test/unknown:2" } },
    }),
    "NOT_FOUND",
    /not present on this node; pull it first/,
  );
  await expectCode(
    t,
    cri.runtime("CreateContainer", {
      pod_sandbox_id: other.pod_sandbox_id,
      config: { metadata: { name: "m", attempt: 0 }, image: { image: IMAGE }, args: ["two words"] },
    }),
    "INVALID_ARGUMENT",
    /cannot go on a kernel command line/,
  );
  t.is((await shim.hv.list()).length, 1);
  await cri.runtime("RemovePodSandbox", { pod_sandbox_id: other.pod_sandbox_id });
  await cri.runtime("RemovePodSandbox", { pod_sandbox_id: sb });
  t.deepEqual(leases(shim), []);
  t.deepEqual(await shim.hv.list(), []);
  t.deepEqual(readdirSync(join(shim.stateDir, "sandboxes")), []);
});

test("a guest that ignores poweroff is destroyed after the grace period; a crash is seen as exit 139", async (t) => {
  const shim = await startUnitShim();
  t.teardown(() => shim.dispose());
  const cri = shim.cri;
  shim.hv.obeyShutdown = false;
  const first = await runHello(shim, "stubborn");
  const started = Date.now();
  await cri.runtime("StopContainer", { container_id: first.ctr, timeout: "1" });
  t.true(Date.now() - started >= 1000);
  const st = await cri.runtime<{ status: { exit_code: number; reason: string } }>("ContainerStatus", {
    container_id: first.ctr,
  });
  t.like(st.status, { exit_code: 137, reason: "Killed" });
  t.deepEqual(await shim.hv.list(), []);

  const second = await runHello(shim, "crashy");
  const [d] = await shim.hv.list();
  shim.hv.crash(d!.domid);
  await waitUntil(
    "exit noticed",
    async () =>
      (await cri.runtime<{ status: { state: string } }>("ContainerStatus", { container_id: second.ctr }))
        .status.state === "CONTAINER_EXITED",
  );
  const cs = await cri.runtime<{ status: { exit_code: number; reason: string } }>("ContainerStatus", {
    container_id: second.ctr,
  });
  t.like(cs.status, { exit_code: 139, reason: "Crashed" });
  t.deepEqual(await shim.hv.list(), [], "the crashed domain is destroyed so its memory returns");
});

test("a restarted shim adopts running domains and cleans half-made objects", async (t) => {
  let shim = await startUnitShim();
  t.teardown(() => shim.dispose());
  const kept = await runHello(shim, "kept");
  // A half-made sandbox (written as creating, IP leased, then the shim died) ...
  const half = await shim.runtime.ctx.sandboxes.create(
    {
      ...shim.runtime.ctx.sandboxes.get(kept.sb)!.meta,
      id: "ab".repeat(32),
      nameKey: "half",
      domainName: "sf-abababababab",
    },
    { state: "creating" },
  );
  await shim.runtime.ctx.network.setUp(half.meta.id);
  // ... and a domain named like ours that no container owns.
  await shim.hv.strayDomain("sf-0123456789ab", 4);
  t.is(leases(shim).length, 2);

  shim = await shim.restart();
  const report = shim.runtime.recovery!;
  t.is(report.adopted, 1);
  t.is(report.removedHalfMadeSandboxes, 1);
  t.deepEqual(report.destroyedOrphanDomains, ["sf-0123456789ab"]);
  t.is(leases(shim).length, 1);
  const list = await shim.cri.runtime<{ items: { id: string }[] }>("ListPodSandbox");
  t.deepEqual(
    list.items.map((i) => i.id),
    [kept.sb],
  );
  t.deepEqual(
    (await shim.hv.list()).map((d) => d.name),
    [`sf-${kept.sb.slice(0, 12)}`],
  );
  // The backend was handed the adopted domain with its vif (the lean backend re-attaches what a
  // killed process left unattached).
  const net = shim.runtime.ctx.sandboxes.get(kept.sb)!.status.network!;
  t.deepEqual(shim.hv.adopted, [
    { domid: (await shim.hv.list())[0]!.domid, vifs: [{ bridge: net.bridge, mac: net.mac }] },
  ]);
  // The adopted domain's console still reaches the log, and it stops cleanly.
  const [d] = await shim.hv.list();
  shim.hv.console(d!.domid, "after restart\n");
  const logPath = join(shim.dir, "logs", "kept", "main", "0.log");
  await waitUntil("console line after restart", () =>
    readFileSync(logPath, "utf8").includes("stdout F after restart"),
  );
  await shim.cri.runtime("RemovePodSandbox", { pod_sandbox_id: kept.sb });
  t.deepEqual(leases(shim), []);
  t.deepEqual(await shim.hv.list(), []);
});

test("a burst of RunPodSandbox calls never promises more guest memory than Xen has free, nor refuses what fits", async (t) => {
  const shim = await startUnitShim();
  t.teardown(() => shim.dispose());
  shim.hv.totalMemoryKiB = 100 * 1024; // 100 MiB for guests, none used yet
  const tries = Array.from({ length: 30 }, (_, i) =>
    shim.cri
      .runtime<{ pod_sandbox_id: string }>("RunPodSandbox", {
        config: sandboxConfig(shim, `burst-${i}`, { "superfluid.dev/memory-mib": "8" }),
      })
      .then(
        () => "ok",
        (e: ServiceError) => e.details,
      ),
  );
  const results = await Promise.all(tries);
  t.is(results.filter((r) => r === "ok").length, 12, "12 x 8 MiB fit in 100 MiB, a 13th does not");
  const refusals = results.filter((r) => r !== "ok");
  t.is(refusals.length, 18);
  for (const r of refusals)
    t.regex(r, /needs 8 MiB of guest memory; the node has 100 MiB free and 96 MiB of it promised/);
  t.is(leases(shim).length, 12, "an address for each admitted sandbox only");
  // A stopped sandbox holds nothing: one more now fits.
  const { items } = await shim.cri.runtime<{ items: Array<{ id: string }> }>("ListPodSandbox", {});
  await shim.cri.runtime("StopPodSandbox", { pod_sandbox_id: items[0]!.id });
  await shim.cri.runtime("RunPodSandbox", {
    config: sandboxConfig(shim, "after-stop", { "superfluid.dev/memory-mib": "8" }),
  });
  t.is(leases(shim).length, 12, "the stopped one's address went back, the new one has one");
});
