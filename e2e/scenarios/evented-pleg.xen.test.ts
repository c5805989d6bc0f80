// The kubelet with its EventedPLEG feature gate on (alpha), against the shim's GetContainerEvents: the
// kubelet then relists sandboxes and containers every 5 minutes instead of every second, and learns
// of starts and exits from the stream. A UnikernelVM comes up through it; a guest whose domain is
// destroyed behind everyone's back is restarted long before any relist could have seen the exit, and
// stays Ready through a restart of the kubelet (whose first relist reads the pod from PodSandboxStatus).
import test from "ava";
import { readFileSync } from "node:fs";
import https from "node:https";
import { LABELS } from "../../api/annotations.js";
import { guestDomainsFromXl, XL_LIST_VERBOSE } from "../xen-node/xl-domains.js";
import { eventually, example, guestDomains, logTiming, type Scenario, useE2ECluster } from "./helpers.js";

const scenario = useE2ECluster(test, "evp", { kubeletFeatureGates: { EventedPLEG: true } });
const TEST_TIMEOUT_MS = 12 * 60_000;
/** The kubelet's relist period with EventedPLEG (pkg/kubelet/kubelet.go: eventedPlegRelistPeriod). */
const EVENTED_RELIST_MS = 300_000;
/** One observation per relist of the kubelet's generic PLEG (since the kubelet started). */
const RELISTS = "kubelet_pleg_relist_duration_seconds_count";

/**
 * A metric from the kubelet's /metrics, read on its port with the admin certificate (the apiserver's
 * node proxy refuses the node's loopback address).
 */
async function kubeletMetric(s: Scenario, name: string): Promise<number | undefined> {
  const { pki } = s.cluster.cp;
  const text = await new Promise<string>((resolve, reject) => {
    const req = https.get(
      {
        host: "127.0.0.1",
        port: s.cluster.nodes[0]!.kubelet.port,
        path: "/metrics",
        servername: "localhost",
        ca: readFileSync(pki.caCert),
        cert: readFileSync(pki.adminCert),
        key: readFileSync(pki.adminKey),
        timeout: 30_000,
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (body += c));
        res.on("end", () =>
          res.statusCode === 200 ? resolve(body) : reject(new Error(`kubelet /metrics: ${res.statusCode}`)),
        );
      },
    );
    req.on("timeout", () => req.destroy(new Error("kubelet /metrics: timed out")));
    req.on("error", reject);
  });
  // A counter may carry the _total suffix, depending on the metrics library's version.
  const line = text.split("\n").find((l) => new RegExp(`^${name}(_total)?[ {]`).test(l));
  return line === undefined ? undefined : Number(line.trim().split(/\s+/).at(-1));
}

/** The guest domains in `xl list`, as "name id". */
async function domainsWithIds(s: Scenario): Promise<string[]> {
  const r = await s.cluster.nodes[0]!.xen.exec(XL_LIST_VERBOSE);
  if (r.code !== 0) throw new Error(`xl list failed: ${r.stderr}`);
  return guestDomainsFromXl(r.stdout).map((d) => `${d.name} ${d.id}`);
}

async function helloPod(s: Scenario): Promise<{ phase: string; restarts: number; ready: boolean }> {
  const list = JSON.parse(await s.ok(["get", "pods", "-l", `${LABELS.vm}=hello`, "-o", "json"])) as {
    items: Array<{
      status: { phase?: string; containerStatuses?: Array<{ restartCount: number; ready: boolean }> };
    }>;
  };
  if (list.items.length !== 1) throw new Error(`expected one pod of hello, found ${list.items.length}`);
  const st = list.items[0]!.status;
  const cs = st.containerStatuses?.[0];
  return { phase: st.phase ?? "", restarts: cs?.restartCount ?? -1, ready: cs?.ready ?? false };
}

