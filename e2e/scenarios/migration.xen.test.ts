// Live migration between two emulated Xen nodes, as a user does it: `kubectl apply`, `kubectl
// superfluid migrate --to <node> --wait`, `kubectl get/logs/label`, against a cluster whose nodes run
// real kubelets, shims with their node agents, kube-proxy and the operator. Side doors: `xl list` in
// each dom0 (where does the domain really run?) and a curl loop inside one dom0 (a client of the
// Service). One cluster boot for the whole file; the tests run in order and share the VMs' history.
//   1. hello moves A -> B: its tick counter (kubectl logs) continues from A's last tick.
//   2. http moves while a client requests its Service's ClusterIP; it answers from the new node.
//   3. hello as a PVH guest moves live (pre-copy with HAP's log-dirty): Transferred says live.
//   4. a migration to a node that is not a Xen node ends Failed with a reason and an Event; the VM
//      runs on, untouched.
import test, { type ExecutionContext } from "ava";
import { join } from "node:path";
import { LABELS } from "../../api/annotations.js";
import type { UnikernelVM, UnikernelVMMigration } from "../../api/index.js";
import { REPO_ROOT } from "../../lib/paths.js";
import type { ClusterNode } from "../cluster/index.js";
import { eventually, logTiming, type Scenario, useE2ECluster } from "./helpers.js";
import { domainsOn, followPodLog, parseTicks, probeFromDom0, superfluidRun } from "./migration-helpers.js";
import { inCidr } from "../xen-node/pod-network.js";

const scenario = useE2ECluster(test, "mig", { nodes: 2 });
const TEST_TIMEOUT_MS = 25 * 60_000;
/** Operator + two agents + a restore under TCG on a machine at load ~20: minutes, not seconds. */
const MIGRATION_BUDGET_MS = 15 * 60_000;

async function getVm(s: Scenario, name: string): Promise<UnikernelVM> {
  return JSON.parse(await s.ok(["get", "uvm", name, "-o", "json"])) as UnikernelVM;
}

async function getMigration(s: Scenario, name: string): Promise<UnikernelVMMigration> {
  return JSON.parse(await s.ok(["get", "unikernelvmmigrations", name, "-o", "json"])) as UnikernelVMMigration;
}

function nodeNamed(s: Scenario, name: string | undefined): ClusterNode {
  const node = s.cluster.nodes.find((n) => n.xen.name === name);
  if (!node) throw new Error(`${name ?? "(no node)"} is not one of the cluster's nodes`);
  return node;
}

const otherNode = (s: Scenario, node: ClusterNode) => s.cluster.nodes.find((n) => n !== node)!;

async function applyAndWait(
  t: ExecutionContext,
  s: Scenario,
  example: string,
  name: string,
): Promise<UnikernelVM> {
  const at = Date.now();
  await s.ok(["apply", "-f", join(REPO_ROOT, "examples", example)]);
  await s.ok(["wait", "--for=condition=Ready", `uvm/${name}`, "--timeout=900s"]);
  logTiming(t, `${name}: kubectl apply -> Ready`, Date.now() - at);
  return getVm(s, name);
}

/** `kubectl superfluid migrate <vm> --to <node> --wait`; returns the migration object and the wall time. */
async function migrate(
  t: ExecutionContext,
  s: Scenario,
  vm: string,
  to: string,
): Promise<{ code: number; output: string; m: UnikernelVMMigration; ms: number }> {
  const at = Date.now();
  const r = await superfluidRun(s, ["migrate", vm, "--to", to, "--wait"], MIGRATION_BUDGET_MS);
  const ms = Date.now() - at;
  t.log(
    `kubectl superfluid migrate ${vm} --to ${to} --wait (exit ${r.code}, ${(ms / 1000).toFixed(1)} s):\n${r.stdout.trim()}${r.stderr.trim() ? `\nstderr: ${r.stderr.trim()}` : ""}`,
  );
  const name = /unikernelvmmigration\/(\S+) created/.exec(r.stdout)?.[1];
  if (!name) throw new Error(`the plugin created no migration: ${r.stdout} ${r.stderr}`);
  // Succeeded comes with the switch to the target pod; the source reports its figures (Transferred,
  // downtime) once it has destroyed its own copy, a moment after the commit protocol's handover.
  const m = await eventually(
    `migration ${name}: the source's Transferred condition after Succeeded`,
    async () => {
      const cur = await getMigration(s, name);
      if (cur.status?.phase !== "Succeeded") return cur;
      const transferred = cur.status.conditions?.find((c) => c.type === "Transferred");
      return transferred && transferred.status !== "Unknown" ? cur : undefined;
    },
    60_000,
    500,
  );
  return { code: r.code, output: r.stdout, m, ms };
}

