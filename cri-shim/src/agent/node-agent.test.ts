// The node agent as a keyed reconciler, against a real kube-apiserver (the CRD's selectable field,
// server-side apply per field manager) and a real CRI shim on the host over the in-memory hypervisor
// TEST DOUBLE (agent.xen.test.ts is the proof on Xen). No kubelet runs: the test runs the pods
// through CRI as a kubelet would, and plays the operator's part of the VM's status.
import test from "ava";
import { Watch } from "@kubernetes/client-node";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import {
  ANNOTATIONS,
  API_VERSION,
  FIELD_MANAGER,
  nodeAgentFieldManager,
  RESOURCES,
  type RunPolicy,
  UNIKERNELVM_KIND,
  UNIKERNELVM_PLURAL,
  type UnikernelVM,
} from "../../../api/index.js";
import { useCluster } from "../../../e2e/harness/ava.js";
import { KubeClient, paths } from "../../../lib/kube/client.js";
import { runPodThroughCri, startUnitShim, type UnitShim } from "../testing/unit-shim.js";
import { NodeAgent } from "./agent.js";

const cluster = useCluster(test, "node-agent");
const IMAGE = "registry.test/hello:1";

interface Node {
  name: string;
  shim: UnitShim;
  agent: NodeAgent;
  checkpointDir: string;
}

async function startNode(
  t: { teardown: (fn: () => Promise<void>) => void },
  name: string,
  publishNodeResources = false,
  resyncMs = 300,
): Promise<Node> {
  const shim = await startUnitShim();
  const checkpointDir = join(shim.dir, "checkpoints");
  const agent = new NodeAgent({
    kubeConfig: cluster().cp.kubeConfig,
    nodeName: name,
    runtime: shim.runtime,
    nodeAddress: "127.0.0.1",
    resyncMs,
    checkpointDir,
    publishNodeResources,
  });
  await agent.start();
  t.teardown(async () => {
    await agent.stop().catch(() => undefined);
    await shim.dispose().catch(() => undefined);
  });
  return { name, shim, agent, checkpointDir };
}

function api() {
  const client = new KubeClient(cluster().cp.kubeConfig);
  const ns = cluster().namespace;
  const path = (name: string) => paths.customObject(UNIKERNELVM_PLURAL, ns, name);
  return {
    client,
    /** The VM, placed on `node` as the operator would place it (its field manager, its fields). */
    async createVm(name: string, node: string): Promise<void> {
      const created = await client.request<UnikernelVM>({
        method: "POST",
        path: paths.custom(UNIKERNELVM_PLURAL, ns),
        body: {
          apiVersion: API_VERSION,
          kind: UNIKERNELVM_KIND,
          metadata: { name, namespace: ns },
          spec: { image: IMAGE, memory: "16Mi", runPolicy: "Running" },
        },
      });
      uids.set(name, created.metadata.uid!);
      await this.operatorStatus(name, { nodeName: node, phase: "Running" }, "True", "Running");
    },
    /** The operator's slice of the status: its fields and its Ready condition, by server-side apply. */
    operatorStatus: (
      name: string,
      fields: Record<string, unknown>,
      ready: "True" | "False",
      reason: string,
    ) =>
      client.apply(
        path(name),
        {
          apiVersion: API_VERSION,
          kind: UNIKERNELVM_KIND,
          metadata: { name, namespace: ns },
          status: {
            ...fields,
            conditions: [
              {
                type: "Ready",
                status: ready,
                reason,
                message: reason,
                lastTransitionTime: "2026-01-01T00:00:00Z",
              },
            ],
          },
        },
        FIELD_MANAGER,
        "status",
      ),
    setRunPolicy: (name: string, runPolicy: RunPolicy) =>
      client.request({
        method: "PATCH",
        path: path(name),
        body: { spec: { runPolicy } },
        contentType: "application/merge-patch+json",
      }),
    get: (name: string) =>
      client.request<
        UnikernelVM & { metadata: { managedFields?: { manager: string; fieldsV1?: unknown }[] } }
      >({ method: "GET", path: path(name) }),
    async waitFor(name: string, what: string, want: (v: UnikernelVM) => boolean, ms = 20_000) {
      const deadline = Date.now() + ms;
      for (;;) {
        const v = await this.get(name);
        if (want(v)) return v;
        if (Date.now() > deadline)
          throw new Error(`timed out waiting for ${name}: ${what}: ${JSON.stringify(v.status)}`);
        await sleep(50);
      }
    },
  };
}

