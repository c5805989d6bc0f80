// End to end, as a user: kubectl against a cluster whose one node is an emulated Xen host running a
// real kubelet and the CRI shim in dom0. Nothing here talks to the shim or the operator directly;
// the only side door is `xl list` in dom0, to check that a deleted VM's domain is really gone.
import test from "ava";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { LABELS, RUNTIME_CLASS } from "../../api/annotations.js";
import { exampleImageRef, pushLinuxContainerImage } from "../cluster/images.js";
import { XEN_TAINT } from "../cluster/kubelet.js";
import { guestDomainsFromXl, XL_LIST_VERBOSE } from "../xen-node/xl-domains.js";
import { eventually, example, guestDomains, logTiming, useE2ECluster, type PodView } from "./helpers.js";

const scenario = useE2ECluster(test, "ex");
/** Per test: domain builds, pulls and probes under TCG emulation on shared cores are slow. */
const TEST_TIMEOUT_MS = 20 * 60_000;

test.serial(
  "hello: apply, Ready, kubectl logs shows the console, delete removes pod and domain",
  async (t) => {
    const s = await scenario(t, TEST_TIMEOUT_MS);
    const applied = Date.now();
    await s.ok(["apply", "-f", example("hello")]);
    await s.ok(["wait", "--for=condition=Ready", "uvm/hello", "--timeout=600s"]);
    logTiming(t, "hello: kubectl apply -> Ready", Date.now() - applied);
    t.log(await s.ok(["get", "uvm", "hello", "-o", "wide"]));

    // The domain id and state reach the VM's status through the shim's node agent, a moment after
    // Ready, in its own apply on the VM: nothing is written on the pod for them.
    const vm = await eventually(
      "uvm/hello status.domainId",
      async () => {
        const v = JSON.parse(await s.ok(["get", "uvm", "hello", "-o", "json"])) as {
          status: { nodeName?: string; podName?: string; domainId?: number; domainState?: string };
        };
        return (v.status.domainId ?? 0) > 0 ? v : undefined;
      },
      120_000,
    );
    t.is(vm.status.nodeName, s.cluster.nodes[0]!.xen.name);
    t.is(vm.status.domainState, "running");
    const xl = await s.cluster.nodes[0]!.xen.exec(XL_LIST_VERBOSE);
    const domains = guestDomainsFromXl(xl.stdout);
    t.is(domains.length, 1, `xl list: ${domains.map((d) => d.name).join(", ")}`);
    t.is(vm.status.domainId, domains[0]!.id, "the status names the domain xl lists");
    const pod = JSON.parse(await s.ok(["get", "pod", vm.status.podName!, "-o", "json"])) as {
      metadata: { annotations?: Record<string, string> };
    };
    t.deepEqual(
      Object.keys(pod.metadata.annotations ?? {}).filter((k) => /domain-(id|state)$/.test(k)),
      [],
      "no domain annotation on the pod",
    );
    // The kubelet runs with a Go P per dom0 vCPU (kubelet.ts kubeletGoEnv).
    const procs = await s.cluster.nodes[0]!.xen.exec(
      "tr '\\0' '\\n' </proc/$(pidof kubelet | cut -d' ' -f1)/environ | grep '^GOMAXPROCS='; nproc",
    );
    const [env, nproc] = procs.stdout.trim().split("\n");
    t.is(env, `GOMAXPROCS=${nproc}`, procs.stderr);
    t.log(`dom0: ${nproc} vCPUs, kubelet ${env}`);

    // The console through the whole chain: guest ring -> xenconsoled/shim -> CRI log -> kubelet -> apiserver.
    const logs = await eventually(
      "hello's ready line and a counter tick in kubectl logs",
      async () => {
        const r = await s.kubectl(["logs", "-l", `${LABELS.vm}=hello`, "--tail=-1"]);
        return r.code === 0 && /hello: ready in/.test(r.stdout) && r.stdout.split("\n").length > 2
          ? r.stdout
          : undefined;
      },
      120_000,
    );
    t.regex(logs, /hello: ready in [\d.]+ ms/);
    t.log(logs.split("\n").slice(0, 4).join("\n"));

    await s.ok(["delete", "-f", example("hello"), "--wait=true", "--timeout=300s"]);
    await eventually(
      "hello's pod to be gone",
      async () =>
        (await s.ok(["get", "pods", "-l", `${LABELS.vm}=hello`, "-o", "name"])).trim() === ""
          ? true
          : undefined,
      300_000,
    );
    await eventually(
      "xl list back to Domain-0 alone",
      async () => ((await guestDomains(s)).length === 0 ? true : undefined),
      120_000,
    );
    t.deepEqual(await guestDomains(s), []);
  },
);