function logMigration(t: ExecutionContext, m: UnikernelVMMigration): void {
  const st = m.status;
  const transferred = st?.conditions?.find((c) => c.type === "Transferred");
  t.log(
    `migration ${m.metadata.name}: ${st?.phase} ${st?.sourceNode} -> ${st?.targetNode}; totalMilliseconds ${st?.totalMilliseconds}, ` +
      `downtimeMilliseconds ${st?.downtimeMilliseconds}, transferredBytes ${st?.transferredBytes}; ` +
      `ran: ${/^live/.test(transferred?.message ?? "") ? "live" : /stop-and-copy/.test(transferred?.message ?? "") ? "stop-and-copy" : "?"} ` +
      `(Transferred: ${transferred?.reason}: ${transferred?.message})`,
  );
}

/** Follows the VM's pod log on its node A, waits for three ticks, moves it to the other node B with the plugin. */
async function moveTicking(t: ExecutionContext, s: Scenario, vm: string) {
  const before = await getVm(s, vm);
  const a = nodeNamed(s, before.status?.nodeName);
  const b = otherNode(s, a);
  const sourcePod = before.status?.podName ?? "";
  t.log(`${vm} on ${a.xen.name} (pod ${sourcePod}, ${before.status?.ip}); moving it to ${b.xen.name}`);
  // Follow A's pod before the move: it is deleted after the switch, and with it its log.
  const onA = followPodLog(s, sourcePod);
  await eventually(
    "three ticks on A",
    async () => (parseTicks(onA.text()).length >= 3 ? true : undefined),
    180_000,
    500,
  );
  const { m, ms } = await migrate(t, s, vm, b.xen.name);
  logMigration(t, m);
  t.is(m.status?.phase, "Succeeded", m.status?.message);
  logTiming(t, `${vm}: migrate --wait -> Succeeded`, ms);
  const after = await getVm(s, vm);
  t.is(after.status?.nodeName, b.xen.name, "the VM's status names the new node");
  return { a, b, m, sourcePod, targetPod: after.status?.podName ?? "", onA };
}

/** A's log ends when its pod goes; B's pod log must go on from A's last tick, one by one. */
async function ticksContinue(
  t: ExecutionContext,
  s: Scenario,
  moved: Awaited<ReturnType<typeof moveTicking>>,
): Promise<void> {
  const { a, b, m, onA, targetPod } = moved;
  await Promise.race([onA.ended, new Promise((r) => setTimeout(r, 120_000))]);
  const ticksA = parseTicks(await onA.stop());
  const lastA = ticksA.at(-1)!;
  const ticksB = await eventually(
    "three ticks in the target pod's log",
    async () => {
      const ticks = parseTicks(await s.ok(["logs", "--timestamps", `pod/${targetPod}`]));
      return ticks.length >= 3 ? ticks : undefined;
    },
    180_000,
    1000,
  );
  const firstB = ticksB[0]!;
  t.log(
    `ticks on ${a.xen.name}: ${ticksA[0]?.n}..${lastA.n}; on ${b.xen.name}: ${firstB.n}..${ticksB.at(-1)?.n}; ` +
      `gap between A's last and B's first tick by the log timestamps (two dom0 clocks): ${firstB.at - lastA.at} ms; ` +
      `status downtime ${m.status?.downtimeMilliseconds} ms`,
  );
  t.is(firstB.n, lastA.n + 1, "B's first tick follows A's last: no reset, nothing lost, nothing repeated");
  const broken = ticksB.findIndex((k, i) => i > 0 && k.n !== ticksB[i - 1]!.n + 1);
  t.is(broken, -1, `every tick on B is the previous + 1 (${ticksB.map((k) => k.n).join(",")})`);
}