const cond = (v: UnikernelVM, type: string) => v.status?.conditions?.find((c) => c.type === type);

/** VM uids by name: the operator puts the VM's uid on its pod, and the node binds by it. */
const uids = new Map<string, string>();

const runPod = (n: Node, vm: string) =>
  runPodThroughCri(n.shim, {
    name: vm,
    namespace: cluster().namespace,
    image: IMAGE,
    annotations: {
      [ANNOTATIONS.vm]: `${cluster().namespace}/${vm}`,
      [ANNOTATIONS.vmUid]: uids.get(vm)!,
      [ANNOTATIONS.memoryMiB]: "16",
    },
  });

test.serial("a slow suspend of one VM does not delay another VM's pause on the same node", async (t) => {
  const n = await startNode(t, "host-slow");
  const k = api();
  t.teardown(() => k.client.close());
  for (const vm of ["slow", "quick"]) {
    await k.createVm(vm, n.name);
    await runPod(n, vm);
  }
  let release!: () => void;
  n.shim.hv.saveGate = new Promise<void>((r) => (release = r));
  t.teardown(() => release());
  await k.setRunPolicy("slow", "Suspended");
  // The save has begun: its temp file is open and the double holds it at the gate.
  const deadline = Date.now() + 10_000;
  while (!(await readdir(n.checkpointDir).catch(() => [])).some((f) => f.includes(".tmp-"))) {
    if (Date.now() > deadline) throw new Error("the suspend of 'slow' never started");
    await sleep(20);
  }
  const asked = Date.now();
  await k.setRunPolicy("quick", "Paused");
  const paused = await k.waitFor("quick", "Paused=True", (v) => cond(v, "Paused")?.status === "True", 10_000);
  const pauseMs = Date.now() - asked;
  t.log(`quick paused ${pauseMs} ms after its patch, while slow's save was still held`);
  t.is(cond(paused, "Paused")?.observedGeneration, paused.metadata.generation);
  const slow = await k.get("slow");
  t.not(cond(slow, "Suspended")?.status, "True", "slow's save is still in flight");
  t.is((await n.shim.hv.list()).length, 2, "slow's domain is not saved yet");
  t.true(pauseMs < 5000, `the pause took ${pauseMs} ms`);

  release();
  const suspended = await k.waitFor("slow", "Suspended=True", (v) => cond(v, "Suspended")?.status === "True");
  t.is(cond(suspended, "Suspended")?.reason, "Suspended");
  // The domain's state in the same apply; a saved domain has no id.
  t.is(suspended.status?.domainState, "suspended");
  t.is(suspended.status?.domainId, undefined);
  t.is(paused.status?.domainState, "paused");
  t.is((await n.shim.hv.list()).length, 1, "slow's domain is saved and gone; quick's stays");
  t.deepEqual(await readdir(n.checkpointDir), [`${suspended.metadata.uid}.ckpt`]);
});

interface Seen {
  phase: string | undefined;
  paused: string | undefined;
  ready: string | undefined;
}