test.serial("http: Ready, and answers through its Service", async (t) => {
  const s = await scenario(t, TEST_TIMEOUT_MS);
  const applied = Date.now();
  await s.ok(["apply", "-f", example("http")]);
  await s.ok(["wait", "--for=condition=Ready", "uvm/http", "--timeout=600s"]);
  logTiming(t, "http: kubectl apply -> Ready", Date.now() - applied);

  const node = s.cluster.nodes[0]!;
  t.truthy(node.kubeProxy, "kube-proxy runs in dom0 (setup builds it): without it a ClusterIP leads nowhere");
  const clusterIp = (await s.ok(["get", "svc", "http", "-o", "jsonpath={.spec.clusterIP}"])).trim();
  t.regex(clusterIp, /^10\.96\.\d+\.\d+$/);
  const podIp = (await s.ok(["get", "uvm", "http", "-o", "jsonpath={.status.ip}"])).trim();
  // kube-proxy programs the rules a moment after the EndpointSlice appears: retry briefly.
  const answer = await eventually(
    `GET http://${clusterIp}:8080/ from the node`,
    async () => {
      const r = await node.xen.exec(`curl -sf -m 10 http://${clusterIp}:8080/`);
      return r.code === 0 ? r.stdout : undefined;
    },
    90_000,
    2000,
  );
  const status = JSON.parse(answer) as { hostname: string; address: string; requests: number };
  t.is(status.address.split(":")[0], podIp, `the Service led to the VM's pod IP: ${answer}`);
  t.true(status.requests >= 1);
  t.log(`through Service http (${clusterIp}:8080): ${answer.trim()}`);
});

function probePod(name: string, path: string): string {
  return stringify({
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name },
    spec: {
      runtimeClassName: RUNTIME_CLASS,
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      containers: [
        {
          name: "app",
          image: exampleImageRef("http"),
          resources: { requests: { memory: "128Mi" }, limits: { memory: "128Mi" } },
          ports: [{ containerPort: 8080 }],
          readinessProbe: {
            httpGet: { path, port: 8080 },
            periodSeconds: 3,
            failureThreshold: 1,
            timeoutSeconds: 5,
          },
        },
      ],
    },
  });
}

test.serial(
  "a readiness probe against the HTTP unikernel: a good path makes the pod Ready, a bad one keeps it unready",
  async (t) => {
    const s = await scenario(t, TEST_TIMEOUT_MS);
    // `create`, not `apply`: the shim refuses annotation values over 253 characters, and apply adds
    // kubectl.kubernetes.io/last-applied-configuration (reported to the shim).
    await s.ok(
      ["create", "-f", "-"],
      probePod("probe-good", "/healthz") + "---\n" + probePod("probe-bad", "/no-such-path"),
    );
    try {
      await s.ok(["wait", "--for=condition=Ready", "pod/probe-good", "--timeout=600s"]);
      // probe-bad's guest is up (Running) but its probe fails: the kubelet says so in an event.
      const failed = await eventually(
        "a 'Readiness probe failed' event for probe-bad",
        async () => {
          const r = await s.ok([
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=probe-bad,reason=Unhealthy",
            "-o",
            "jsonpath={.items[*].message}",
          ]);
          // The first failures can be "no route to host" while the guest still boots; wait for the
          // one that shows the guest answering the bad path.
          return /Readiness probe failed: HTTP probe failed with statuscode: 404/.test(r) ? r : undefined;
        },
        300_000,
      );
      t.regex(failed, /404/);
      const bad = JSON.parse(await s.ok(["get", "pod", "probe-bad", "-o", "json"])) as PodView;
      t.is(bad.status.phase, "Running");
      t.is(bad.status.conditions?.find((c) => c.type === "Ready")?.status, "False");
    } finally {
      await s.kubectl(["delete", "pod", "probe-good", "probe-bad", "--wait=true", "--timeout=300s"]);
    }
  },
);