test.serial("hello moves to the other node and its tick counter continues where it stopped", async (t) => {
  const s = await scenario(t, TEST_TIMEOUT_MS);
  const placed = await applyAndWait(t, s, "hello.yaml", "hello");
  t.is((await domainsOn(nodeNamed(s, placed.status?.nodeName))).length, 1, "xl list shows hello's domain");
  const moved = await moveTicking(t, s, "hello");
  const { a, b, m, sourcePod, targetPod } = moved;
  t.true((m.status?.transferredBytes ?? 0) > 0, "transferredBytes is reported");
  t.true(m.status?.downtimeMilliseconds !== undefined, "downtimeMilliseconds is reported");
  const listed = await s.ok(["get", "uvm", "hello", "--no-headers"]);
  t.log(`kubectl get uvm hello: ${listed.trim()}`);
  t.true(listed.includes(b.xen.name), "kubectl get uvm shows the new node");
  t.not(targetPod, sourcePod, "the VM's pod is the target pod now");
  await ticksContinue(t, s, moved);

  t.deepEqual(await domainsOn(a), [], `xl list on ${a.xen.name}: Domain-0 alone`);
  t.is((await domainsOn(b)).length, 1, `xl list on ${b.xen.name}: hello's domain`);
  await eventually(
    `source pod ${sourcePod} gone`,
    async () => ((await s.kubectl(["get", "pod", sourcePod])).code !== 0 ? true : undefined),
    300_000,
    2000,
  );
});

test.serial("http keeps its Service's ClusterIP across a migration while a client requests it", async (t) => {
  const s = await scenario(t, TEST_TIMEOUT_MS);
  // The domains each node runs already (hello, after the test before this one): the scheduler may
  // place http beside it, and the source must be left with exactly these after http moves away.
  const already = new Map<string, Awaited<ReturnType<typeof domainsOn>>>();
  for (const n of s.cluster.nodes) already.set(n.xen.name, await domainsOn(n));
  const before = await applyAndWait(t, s, "http.yaml", "http");
  const a = nodeNamed(s, before.status?.nodeName);
  const b = otherNode(s, a);
  const clusterIp = (await s.ok(["get", "svc", "http", "-o", "jsonpath={.spec.clusterIP}"])).trim();
  const url = `http://${clusterIp}:8080/`;
  const get = async (from: ClusterNode) => {
    const r = await from.xen.exec(`curl -sf -m 10 ${url}`);
    return r.code === 0
      ? (JSON.parse(r.stdout) as { requests: number; uptimeSeconds: number; address: string })
      : undefined;
  };
  const first = await eventually(`GET ${url} from ${a.xen.name}`, () => get(a), 180_000, 2000);
  t.log(
    `http on ${a.xen.name} (pod IP ${before.status?.ip}), ClusterIP ${clusterIp}: ${JSON.stringify(first)}`,
  );

  // The client runs in A's dom0: after the move its requests cross the segment to B.
  const probe = probeFromDom0(a, `${url}healthz`, 200, 1);
  let report;
  try {
    const { m, ms } = await migrate(t, s, "http", b.xen.name);
    logMigration(t, m);
    t.is(m.status?.phase, "Succeeded", m.status?.message);
    logTiming(t, "http: migrate --wait -> Succeeded", ms);
    const after = await getVm(s, "http");
    t.is(after.status?.nodeName, b.xen.name);
    const newIp = after.status?.ip ?? "";
    t.true(
      inCidr(newIp, b.xen.podCidr),
      `the VM's IP ${newIp} is in ${b.xen.name}'s subnet ${b.xen.podCidr}`,
    );
    await eventually(
      "the Service's endpoints name the new pod IP only",
      async () => {
        const ips = (
          await s.ok([
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=http",
            "-o",
            "jsonpath={.items[*].endpoints[*].addresses[*]}",
          ])
        ).trim();
        return ips === newIp ? true : undefined;
      },
      180_000,
      2000,
    );
    t.is(
      (await s.ok(["get", "svc", "http", "-o", "jsonpath={.spec.clusterIP}"])).trim(),
      clusterIp,
      "the ClusterIP is unchanged",
    );
    // Same guest, not a reboot: its request counter goes on.
    const answer = await eventually(
      `GET ${url} from ${a.xen.name} after the move`,
      () => get(a),
      180_000,
      2000,
    );
    t.log(`after the move, from ${a.xen.name}: ${JSON.stringify(answer)}`);
    t.true(
      answer.requests > first.requests,
      `request counter went on (${first.requests} -> ${answer.requests})`,
    );
    // From the new node's own dom0 too: kube-proxy's DNAT (ClusterIP -> pod IP) is in nat OUTPUT there, and
    // the readdressing (pod IP -> the guest's own address) happens below netfilter, in the bridge.
    const fromB = await eventually(
      `GET ${url} from ${b.xen.name}'s own dom0 after the move`,
      () => get(b),
      180_000,
      2000,
    );
    t.log(`after the move, from ${b.xen.name}'s own dom0: ${JSON.stringify(fromB)}`);
    t.true(fromB.requests > answer.requests, "the same guest answers the target's own dom0");
    t.deepEqual(
      await domainsOn(a),
      already.get(a.xen.name),
      `xl list on ${a.xen.name}: no domain of http left, the others untouched`,
    );
  } finally {
    report = await probe.stop();
  }
  t.log(
    `client in ${a.xen.name}'s dom0 (GET every 200 ms, 1 s timeout): ${report.sent} sent, ${report.failed} failed, longest failure window ${report.longestFailureMs} ms`,
  );
  t.true(report.sent > 0, "the client ran");
});