test.serial(
  "one writer per field: with no kubelet and the operator re-asserting its view, pausing does not flap the phase or the conditions",
  async (t) => {
    const n = await startNode(t, "host-steady");
    const k = api();
    t.teardown(() => k.client.close());
    await k.createVm("steady", n.name);
    await runPod(n, "steady");
    const domid = n.shim.runtime.ctx.containers.list().at(-1)!.status.domid!;
    const first = await k.waitFor(
      "steady",
      "the agent's conditions",
      (v) => cond(v, "Paused")?.reason === "NotPaused",
    );
    // The domain's id and state come in the agent's one apply, with its conditions.
    t.like(first.status, { domainId: domid, domainState: "running" });

    // Every status the apiserver sends for the VM from here on, in order.
    const seen: Seen[] = [];
    const watcher = await new Watch(cluster().cp.kubeConfig).watch(
      paths.custom(UNIKERNELVM_PLURAL, cluster().namespace),
      { fieldSelector: "metadata.name=steady" },
      (_type, v: UnikernelVM) =>
        seen.push({
          phase: v.status?.phase,
          paused: cond(v, "Paused") && `${cond(v, "Paused")!.status}/${cond(v, "Paused")!.reason}`,
          ready: cond(v, "Ready")?.reason,
        }),
      () => undefined,
    );
    t.teardown(() => watcher.abort());
    // The kubelet is down: the operator sees the node NotReady and keeps writing what it believes,
    // as often as a busy operator might; before, this and the agent's phase overwrote each other.
    let operating = true;
    const operator = (async () => {
      while (operating) {
        await k.operatorStatus("steady", { nodeName: n.name, phase: "Running" }, "False", "NodeNotReady");
        await sleep(100);
      }
    })();
    await k.setRunPolicy("steady", "Paused");
    await k.waitFor("steady", "Paused=True", (v) => cond(v, "Paused")?.status === "True");
    await sleep(2000); // several agent resyncs (300 ms) and operator writes
    operating = false;
    await operator;
    await sleep(300);

    const v = await k.get("steady");
    t.is(v.status?.phase, "Running", "the phase is the operator's alone");
    t.like(cond(v, "Paused"), { status: "True", reason: "Paused" });
    t.like(cond(v, "Ready"), { status: "False", reason: "NodeNotReady" });
    t.like(
      v.status,
      { domainId: domid, domainState: "paused" },
      "the operator's writes kept the agent's fields",
    );
    t.true((await n.shim.hv.list()).every((d) => d.state === "paused"));

    t.log(
      `statuses observed: ${seen.map((s) => `${s.phase} Ready=${s.ready} Paused=${s.paused}`).join(" | ")}`,
    );
    t.true(seen.length >= 3, `${seen.length} statuses observed`);
    t.deepEqual([...new Set(seen.map((s) => s.phase))], ["Running"], "no phase but the operator's");
    // The Paused condition moves forward only: NotPaused, maybe Pausing, then Paused, never back.
    const transitions = seen.map((s) => s.paused).filter((p, i, all) => i === 0 || p !== all[i - 1]);
    t.log(`Paused condition as observed: ${transitions.join(" -> ")}`);
    t.true(
      transitions.every((p) => p !== undefined),
      "the operator's writes never removed the agent's condition",
    );
    const order = ["False/NotPaused", "False/Pausing", "True/Paused"];
    t.true(
      transitions.every((p, i) => i === 0 || order.indexOf(p!) > order.indexOf(transitions[i - 1]!)),
      transitions.join(" -> "),
    );
    t.is(transitions.at(-1), "True/Paused");

    // Field ownership: the agent owns its two conditions and nothing of the operator's.
    const managed = v.metadata.managedFields ?? [];
    const agent = JSON.stringify(managed.find((m) => m.manager === nodeAgentFieldManager(n.name))?.fieldsV1);
    const operatorOwns = JSON.stringify(managed.find((m) => m.manager === FIELD_MANAGER)?.fieldsV1);
    t.false(agent.includes("f:phase"), agent);
    t.true(
      agent.includes('k:{\\"type\\":\\"Paused\\"}') && agent.includes('k:{\\"type\\":\\"Suspended\\"}'),
      agent,
    );
    t.false(agent.includes('k:{\\"type\\":\\"Ready\\"}'), agent);
    t.true(agent.includes("f:domainId") && agent.includes("f:domainState"), agent);
    t.true(operatorOwns.includes("f:phase"), operatorOwns);
    t.false(operatorOwns.includes('k:{\\"type\\":\\"Paused\\"}'), operatorOwns);
    t.false(operatorOwns.includes("f:domainId") || operatorOwns.includes("f:domainState"), operatorOwns);
  },
);

test.serial("the agent watches only its own node's VMs", async (t) => {
  const [a, b] = [await startNode(t, "host-own-a"), await startNode(t, "host-own-b")];
  const k = api();
  t.teardown(() => k.client.close());
  await k.createVm("mine", a.name);
  await k.createVm("theirs", b.name);
  // The same VM's pod on both shims: only the node the VM is placed on may act on it.
  await runPod(a, "mine");
  const domidOnA = a.shim.runtime.ctx.containers.list().at(-1)!.status.domid!;
  await runPod(b, "mine");
  const domidOnB = b.shim.runtime.ctx.containers.list().at(-1)!.status.domid!;
  await k.setRunPolicy("mine", "Paused");
  const paused = await k.waitFor("mine", "Paused=True", (v) => cond(v, "Paused")?.status === "True");
  await sleep(1000);
  t.deepEqual(
    (await a.shim.hv.list()).map((d) => d.state),
    ["paused"],
  );
  t.deepEqual(
    (await b.shim.hv.list()).map((d) => d.state),
    ["running"],
    "b's agent never saw 'mine'",
  );
  const mine = await k.get("mine");
  const managers = (mine.metadata.managedFields ?? []).map((m) => m.manager);
  t.false(managers.includes(nodeAgentFieldManager(b.name)), managers.join(","));
  // The domain the VM's status names is a's, never b's (the two doubles number domains alike).
  t.like(paused.status, { domainState: "paused", domainId: domidOnA });
  t.like(mine.status, { domainState: "paused", domainId: domidOnA });
  t.log(`domid on a ${domidOnA}, on b ${domidOnB}`);
});

