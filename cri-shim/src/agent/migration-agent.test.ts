// The node agents' migration roles against a real kube-apiserver (the CRD's schema, server-side apply
// with one field manager per node) and the real stream module over TLS on loopback, between two CRI
// shims on the host whose hypervisor is the in-memory TEST DOUBLE (the Xen proof with libxl's real
// stream is migrate.xen.test.ts). The test plays the operator: it writes the operator's phases with
// the operator's field manager and runs the pods through CRI as the kubelet would.
import test, { type ExecutionContext } from "ava";
import { join } from "node:path";
import {
  API_VERSION,
  FIELD_MANAGER,
  MIGRATION_KIND,
  MIGRATION_PLURAL,
  type MigrationStatus,
  nodeAgentFieldManager,
  type UnikernelVMMigration,
} from "../../../api/index.js";
import { useCluster } from "../../../e2e/harness/ava.js";
import { FAILPOINTS_ENV, failpointsFired, MIGRATION_FAILPOINTS as FP } from "../../../lib/failpoints.js";
import { KubeClient, paths } from "../../../lib/kube/client.js";
import { startUnitShim, type UnitShim } from "../testing/unit-shim.js";
import { NodeAgent } from "./agent.js";
import { ROLE_FIELDS } from "./migration-status.js";

const cluster = useCluster(test, "mig-agent");
const IMAGE = "registry.test/hello:1";

interface Node {
  name: string;
  shim: UnitShim;
  agent: NodeAgent;
}

async function startNode(
  t: { teardown: (fn: () => Promise<void>) => void },
  name: string,
  shim?: UnitShim,
): Promise<Node> {
  const s = shim ?? (await startUnitShim());
  const checkpointDir = join(s.dir, "checkpoints"); // removed with the shim's temp dir
  const agent = new NodeAgent({
    kubeConfig: cluster().cp.kubeConfig,
    nodeName: name,
    runtime: s.runtime,
    nodeAddress: "127.0.0.1",
    resyncMs: 300,
    checkpointDir,
  });
  await agent.start();
  await registerNode(t, name);
  const node = { name, shim: s, agent };
  t.teardown(async () => {
    await node.agent.stop().catch(() => undefined);
    await node.shim.dispose().catch(() => undefined);
  });
  return node;
}

/** The Node object a kubelet would have registered, with the address the agents listen on. */
async function registerNode(
  t: { teardown: (fn: () => Promise<void>) => void },
  name: string,
  address = "127.0.0.1",
): Promise<void> {
  const client = new KubeClient(cluster().cp.kubeConfig);
  const path = `${paths.nodes()}/${name}`;
  await client.apply(path, { apiVersion: "v1", kind: "Node", metadata: { name } }, FIELD_MANAGER);
  await client.request({
    method: "PATCH",
    path: `${path}/status`,
    body: { status: { addresses: [{ type: "InternalIP", address }] } },
    contentType: "application/merge-patch+json",
  });
  t.teardown(async () => {
    await client.request({ method: "DELETE", path }).catch(() => undefined);
    client.close();
  });
}

async function runPod(
  n: Node,
  name: string,
  annotations: Record<string, string>,
): Promise<{ sb: string; ctr: string }> {
  n.shim.images.available.add(IMAGE);
  await n.shim.cri.image("PullImage", { image: { image: IMAGE } });
  const config = {
    metadata: { name, namespace: cluster().namespace, uid: `uid-${name}`, attempt: 0 },
    hostname: name,
    log_directory: join(n.shim.dir, "logs", name),
    annotations,
  };
  const { pod_sandbox_id: sb } = await n.shim.cri.runtime<{ pod_sandbox_id: string }>("RunPodSandbox", {
    config,
  });
  const { container_id: ctr } = await n.shim.cri.runtime<{ container_id: string }>("CreateContainer", {
    pod_sandbox_id: sb,
    config: { metadata: { name: "main", attempt: 0 }, image: { image: IMAGE }, log_path: "main/0.log" },
    sandbox_config: config,
  });
  await n.shim.cri.runtime("StartContainer", { container_id: ctr });
  return { sb, ctr };
}