test.serial("an ordinary Linux container image on a Xen node is refused with a clear reason", async (t) => {
  const s = await scenario(t, TEST_TIMEOUT_MS);
  const work = mkdtempSync(join(tmpdir(), "sf-e2e-linux-image-"));
  const domainsBefore = await guestDomains(s);
  try {
    const image = await pushLinuxContainerImage(s.cluster.registry, work);
    const pod = (name: string, tolerate: boolean) =>
      stringify({
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name },
        spec: {
          nodeSelector: { [LABELS.xenNode]: "true" },
          ...(tolerate
            ? { tolerations: [{ key: XEN_TAINT.key, operator: "Exists", effect: XEN_TAINT.effect }] }
            : {}),
          automountServiceAccountToken: false,
          containers: [{ name: "app", image }],
        },
      });
    // Without a toleration the taint keeps it off the node; with one (forced on) the node refuses it.
    await s.ok(["create", "-f", "-"], pod("linux-untolerated", false) + "---\n" + pod("linux-forced", true));
    const unscheduled = await eventually(
      "FailedScheduling for linux-untolerated",
      async () => {
        const r = await s.ok([
          "get",
          "events",
          "--field-selector",
          "involvedObject.name=linux-untolerated,reason=FailedScheduling",
          "-o",
          "jsonpath={.items[*].message}",
        ]);
        return r.includes("untolerated taint") ? r : undefined;
      },
      120_000,
    );
    // 1.36's message says "had untolerated taint(s)" without naming the key.
    t.regex(unscheduled, /untolerated taint/);
    const refusal = await eventually(
      "linux-forced to be refused by the node",
      async () => {
        const p = JSON.parse(await s.ok(["get", "pod", "linux-forced", "-o", "json"])) as PodView;
        const waiting = p.status.containerStatuses?.[0]?.state.waiting;
        if (waiting?.message) return { node: p.spec.nodeName, phase: p.status.phase, ...waiting };
        const ev = await s.ok([
          "get",
          "events",
          "--field-selector",
          "involvedObject.name=linux-forced",
          "-o",
          'jsonpath={range .items[*]}{.reason}: {.message}{"\\n"}{end}',
        ]);
        return /FailedCreatePodSandBox|Failed:/.test(ev) && /unikernel|runtime handler/i.test(ev)
          ? { node: p.spec.nodeName, phase: p.status.phase, reason: "event", message: ev }
          : undefined;
      },
      300_000,
      2000,
    );
    t.log(`refused: ${JSON.stringify(refusal)}`);
    t.is(refusal.node, s.cluster.nodes[0]!.xen.name);
    t.not(refusal.phase, "Running");
    t.regex(refusal.message ?? "", /unikernel|runtime handler/i, "the reason names what is wrong");
    t.deepEqual(await guestDomains(s), domainsBefore, "no domain was made for it");
  } finally {
    await s.kubectl(["delete", "pod", "linux-untolerated", "linux-forced", "--wait=true", "--timeout=120s"]);
    rmSync(work, { recursive: true, force: true });
  }
});