test.serial("the node's guest memory is published on its Node and kept current", async (t) => {
  const name = "host-mem";
  const k = api();
  t.teardown(() => k.client.close());
  await k.client.request({
    method: "POST",
    path: paths.nodes(),
    body: {
      apiVersion: "v1",
      kind: "Node",
      metadata: { name, labels: { "superfluid.dev/test": "node-agent" } },
    },
  });
  t.teardown(async () => {
    await k.client.request({ method: "DELETE", path: `${paths.nodes()}/${name}` }).catch(() => undefined);
  });
  const n = await startNode(t, name, true);
  const shown = async () => {
    const node = await k.client.request<{
      status?: { capacity?: Record<string, string>; allocatable?: Record<string, string> };
    }>({ method: "GET", path: `${paths.nodes()}/${name}` });
    return [
      node.status?.capacity?.[RESOURCES.guestMemoryMiB],
      node.status?.allocatable?.[RESOURCES.guestMemoryMiB],
    ];
  };
  const waitShown = async (want: string) => {
    const deadline = Date.now() + 10_000;
    while (JSON.stringify(await shown()) !== JSON.stringify([want, want])) {
      if (Date.now() > deadline) throw new Error(`node shows ${JSON.stringify(await shown())}, want ${want}`);
      await sleep(100);
    }
  };
  await waitShown("4096"); // the double's 4 GiB, none of it in use
  await k.createVm("m1", name);
  await runPod(n, "m1");
  await sleep(1000);
  t.deepEqual(
    await shown(),
    ["4096", "4096"],
    "a running guest's memory still counts: it is the pool, not what is free",
  );
  n.shim.hv.totalMemoryKiB = 2048 * 1024; // the host's memory changed (say, Xen's heap grew)
  await waitShown("2048");
  t.deepEqual(await shown(), ["2048", "2048"], "the node follows the host's new memory");
});

test.serial(
  "an idle node's resync lists the domains once, not each VM's, a full resync too; a pause behind its back is still undone",
  async (t) => {
    const n = await startNode(t, "host-idle");
    const k = api();
    t.teardown(() => k.client.close());
    const vms = ["idle-0", "idle-1", "idle-2", "idle-3", "idle-4", "idle-5"];
    const domids: number[] = [];
    for (const vm of vms) {
      await k.createVm(vm, n.name);
      await runPod(n, vm);
      domids.push(n.shim.runtime.ctx.containers.list().at(-1)!.status.domid!);
    }
    for (const vm of vms)
      await k.waitFor(vm, "the agent's conditions", (v) => cond(v, "Paused")?.reason === "NotPaused");
    await sleep(1000);
    const hv = n.shim.hv;
    const calls = { info: 0, list: 0 };
    const info = hv.info.bind(hv);
    const list = hv.list.bind(hv);
    hv.info = (d) => (calls.info++, info(d));
    hv.list = () => (calls.list++, list());
    // startNode's resync is every 300 ms, every 12th a full one (3.6 s): a reconcile per VM with its
    // own query would have asked ~13 x 6 times; the full resync's reconciles start from its list.
    await sleep(4000);
    t.is(calls.info, 0, `${calls.info} per-domain queries in 4 s of idle resyncs, a full one included`);
    t.true(calls.list >= 6, `${calls.list} domain lists`);
    // Paused behind the agent's back (xl pause): its resync sees the domain move and reconciles the
    // VM, whose runPolicy (Running) has it unpaused.
    await hv.pause(domids[2]!);
    t.is((await info(domids[2]!))?.state, "paused");
    const deadline = Date.now() + 10_000;
    while ((await info(domids[2]!))?.state !== "running" && Date.now() < deadline) await sleep(50);
    t.is((await info(domids[2]!))?.state, "running", "the resync noticed the pause and undid it");
  },
);

