// The operator as a process: leader election on a Lease, /healthz /readyz /metrics, SIGKILL in the
// middle of reconciling and a restart that converges to the same pods with no duplicates, SIGTERM
// that releases the lease.
import test from "ava";
import type { V1Pod } from "@kubernetes/client-node";
import { join } from "node:path";
import { freePort, waitFor } from "../../lib/net.js";
import { REPO_ROOT } from "../../lib/paths.js";
import { managedTempDir, type ManagedProcess, startProcess } from "../../lib/process.js";
import { API_VERSION, LABELS, UNIKERNELVM_PLURAL, type UnikernelVM } from "../../api/index.js";
import { useCluster } from "../../e2e/harness/ava.js";
import { podName } from "../src/desired.js";
import { KubeClient, paths } from "../../lib/kube/client.js";
import { clusterReady, listPods, prepareNamespace } from "./kubelet.js";

const cluster = useCluster(test, "operator-restart");
const VMS = 60;
let client: KubeClient;
let logDir: string;

test.before(async () => {
  const { cp, namespace } = await clusterReady(cluster);
  client = new KubeClient(cp.kubeConfig);
  await prepareNamespace(client, namespace);
  logDir = managedTempDir("sf-operator-");
});
test.after.always(() => client?.close());

function startOperatorProcess(name: string, port: number): ManagedProcess {
  const { cp, namespace } = cluster();
  return startProcess(
    name,
    process.execPath,
    [
      join(REPO_ROOT, "dist/operator/src/main.js"),
      `--kubeconfig=${cp.kubeconfigPath}`,
      `--namespace=${namespace}`,
      `--http-port=${port}`,
      `--lease-namespace=${namespace}`,
      "--lease-duration-seconds=6",
      // One worker: slow enough that the kill lands while VMs are still waiting for their pods.
      "--workers=1",
    ],
    { logPath: join(logDir, `${name}.log`), env: { ...process.env, LOG_FORMAT: "json" } },
  );
}

async function http(port: number, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text() };
}

interface Lease {
  spec: { holderIdentity?: string | null; leaseTransitions?: number };
}

test.serial("killed mid-reconcile and restarted, the operator converges to one pod per VM", async (t) => {
  const { namespace } = cluster();
  const port1 = await freePort();
  const first = startOperatorProcess("operator-1", port1);
  await waitFor(
    "operator-1 /readyz",
    async () =>
      (await http(port1, "/readyz").catch(() => ({ status: 0 }))).status === 200 ? true : undefined,
    60_000,
    100,
  );
  await waitFor(
    "operator-1 leads",
    async () => {
      const lease = await client
        .request<Lease>({ method: "GET", path: paths.lease(namespace, "superfluid-operator") })
        .catch(() => undefined);
      return lease?.spec.holderIdentity ? lease : undefined;
    },
    30_000,
    100,
  );
  t.is((await http(port1, "/healthz")).status, 200);

  const vms: UnikernelVM[] = await Promise.all(
    Array.from({ length: VMS }, (_, i) =>
      client.request<UnikernelVM>({
        method: "POST",
        path: paths.custom(UNIKERNELVM_PLURAL, namespace),
        body: {
          apiVersion: API_VERSION,
          kind: "UnikernelVM",
          metadata: { name: `vm-${i}` },
          spec: { image: "registry.local:5000/hello:1", memory: "8Mi" },
        },
      }),
    ),
  );
  const atKill = await waitFor(
    "some but not all pods",
    async () => {
      const n = (await listPods(client, namespace)).length;
      return n >= 3 ? n : undefined;
    },
    60_000,
    20,
  );
  first.child.kill("SIGKILL");
  await first.exited;
  t.true(atKill < VMS, `the kill came after all ${atKill} pods existed: not mid-reconcile`);

  const port2 = await freePort();
  const second = startOperatorProcess("operator-2", port2);
  try {
    const pods = await waitFor(
      "one pod per VM",
      async () => {
        const p = await listPods(client, namespace);
        return p.length >= VMS ? p : undefined;
      },
      120_000,
      200,
    );
    // Let the restarted operator settle, then look again: still exactly one pod per VM.
    await waitFor(
      "every VM's status names its pod",
      async () => {
        const list = await client.request<{ items: UnikernelVM[] }>({
          method: "GET",
          path: paths.custom(UNIKERNELVM_PLURAL, namespace),
        });
        return list.items.every((v) => v.status?.podName === podName(v)) ? true : undefined;
      },
      120_000,
      200,
    );
    const final: V1Pod[] = await listPods(client, namespace);
    t.is(final.length, VMS);
    t.is(pods.length, VMS);
    t.deepEqual(final.map((p) => p.metadata!.name).sort(), vms.map((v) => podName(v)).sort());
    t.true(final.every((p) => p.metadata!.labels![LABELS.vm] !== undefined));

    const metrics = (await http(port2, "/metrics")).body;
    t.regex(metrics, /superfluid_reconcile_total\{controller="unikernelvm",outcome="success"\} \d+/);
    t.regex(metrics, /superfluid_unikernelvms\{phase="Pending"\} 60/);
    t.regex(metrics, /superfluid_leader 1/);
    t.regex(metrics, /superfluid_workqueue_depth\{controller="unikernelvm"\} \d+/);

    // SIGTERM: a clean exit that hands the lease back.
    second.child.kill("SIGTERM");
    t.is(await second.exited, 0);
    const lease = await client.request<Lease>({
      method: "GET",
      path: paths.lease(namespace, "superfluid-operator"),
    });
    t.falsy(lease.spec.holderIdentity);
    t.true(
      (lease.spec.leaseTransitions ?? 0) >= 1,
      "the second process took the lease over from the killed one",
    );
  } finally {
    await second.stop();
  }
});
