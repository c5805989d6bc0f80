// The CRI's view of a migrating container, over the real gRPC server, stores, exit monitor and
// recovery, with the in-memory hypervisor TEST DOUBLE standing in for Xen (the Xen proof is
// agent/migrate.xen.test.ts). Target: a receiving container has no domain, runs for the kubelet, and
// StopContainer cancels its receive. Source: a migrated-away container stays running without a domain
// and its StopContainer touches no domain. Both across a shim restart.
import test from "ava";
import { join } from "node:path";
import { startUnitShim, type UnitShim } from "../testing/unit-shim.js";
import { adoptReceivedDomain, markMigratedAway, recordOutgoing } from "./migration-records.js";

const IMAGE = "registry.test/hello:1";
const MONITOR_PASSES_MS = 300; // six passes at the unit shim's 50 ms

async function runPod(
  shim: UnitShim,
  name: string,
  annotations: Record<string, string>,
): Promise<{ sb: string; ctr: string }> {
  shim.images.available.add(IMAGE);
  await shim.cri.image("PullImage", { image: { image: IMAGE } });
  const config = {
    metadata: { name, namespace: "default", uid: `uid-${name}`, attempt: 0 },
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
  return { sb, ctr };
}

const status = async (shim: UnitShim, ctr: string) =>
  (
    await shim.cri.runtime<{ status: { state: string; reason: string; message: string } }>(
      "ContainerStatus",
      { container_id: ctr },
    )
  ).status;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const TARGET = { "superfluid.dev/vm": "default/v", "superfluid.dev/migration-target": "move-v" };

test("target: a receiving container builds no domain, runs for the kubelet across monitor passes and a restart", async (t) => {
  let shim = await startUnitShim();
  t.teardown(() => shim.dispose());
  const { sb, ctr } = await runPod(shim, "v-target", TARGET);
  t.deepEqual(await shim.hv.list(), [], "no domain: it comes over the wire");
  const rec = shim.runtime.ctx.containers.get(ctr)!.status;
  t.deepEqual(rec.incoming, { migration: "move-v" });
  t.is(rec.domid, undefined);
  await sleep(MONITOR_PASSES_MS);
  t.is((await status(shim, ctr)).state, "CONTAINER_RUNNING", "the exit monitor leaves it alone");
  const sandbox = await shim.cri.runtime<{ status: { state: string; network: { ip: string } } }>(
    "PodSandboxStatus",
    { pod_sandbox_id: sb },
  );
  t.is(sandbox.status.state, "SANDBOX_READY");
  t.regex(sandbox.status.network.ip, /^10\.89\.0\.\d+$/, "the target pod got its own IP");

  // A restore cut off by a shim restart leaves a domain by the container's name: recovery removes it.
  await shim.hv.strayDomain(`sf-${sb.slice(0, 12)}`);
  shim = await shim.restart();
  t.deepEqual(await shim.hv.list(), [], "the half-received domain is gone");
  t.is((await status(shim, ctr)).state, "CONTAINER_RUNNING");
  t.deepEqual(
    shim.runtime.ctx.containers.get(ctr)!.status.incoming,
    { migration: "move-v" },
    "still waiting for its domain",
  );

  // The receive completes: an ordinary running container with the domain's id and the guest's vif.
  const domid = await shim.hv.strayDomain(`sf-${sb.slice(0, 12)}`);
  await shim.hv.unpause(domid);
  await adoptReceivedDomain(
    shim.runtime.ctx,
    shim.runtime.containers,
    shim.runtime.ctx.containers.get(ctr)!,
    domid,
    { mac: "00:16:3e:aa:bb:cc", ip: "10.244.1.7" },
  );
  const adopted = shim.runtime.ctx.containers.get(ctr)!.status;
  t.is(adopted.domid, domid);
  t.is(adopted.incoming, undefined);
  t.deepEqual(adopted.guestNetwork, { mac: "00:16:3e:aa:bb:cc", ip: "10.244.1.7" });
  shim.hv.crash(domid);
  // Polled with a deadline: on a loaded machine a pass can come late.
  for (let i = 0; i < 100 && (await status(shim, ctr)).state !== "CONTAINER_EXITED"; i++) await sleep(100);
  t.like(
    await status(shim, ctr),
    { state: "CONTAINER_EXITED", reason: "Crashed" },
    "from now on the exit monitor watches it",
  );

  // The kubelet restarts the exited container in the same pod: the VM was received once, so the new
  // container boots from its image (a fresh domain) instead of waiting for another stream.
  const { container_id: again } = await shim.cri.runtime<{ container_id: string }>("CreateContainer", {
    pod_sandbox_id: sb,
    config: { metadata: { name: "main", attempt: 1 }, image: { image: IMAGE }, log_path: "main/1.log" },
    sandbox_config: {
      metadata: { name: "v-target", namespace: "default", uid: "uid-v-target", attempt: 0 },
      annotations: TARGET,
    },
  });
  const rebooted = shim.runtime.ctx.containers.get(again)!.status;
  t.is(rebooted.incoming, undefined, "not waiting for a stream");
  t.is(rebooted.state, "created");
  await shim.cri.runtime("StartContainer", { container_id: again });
  t.is((await status(shim, again)).state, "CONTAINER_RUNNING");
  const domains = await shim.hv.list();
  t.deepEqual(
    domains.map((d) => [d.name, d.state]),
    [[`sf-${sb.slice(0, 12)}`, "running"]],
    "one domain, built from the image; the crashed one is gone",
  );
  t.not(domains[0]!.domid, domid);
});

test("target: StopPodSandbox cancels the receive in flight and destroys what it built; nothing is left", async (t) => {
  const shim = await startUnitShim();
  t.teardown(() => shim.dispose());
  const { sb, ctr } = await runPod(shim, "v-target", TARGET);
  const cancelled: string[] = [];
  // The node agent registers its receive; a half-restored domain exists while the stream runs.
  await shim.hv.strayDomain(`sf-${sb.slice(0, 12)}`);
  shim.runtime.ctx.receiving.set(ctr, {
    cancel: async (reason) => {
      cancelled.push(reason);
    },
  });
  await shim.cri.runtime("StopPodSandbox", { pod_sandbox_id: sb });
  t.is(cancelled.length, 1, "the receive was cancelled once");
  t.deepEqual(await shim.hv.list(), [], "the half-restored domain is destroyed");
  t.like(await status(shim, ctr), { state: "CONTAINER_EXITED", reason: "Stopped" });
  t.regex((await status(shim, ctr)).message, /receiving migration move-v/);
  t.false(shim.runtime.ctx.receiving.has(ctr));
  await shim.cri.runtime("RemovePodSandbox", { pod_sandbox_id: sb });
  t.deepEqual(shim.runtime.ctx.containers.list(), []);
  t.deepEqual(shim.runtime.ctx.sandboxes.list(), []);
});

test("source: migrated away, the container stays running without a domain across a restart; StopContainer touches no domain", async (t) => {
  let shim = await startUnitShim();
  t.teardown(() => shim.dispose());
  const { ctr } = await runPod(shim, "v", { "superfluid.dev/vm": "default/v" });
  const domid = shim.runtime.ctx.containers.get(ctr)!.status.domid!;
  const sb = shim.runtime.ctx.containers.get(ctr)!.meta.sandboxId;
  // As the agent does it: under the sandbox's lock, "outgoing" before the send, then the destroy of
  // the source domain and the record, so the exit monitor never sees the one without the other.
  await shim.runtime.ctx.locks.run(sb, async () => {
    await recordOutgoing(shim.runtime.ctx, shim.runtime.ctx.containers.get(ctr)!, "move-v");
    await shim.hv.destroy(domid);
    await markMigratedAway(shim.runtime.ctx, shim.runtime.ctx.containers.get(ctr)!, "move-v", new Date());
  });
  await sleep(MONITOR_PASSES_MS);
  t.is(
    (await status(shim, ctr)).state,
    "CONTAINER_RUNNING",
    "not DomainLost: the kubelet must not restart it here",
  );
  shim = await shim.restart();
  t.is((await status(shim, ctr)).state, "CONTAINER_RUNNING");
  t.is(shim.runtime.ctx.containers.get(ctr)!.status.migratedAway?.migration, "move-v");
  // Another VM's domain on the node must not be touched by the stop.
  const other = await runPod(shim, "w", { "superfluid.dev/vm": "default/w" });
  await shim.cri.runtime("StopContainer", { container_id: ctr, timeout: 10 });
  t.like(await status(shim, ctr), { state: "CONTAINER_EXITED", reason: "MigratedAway" });
  const left = await shim.hv.list();
  t.deepEqual(
    left.map((d) => d.domid),
    [shim.runtime.ctx.containers.get(other.ctr)!.status.domid],
    "only the other VM's domain",
  );
});

test("source: a StopContainer that arrives while the send still owns the domain waits for it, then touches no domain", async (t) => {
  const shim = await startUnitShim();
  t.teardown(() => shim.dispose());
  const { ctr } = await runPod(shim, "v", { "superfluid.dev/vm": "default/v" });
  const domid = shim.runtime.ctx.containers.get(ctr)!.status.domid!;
  const sb = shim.runtime.ctx.containers.get(ctr)!.meta.sandboxId;
  // The operator switches pods once the target runs, so the kubelet may stop the source pod while
  // the send is still settling: it must neither destroy the domain under the send nor lose the move.
  let releaseSend!: () => void;
  const sendHolds = new Promise<void>((r) => (releaseSend = r));
  let stopReturned = false;
  const send = shim.runtime.ctx.locks.run(sb, async () => {
    await recordOutgoing(shim.runtime.ctx, shim.runtime.ctx.containers.get(ctr)!, "move-v");
    await sendHolds;
    await shim.hv.destroy(domid);
    await markMigratedAway(shim.runtime.ctx, shim.runtime.ctx.containers.get(ctr)!, "move-v", new Date());
  });
  await sleep(50);
  const stop = shim.cri
    .runtime("StopContainer", { container_id: ctr, timeout: 10 })
    .then(() => (stopReturned = true));
  await sleep(200);
  t.false(stopReturned, "the stop waits for the send");
  t.truthy(await shim.hv.info(domid), "the domain is the send's until it settles it");
  releaseSend();
  await send;
  await stop;
  t.like(await status(shim, ctr), { state: "CONTAINER_EXITED", reason: "MigratedAway" });
  t.deepEqual(await shim.hv.list(), []);
});

test("source: a domain left suspended by a send cut off by a restart is kept for the agent to resume, not reported exited", async (t) => {
  let shim = await startUnitShim();
  t.teardown(() => shim.dispose());
  const { ctr } = await runPod(shim, "v", { "superfluid.dev/vm": "default/v" });
  const domid = shim.runtime.ctx.containers.get(ctr)!.status.domid!;
  shim.hv.leaveSuspended(domid);
  await sleep(MONITOR_PASSES_MS);
  t.is(
    (await status(shim, ctr)).state,
    "CONTAINER_RUNNING",
    "the exit monitor does not take a suspend for an exit",
  );
  shim = await shim.restart();
  t.is((await status(shim, ctr)).state, "CONTAINER_RUNNING");
  const [d] = await shim.hv.list();
  t.is(d?.domid, domid, "the suspended domain is still there");
  t.is(shim.runtime.ctx.containers.get(ctr)!.status.domid, domid);
});