test.serial(
  "a VM update is a reconcile only when what the agent reads or owns changed: not the operator's writes, not its own write's echo",
  async (t) => {
    // No resync in this test's time: whatever the agent does here, an event made it do.
    const n = await startNode(t, "host-quiet", false, 600_000);
    const k = api();
    t.teardown(() => k.client.close());
    await k.createVm("quiet", n.name);
    await runPod(n, "quiet");
    n.agent.resync(); // the container started: no VM event says so, the resync does
    await k.waitFor("quiet", "domainState running", (v) => v.status?.domainState === "running");
    await sleep(500);
    const hv = n.shim.hv;
    let queries = 0;
    const info = hv.info.bind(hv);
    hv.info = (d) => (queries++, info(d));

    // The operator writes its own fields three times (phase, Ready): nothing for the agent.
    for (const [phase, ready] of [
      ["Pending", "False"],
      ["Running", "False"],
      ["Running", "True"],
    ] as const)
      await k.operatorStatus("quiet", { nodeName: n.name, phase }, ready, `${phase}${ready}`);
    await sleep(1000);
    t.is(queries, 0, "the operator's writes made the agent query the domain");

    // Someone else writes the agent's slice: the agent puts its own back at once, and then rests.
    await k.client.apply(
      paths.customObject(UNIKERNELVM_PLURAL, cluster().namespace, "quiet"),
      {
        apiVersion: API_VERSION,
        kind: UNIKERNELVM_KIND,
        metadata: { name: "quiet", namespace: cluster().namespace },
        status: { domainState: "paused" },
      },
      "intruder",
      "status",
    );
    const back = await k.waitFor(
      "quiet",
      "domainState back to running",
      (v) => v.status?.domainState === "running",
      5000,
    );
    t.is(back.status?.domainId, n.shim.runtime.ctx.containers.list().at(-1)!.status.domid);
    await sleep(1000);
    const afterPutBack = queries;
    t.true(
      afterPutBack >= 1 && afterPutBack <= 2,
      `${afterPutBack} domain queries for one change (its echo may race its response)`,
    );
    await sleep(1000);
    t.is(queries, afterPutBack, "the echo of the agent's own write started no reconcile loop");

    // The spec changing is work: runPolicy Paused pauses the domain.
    await k.setRunPolicy("quiet", "Paused");
    await k.waitFor("quiet", "Paused=True", (v) => cond(v, "Paused")?.status === "True", 5000);
    t.true(queries > afterPutBack);
  },
);

test.serial(
  "a VM that moved on: the new node's agent clears the domain id the old node's agent left, which it can no longer write",
  async (t) => {
    const [a, b] = [await startNode(t, "host-from"), await startNode(t, "host-to")];
    const k = api();
    t.teardown(() => k.client.close());
    await k.createVm("mover", a.name);
    await runPod(a, "mover");
    const onA = await k.waitFor("mover", "a's domain", (v) => v.status?.domainState === "running");
    t.is(onA.status?.domainId, a.shim.runtime.ctx.containers.list().at(-1)!.status.domid);

    // The VM now runs on b (as after a move): b's agent takes it over, a's no longer sees it.
    await runPod(b, "mover");
    await k.operatorStatus("mover", { nodeName: b.name, phase: "Running" }, "True", "Running");
    await k.setRunPolicy("mover", "Suspended");
    const suspended = await k.waitFor(
      "mover",
      "Suspended=True on b",
      (v) => cond(v, "Suspended")?.status === "True",
    );
    t.is((await b.shim.hv.list()).length, 0, "b saved its domain");
    t.is(suspended.status?.domainState, "suspended");
    t.is(
      suspended.status?.domainId,
      undefined,
      "no domain id: a saved domain has none, and a's is not this VM's",
    );
    const managed = suspended.metadata.managedFields ?? [];
    const fromA = JSON.stringify(
      managed.find((m) => m.manager === nodeAgentFieldManager(a.name))?.fieldsV1 ?? {},
    );
    t.false(fromA.includes("f:domainId"), fromA);
    t.is((await a.shim.hv.list()).length, 1, "a's agent did nothing to its domain: the VM is not on a");
  },
);