test.serial(
  "a VM comes up through the kubelet's event stream; a destroyed guest restarts without a relist and stays Ready through a kubelet restart",
  async (t) => {
    const s = await scenario(t, TEST_TIMEOUT_MS);
    const node = s.cluster.nodes[0]!;
    const applied = Date.now();
    await s.ok(["apply", "-f", example("hello")]);
    await s.ok(["wait", "--for=condition=Ready", "uvm/hello", "--timeout=600s"]);
    logTiming(t, "kubectl apply -> Ready", Date.now() - applied);
    t.like(await helloPod(s), { phase: "Running", restarts: 0, ready: true });

    t.true(
      ((await kubeletMetric(s, "kubelet_evented_pleg_connection_success_count")) ?? 0) >= 1,
      "the kubelet opened the shim's event stream",
    );
    t.is(
      (await kubeletMetric(s, "kubelet_evented_pleg_connection_error_count")) ?? 0,
      0,
      "and it never failed",
    );

    // The guest's domain goes away outside the shim and the kubelet: the shim's exit monitor sees it,
    // the container becomes exited (an event), and the kubelet restarts it.
    const [domain] = await guestDomains(s);
    t.truthy(domain, "the guest's domain is in xl list");
    // Every event the kubelet takes from the stream is one observation of this histogram.
    const EVENTS = "kubelet_evented_pleg_connection_latency_seconds_count";
    const eventsBefore = (await kubeletMetric(s, EVENTS)) ?? 0;
    t.true(eventsBefore >= 3, `the kubelet took the pod's start from events (${eventsBefore})`);
    const destroyed = Date.now();
    const r = await node.xen.exec(`xl destroy ${domain!}`);
    t.is(r.code, 0, r.stderr);
    const restarted = await eventually(
      "the pod restarted and ready again",
      async () => {
        const p = await helloPod(s);
        return p.restarts >= 1 && p.ready ? p : undefined;
      },
      EVENTED_RELIST_MS,
      1000,
    );
    const ms = Date.now() - destroyed;
    logTiming(t, "xl destroy -> the pod restarted and Ready", ms);
    t.like(restarted, { phase: "Running", restarts: 1 });
    t.true(ms < EVENTED_RELIST_MS / 2, `restarted in ${ms} ms, well inside one relist period`);
    // The exit, the new container's creation and its start: three more events at least.
    t.true(
      ((await kubeletMetric(s, EVENTS)) ?? 0) >= eventsBefore + 3,
      "the kubelet took the exit and the restart from events",
    );
    t.is((await kubeletMetric(s, "kubelet_evented_pleg_connection_error_count")) ?? 0, 0);
    await s.ok(["wait", "--for=condition=Ready", "uvm/hello", "--timeout=300s"]);

    // The kubelet reads a pod back from the runtime in each relist (every 5 minutes with EventedPLEG;
    // the one that failed in CI) and, all pods at once, as it starts: through PodSandboxStatus, with
    // the pod's containers in the shim's order, taking the first of a name. With the exited attempt
    // first it took the running VM for dead, asked for attempt 1 again (refused: it exists) and held
    // the pod in CrashLoopBackOff. A restart (an upgrade, a crash) reads it now, not in 5 minutes.
    const domainsBefore = await domainsWithIds(s);
    const readyAgainMs = await node.kubelet.restart();
    logTiming(t, "kubelet restart -> the Node Ready again", readyAgainMs);
    await eventually(
      "the restarted kubelet's first relist and its event stream",
      async () =>
        ((await kubeletMetric(s, RELISTS)) ?? 0) >= 1 &&
        ((await kubeletMetric(s, "kubelet_evented_pleg_connection_success_count")) ?? 0) >= 1
          ? true
          : undefined,
      120_000,
      2000,
    );
    // The pod's syncs after that relist run on what it put in the kubelet's cache.
    await new Promise((r) => setTimeout(r, 20_000));
    t.like(await helloPod(s), { phase: "Running", restarts: 1, ready: true }, "the relist changed nothing");
    t.deepEqual(
      await domainsWithIds(s),
      domainsBefore,
      "the same guest domain runs: none made, none destroyed",
    );
    await s.ok(["wait", "--for=condition=Ready", "uvm/hello", "--timeout=60s"]);
  },
);