/** hello as a PVH guest (same ELF: it carries a PVH entry next to the PV one); HAP tracks its dirty pages. */
const HELLO_PVH = `apiVersion: superfluid.dev/v1alpha1
kind: UnikernelVM
metadata:
  name: hello-pvh
spec:
  image: localhost:5000/superfluid/hello:v0.1
  guestType: pvh
  memory: 16Mi
  vcpus: 1
`;

test.serial("a PVH hello moves live (pre-copy on HAP) through kubectl and counts on", async (t) => {
  const s = await scenario(t, TEST_TIMEOUT_MS);
  const on = new Map<string, Awaited<ReturnType<typeof domainsOn>>>();
  for (const n of s.cluster.nodes) on.set(n.xen.name, await domainsOn(n));
  const at = Date.now();
  await s.ok(["apply", "-f", "-"], HELLO_PVH);
  await s.ok(["wait", "--for=condition=Ready", "uvm/hello-pvh", "--timeout=900s"]);
  logTiming(t, "hello-pvh: kubectl apply -> Ready", Date.now() - at);
  const moved = await moveTicking(t, s, "hello-pvh");
  const { a, b, m } = moved;
  t.is(m.spec.mode, "live", "the plugin asks for live by default");
  const transferred = m.status?.conditions?.find((c) => c.type === "Transferred");
  t.regex(transferred?.message ?? "", /^live/, "the Transferred condition says the move was live (pre-copy)");
  await ticksContinue(t, s, moved);
  t.deepEqual(await domainsOn(a), on.get(a.xen.name), `xl list on ${a.xen.name}: hello-pvh's domain is gone`);
  t.is(
    (await domainsOn(b)).length,
    on.get(b.xen.name)!.length + 1,
    `xl list on ${b.xen.name}: hello-pvh runs there`,
  );
  await s.ok(["delete", "uvm", "hello-pvh", "--wait=true", "--timeout=600s"]);
  const left = await eventually(
    `hello-pvh's domain gone from ${b.xen.name}`,
    async () => {
      const ds = await domainsOn(b);
      return ds.length === on.get(b.xen.name)!.length ? ds : undefined;
    },
    300_000,
    2000,
  );
  t.deepEqual(left, on.get(b.xen.name), "deleted: no domain of hello-pvh left, the others untouched");
});