const criState = async (n: Node, ctr: string) =>
  (await n.shim.cri.runtime<{ status: { state: string } }>("ContainerStatus", { container_id: ctr })).status
    .state;
const cond = (m: UnikernelVMMigration, type: string) => m.status?.conditions?.find((c) => c.type === type);

/** The operator's side of one migration (its phase and fields, its field manager). */
function operator(name: string) {
  const client = new KubeClient(cluster().cp.kubeConfig);
  const ns = cluster().namespace;
  const path = paths.customObject(MIGRATION_PLURAL, ns, name);
  let fields: Partial<MigrationStatus> = {};
  return {
    create: (vmName: string, targetNode: string) =>
      client.request({
        method: "POST",
        path: paths.custom(MIGRATION_PLURAL, ns),
        body: {
          apiVersion: API_VERSION,
          kind: MIGRATION_KIND,
          metadata: { name, namespace: ns },
          spec: { vmName, targetNode },
        },
      }),
    set: async (f: Partial<MigrationStatus>) => {
      fields = { ...fields, ...f };
      await client.apply(
        path,
        { apiVersion: API_VERSION, kind: MIGRATION_KIND, metadata: { name, namespace: ns }, status: fields },
        FIELD_MANAGER,
        "status",
      );
    },
    get: () =>
      client.request<
        UnikernelVMMigration & { metadata: { managedFields?: { manager: string; fieldsV1?: unknown }[] } }
      >({ method: "GET", path }),
    async waitFor(
      what: string,
      want: (m: UnikernelVMMigration) => boolean,
      ms = 20_000,
    ): Promise<UnikernelVMMigration> {
      const deadline = Date.now() + ms;
      for (;;) {
        const m = await this.get();
        if (want(m)) return m;
        if (Date.now() > deadline)
          throw new Error(`timed out waiting for ${what}: ${JSON.stringify(m.status)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    close: () => client.close(),
  };
}

test.serial(
  "a domain moves between two shims through the API: each agent writes only its slice; the source keeps the pod without a domain",
  async (t) => {
    const [a, b] = await Promise.all([startNode(t, "host-a1"), startNode(t, "host-b1")]);
    const source = await runPod(a, "v", { "superfluid.dev/vm": `${cluster().namespace}/v` });
    const op = operator("move-v");
    t.teardown(() => op.close());
    await op.create("v", b.name);
    await op.set({ phase: "Scheduling", sourceNode: a.name, targetNode: b.name, sourcePod: "v" });
    const target = await runPod(b, "v-target", {
      "superfluid.dev/vm": `${cluster().namespace}/v`,
      "superfluid.dev/migration-target": "move-v",
    });
    t.deepEqual(await b.shim.hv.list(), [], "the target pod's container built no domain");
    await op.set({ phase: "TargetPreparing", targetPod: "v-target" });
    const ready = await op.waitFor("TargetReady", (m) => cond(m, "TargetReady") !== undefined);
    t.like(cond(ready, "TargetReady"), { status: "True", reason: "Listening" });
    t.regex(ready.status?.targetEndpoint ?? "", /^127\.0\.0\.1:\d+$/);
    t.regex(ready.status?.targetCertificateSHA256 ?? "", /^[0-9a-f]{64}$/);

    await op.set({ phase: "Transferring" });
    const done = await op.waitFor(
      "Transferred and TargetRunning",
      (m) =>
        cond(m, "Transferred")?.status !== undefined &&
        cond(m, "Transferred")?.status !== "Unknown" &&
        cond(m, "TargetRunning") !== undefined,
    );
    t.like(cond(done, "Transferred"), { status: "True", reason: "Transferred" });
    t.like(cond(done, "TargetRunning"), { status: "True", reason: "Running" });
    t.true(Number.isInteger(done.status?.downtimeMilliseconds));
    t.true((done.status?.transferredBytes ?? 0) > 0);
    t.truthy(done.status?.switchTime);
    t.regex(done.status?.sourceCertificateSHA256 ?? "", /^[0-9a-f]{64}$/);
    // Server-side apply kept every writer's fields: the operator's phase and pods are intact.
    t.like(done.status, {
      phase: "Transferring",
      sourceNode: a.name,
      targetNode: b.name,
      sourcePod: "v",
      targetPod: "v-target",
    });
    const managers = ((await op.get()).metadata.managedFields ?? []).map((f) => f.manager);
    t.true(
      managers.includes(nodeAgentFieldManager(a.name)) &&
        managers.includes(nodeAgentFieldManager(b.name)) &&
        managers.includes(FIELD_MANAGER),
      managers.join(","),
    );
    const owned = JSON.stringify(
      ((await op.get()).metadata.managedFields ?? []).find((f) => f.manager === nodeAgentFieldManager(a.name))
        ?.fieldsV1,
    );
    for (const f of ROLE_FIELDS.target.fields)
      t.false(owned.includes(`f:${f}`), `the source agent does not own ${f}`);

    // Source: no domain, the container running for the kubelet across exit-monitor passes.
    t.deepEqual(await a.shim.hv.list(), []);
    await new Promise((r) => setTimeout(r, 300));
    t.is(await criState(a, source.ctr), "CONTAINER_RUNNING");
    t.is(a.shim.runtime.ctx.containers.get(source.ctr)!.status.migratedAway?.migration, "move-v");
    // Target: an ordinary running container with the received domain.
    const [dom] = await b.shim.hv.list();
    t.is(dom?.state, "running");
    const rec = b.shim.runtime.ctx.containers.get(target.ctr)!.status;
    t.is(rec.domid, dom?.domid);
    t.is(rec.incoming, undefined);
    t.is(
      rec.guestNetwork?.mac,
      a.shim.runtime.ctx.sandboxes.get(source.sb)!.status.network!.mac,
      "the guest keeps the source's MAC",
    );
    // More passes do not start a second send or receive.
    await new Promise((r) => setTimeout(r, 1000));
    t.is((await b.shim.hv.list()).length, 1);
    // The operator's switch: the source pod goes; its removal touches no domain.
    await a.shim.cri.runtime("StopPodSandbox", { pod_sandbox_id: source.sb });
    await a.shim.cri.runtime("RemovePodSandbox", { pod_sandbox_id: source.sb });
    t.is((await b.shim.hv.list()).length, 1);
  },
);

test.serial(
  "fault: the target pod is removed before the stream -> TargetRunning/Transferred False, the source domain runs on, nothing left on the target",
  async (t) => {
    const [a, b] = await Promise.all([startNode(t, "host-a2"), startNode(t, "host-b2")]);
    const source = await runPod(a, "w", { "superfluid.dev/vm": `${cluster().namespace}/w` });
    const op = operator("move-w");
    t.teardown(() => op.close());
    await op.create("w", b.name);
    await op.set({ phase: "Scheduling", sourceNode: a.name, targetNode: b.name, sourcePod: "w" });
    const target = await runPod(b, "w-target", {
      "superfluid.dev/vm": `${cluster().namespace}/w`,
      "superfluid.dev/migration-target": "move-w",
    });
    await op.set({ phase: "TargetPreparing", targetPod: "w-target" });
    await op.waitFor("TargetReady", (m) => cond(m, "TargetReady")?.status === "True");
    await b.shim.cri.runtime("StopPodSandbox", { pod_sandbox_id: target.sb });
    const cancelled = await op.waitFor("TargetRunning", (m) => cond(m, "TargetRunning") !== undefined);
    t.like(cond(cancelled, "TargetRunning"), { status: "False", reason: "Cancelled" });
    await op.set({ phase: "Transferring" }); // (the real operator would fail it now; the source must cope either way)
    const failed = await op.waitFor("Transferred", (m) => cond(m, "Transferred")?.status === "False");
    t.log(`${cond(failed, "Transferred")?.reason}: ${cond(failed, "Transferred")?.message}`);
    t.is(cond(failed, "Transferred")?.reason, "TargetUnreachable");
    t.deepEqual(await b.shim.hv.list(), [], "nothing on the target");
    const [dom] = await a.shim.hv.list();
    t.is(dom?.state, "running", "the source domain runs on");
    t.is(a.shim.runtime.ctx.containers.get(source.ctr)!.status.domid, dom?.domid);
    t.is(await criState(a, source.ctr), "CONTAINER_RUNNING");
  },
);

test.serial(
  "source shim restarted mid-send: the domain left suspended is resumed and the migration gets Transferred=False SourceRestarted",
  async (t) => {
    const a = await startNode(t, "host-a3");
    const source = await runPod(a, "x", { "superfluid.dev/vm": `${cluster().namespace}/x` });
    const op = operator("move-x");
    t.teardown(() => op.close());
    // What the crash left: the source agent had said "streaming", the domain was in its final suspend.
    await a.agent.stop();
    await op.create("x", "host-b3");
    await op.set({
      phase: "Transferring",
      sourceNode: a.name,
      targetNode: "host-b3",
      targetEndpoint: "127.0.0.1:9",
    });
    const client = new KubeClient(cluster().cp.kubeConfig);
    t.teardown(() => client.close());
    await client.apply(
      paths.customObject(MIGRATION_PLURAL, cluster().namespace, "move-x"),
      {
        apiVersion: API_VERSION,
        kind: MIGRATION_KIND,
        metadata: { name: "move-x", namespace: cluster().namespace },
        status: {
          sourceCertificateSHA256: "1".repeat(64),
          conditions: [
            {
              type: "Transferred",
              status: "Unknown",
              reason: "Streaming",
              message: "streaming",
              lastTransitionTime: new Date().toISOString().replace(/\.\d{3}Z$/, "Z"),
            },
          ],
        },
      },
      nodeAgentFieldManager(a.name),
      "status",
    );
    const domid = a.shim.runtime.ctx.containers.get(source.ctr)!.status.domid!;
    a.shim.hv.leaveSuspended(domid);
    const restarted = await startNode(t, a.name, await a.shim.restart());
    const failed = await op.waitFor("Transferred=False", (m) => cond(m, "Transferred")?.status === "False");
    t.is(cond(failed, "Transferred")?.reason, "SourceRestarted");
    t.is(failed.status?.sourceCertificateSHA256, "1".repeat(64), "the rest of the agent's slice is kept");
    t.is((await restarted.shim.hv.info(domid))?.state, "running", "resumed, same domain");
    t.is(await criState(restarted, source.ctr), "CONTAINER_RUNNING");
  },
);

/** Two nodes with a VM's pod on the first and the migration's target pod on the second, TargetReady. */
async function readyToTransfer(t: ExecutionContext, vm: string, n: number) {
  const [a, b] = await Promise.all([startNode(t, `host-a${n}`), startNode(t, `host-b${n}`)]);
  const source = await runPod(a, vm, { "superfluid.dev/vm": `${cluster().namespace}/${vm}` });
  const op = operator(`move-${vm}`);
  t.teardown(() => op.close());
  await op.create(vm, b.name);
  await op.set({ phase: "Scheduling", sourceNode: a.name, targetNode: b.name, sourcePod: vm });
  const target = await runPod(b, `${vm}-target`, {
    "superfluid.dev/vm": `${cluster().namespace}/${vm}`,
    "superfluid.dev/migration-target": `move-${vm}`,
  });
  await op.set({ phase: "TargetPreparing", targetPod: `${vm}-target` });
  await op.waitFor("TargetReady", (m) => cond(m, "TargetReady")?.status === "True");
  return { a, b, source, target, op };
}

/** Exactly one domain on the node, running, and the container an ordinary one that owns it. */
async function runsOnlyThere(t: ExecutionContext, n: Node, ctr: string): Promise<void> {
  const doms = await n.shim.hv.list();
  t.is(doms.length, 1);
  t.is(doms[0]?.state, "running");
  t.like(n.shim.runtime.ctx.containers.get(ctr)!.status, { domid: doms[0]?.domid, incoming: undefined });
}

function armFailpoints(t: { teardown(fn: () => void): void }, spec: string): void {
  process.env[FAILPOINTS_ENV] = spec;
  t.teardown(() => delete process.env[FAILPOINTS_ENV]);
}

test.serial(
  "source shim killed right after the commit: the target runs from the record (no 'go'); the restarted source destroys its suspended copy",
  async (t) => {
    const { a, b, source, target, op } = await readyToTransfer(t, "y", 4);
    const domid = a.shim.runtime.ctx.containers.get(source.ctr)!.status.domid!;
    armFailpoints(t, `${FP.sourceAfterCommit}=crash`);
    await op.set({ phase: "Transferring" });
    const running = await op.waitFor("TargetRunning", (m) => cond(m, "TargetRunning")?.status === "True");
    t.is(cond(running, "Committed")?.status, "True", "the commit was recorded before the source died");
    t.like(await a.shim.hv.info(domid), { state: "shutdown", shutdownReason: "suspend" }, "kept suspended");
    delete process.env[FAILPOINTS_ENV];
    await a.agent.stop();
    const restarted = await startNode(t, a.name, await a.shim.restart());
    const done = await op.waitFor("Transferred=True", (m) => cond(m, "Transferred")?.status === "True");
    t.regex(cond(done, "Transferred")?.message ?? "", /committed/);
    t.deepEqual(await restarted.shim.hv.list(), [], "the suspended copy is destroyed, not resumed");
    t.is(restarted.shim.runtime.ctx.containers.get(source.ctr)!.status.migratedAway?.migration, "move-y");
    await runsOnlyThere(t, b, target.ctr);
  },
);

test.serial(
  "target shim killed after the commit, before its unpause: recovery keeps the paused copy, the restarted agent unpauses it from the record",
  async (t) => {
    const { a, b, target, op } = await readyToTransfer(t, "z", 5);
    armFailpoints(t, `${FP.targetAfterCommit}=crash`);
    await op.set({ phase: "Transferring" });
    const committed = await op.waitFor("Committed", (m) => cond(m, "Committed")?.status === "True");
    t.is(cond(committed, "TargetRestored")?.status, "True");
    const held = b.shim.runtime.ctx.containers.get(target.ctr)!.status.incoming?.domid;
    t.true(held !== undefined, "the paused copy is in the container's record");
    await new Promise((r) => setTimeout(r, 300));
    t.is((await b.shim.hv.info(held!))?.state, "paused");
    t.is(cond(await op.get(), "Transferred")?.status, "Unknown", "the source waits; it destroys nothing yet");
    t.is((await a.shim.hv.list()).length, 1, "the source's suspended copy is kept");
    delete process.env[FAILPOINTS_ENV];
    await b.agent.stop();
    const restarted = await startNode(t, b.name, await b.shim.restart());
    const done = await op.waitFor("Transferred=True", (m) => cond(m, "Transferred")?.status === "True");
    t.is(cond(done, "TargetRunning")?.status, "True");
    t.deepEqual(await a.shim.hv.list(), [], "the source destroyed its copy once the target ran");
    const doms = await restarted.shim.hv.list();
    t.is(doms.length, 1);
    t.like(doms[0], { domid: held, state: "running" }, "the same domain, unpaused");
    t.like(restarted.shim.runtime.ctx.containers.get(target.ctr)!.status, {
      domid: held,
      incoming: undefined,
    });
  },
);

test.serial(
  "target shim killed after recording its paused copy, before the commit: the source runs on, the restarted target drops its copy once the migration fails",
  async (t) => {
    const { a, b, source, target, op } = await readyToTransfer(t, "q", 6);
    armFailpoints(t, `${FP.targetBeforeCommit}=crash`);
    await op.set({ phase: "Transferring" });
    const failed = await op.waitFor("Transferred=False", (m) => cond(m, "Transferred")?.status === "False");
    t.is(cond(failed, "Committed"), undefined, "nothing was committed");
    const [src] = await a.shim.hv.list();
    t.is(src?.state, "running", "the source resumed its domain");
    t.is(a.shim.runtime.ctx.containers.get(source.ctr)!.status.outgoing, undefined);
    delete process.env[FAILPOINTS_ENV];
    await b.agent.stop();
    const restarted = await startNode(t, b.name, await b.shim.restart());
    await new Promise((r) => setTimeout(r, 1000));
    t.is((await restarted.shim.hv.list()).length, 1, "the paused copy waits for the record (Transferring)");
    await op.set({ phase: "Failed" }); // the operator's answer to Transferred=False
    await op.waitFor("TargetRunning=False", (m) => cond(m, "TargetRunning")?.status === "False");
    t.deepEqual(await restarted.shim.hv.list(), [], "the paused copy is destroyed");
    t.is(restarted.shim.runtime.ctx.containers.get(target.ctr)!.status.incoming?.domid, undefined);
    t.is((await a.shim.hv.list()).filter((d) => d.state === "running").length, 1, "exactly one runs");
  },
);

test.serial(
  "after the commit the target's unpause keeps failing: the receive keeps the paused copy, the source its suspended one; the agent's next pass unpauses it from the record",
  async (t) => {
    const { a, b, target, op } = await readyToTransfer(t, "u", 7);
    armFailpoints(t, `${FP.targetUnpause}=error*3`); // the receive's 3 tries fail, the agent's next pass works
    await op.set({ phase: "Transferring" });
    const done = await op.waitFor("Transferred=True", (m) => cond(m, "Transferred")?.status === "True");
    t.is(cond(done, "Committed")?.status, "True");
    t.is(
      failpointsFired().get(FP.targetUnpause),
      3,
      "the receive tried 3 times and gave up, keeping the copy",
    );
    // (TargetRunning=False UnpauseFailed stands in between, for one resync period at most.)
    t.like(cond(done, "TargetRunning"), {
      status: "True",
      message: "domain 1 runs here (unpaused from the recorded commit)",
    });
    t.deepEqual(await a.shim.hv.list(), [], "the source's copy went once the target ran");
    await runsOnlyThere(t, b, target.ctr);
  },
);

test.serial(
  "the source refuses a target endpoint that is not an address of the target Node: Transferred=False EndpointNotOnTarget, the domain runs on",
  async (t) => {
    const a = await startNode(t, "host-a4");
    await registerNode(t, "host-b4", "127.0.0.1");
    const source = await runPod(a, "e", { "superfluid.dev/vm": `${cluster().namespace}/e` });
    const op = operator("move-e");
    t.teardown(() => op.close());
    await op.create("e", "host-b4");
    await op.set({
      phase: "Transferring",
      sourceNode: a.name,
      targetNode: "host-b4",
      sourcePod: "e",
      targetPod: "e-target",
      // Written by whoever could write the status: an address that is not host-b4's.
      targetEndpoint: "127.0.0.2:9",
      targetCertificateSHA256: "2".repeat(64),
    });
    const failed = await op.waitFor("Transferred=False", (m) => cond(m, "Transferred")?.status === "False");
    t.is(cond(failed, "Transferred")?.reason, "EndpointNotOnTarget");
    t.regex(
      cond(failed, "Transferred")?.message ?? "",
      /127\.0\.0\.2:9 is not an address of node host-b4 \(127\.0\.0\.1\)/,
    );
    t.is(failed.status?.sourceCertificateSHA256, undefined, "the source did not even start its identity");
    const [dom] = await a.shim.hv.list();
    t.is(dom?.state, "running", "the source domain runs on");
    t.is(await criState(a, source.ctr), "CONTAINER_RUNNING");
  },
);