test.serial(
  "a migration to a node that is not a Xen node fails with a reason and an Event; the VM runs on",
  async (t) => {
    const s = await scenario(t, TEST_TIMEOUT_MS);
    const vm = await getVm(s, "hello");
    const host = nodeNamed(s, vm.status?.nodeName);
    const other = otherNode(s, host);
    const pod = JSON.parse(await s.ok(["get", "pod", vm.status?.podName ?? "", "-o", "json"])) as {
      metadata: { uid: string };
    };
    const domains = await domainsOn(host); // hello's, and http's when the scheduler put it here too
    t.true(domains.length >= 1, `xl list on ${host.xen.name}: ${JSON.stringify(domains)}`);
    const tickBefore =
      parseTicks(await s.ok(["logs", "--timestamps", `pod/${vm.status?.podName}`])).at(-1)?.n ?? 0;

    // The other node stops being a Xen node as far as the cluster knows: an admin removed its label.
    await s.cluster.kubectl(["label", "node", other.xen.name, `${LABELS.xenNode}-`]);
    try {
      const { code, output, m } = await migrate(t, s, "hello", other.xen.name);
      logMigration(t, m);
      t.is(code, 1, "migrate --wait exits 1");
      t.regex(output, /migration failed \(TargetNotXenNode\): node \S+ is not labelled/);
      t.is(m.status?.phase, "Failed");
      const succeeded = m.status?.conditions?.find((c) => c.type === "Succeeded");
      t.like(succeeded, { status: "False", reason: "TargetNotXenNode" });
      // Events go after the writes they tell of: wait for the Warning rather than read once.
      const events = await eventually(
        "the TargetNotXenNode Warning",
        async () => {
          const list = JSON.parse(
            await s.ok([
              "get",
              "events",
              "--field-selector",
              `involvedObject.name=${m.metadata.name},involvedObject.kind=UnikernelVMMigration`,
              "-o",
              "json",
            ]),
          ) as { items: Array<{ type: string; reason: string; message: string }> };
          return list.items.some((e) => e.type === "Warning" && e.reason === "TargetNotXenNode")
            ? list
            : undefined;
        },
        60_000,
        1000,
      );
      t.log(
        `events of ${m.metadata.name}: ${events.items.map((e) => `${e.type} ${e.reason}: ${e.message}`).join(" | ")}`,
      );
      t.true(
        events.items.some((e) => e.type === "Warning" && e.reason === "TargetNotXenNode"),
        "a Warning Event says why",
      );
    } finally {
      await s.cluster.kubectl(["label", "node", other.xen.name, `${LABELS.xenNode}=true`, "--overwrite"]);
    }

    // Untouched: same node, same pod (uid), same domain id, and the counter still runs.
    const now = await getVm(s, "hello");
    t.is(now.status?.nodeName, host.xen.name);
    t.is(now.status?.podName, vm.status?.podName);
    t.is(
      (
        JSON.parse(await s.ok(["get", "pod", now.status?.podName ?? "", "-o", "json"])) as {
          metadata: { uid: string };
        }
      ).metadata.uid,
      pod.metadata.uid,
    );
    t.deepEqual(await domainsOn(host), domains, `xl list on ${host.xen.name}: the same domain`);
    const httpThere = (await getVm(s, "http")).status?.nodeName === other.xen.name ? 1 : 0;
    t.is(
      (await domainsOn(other)).length,
      httpThere,
      `no domain was started on the rejected node (http's there: ${httpThere})`,
    );
    await eventually(
      `a tick above ${tickBefore}`,
      async () => {
        const last =
          parseTicks(await s.ok(["logs", "--timestamps", `pod/${now.status?.podName}`])).at(-1)?.n ?? 0;
        return last > tickBefore ? true : undefined;
      },
      120_000,
      1000,
    );
    t.true(
      now.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false,
      "hello is still Ready",
    );

    // Nothing left behind when the VMs go.
    await s.ok(["delete", "uvm", "hello", "http", "--wait=true", "--timeout=600s"]);
    for (const n of s.cluster.nodes)
      t.deepEqual(
        await eventually(
          `no domain on ${n.xen.name}`,
          async () => ((await domainsOn(n)).length === 0 ? [] : undefined),
          300_000,
          2000,
        ),
        [],
      );
  },
);
