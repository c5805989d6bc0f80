// The chart and the VMs driven the way Argo CD drives them: render with `helm template`, server-side
// apply as the `argocd-controller` field manager (CRDs first, as its sync waves order them), then
// health from the Lua script in docs/argocd.md on the live objects. A second sync of the same
// revision changes nothing, the operator's writes never fight Git's fields, the VMs report Healthy,
// and a VM that Git declares stopped is Healthy too, so it cannot hold a sync open (Argo CD #29663).
// Cluster-scoped objects (CRDs, policies) make this file use a private control plane. The node side
// (a Xen Node, the pod's binding and status) is played by the test; the rest is real.
import test from "ava";
import { KubeConfig, type V1Pod } from "@kubernetes/client-node";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { API_VERSION, LABELS, UNIKERNELVM_PLURAL, type UnikernelVM } from "../../api/index.js";
import {
  type ControlPlane,
  runCommand,
  startControlPlane,
  writeUserKubeconfig,
} from "../../e2e/harness/control-plane.js";
import { KubeClient, paths } from "../../lib/kube/client.js";
import { waitFor } from "../../lib/net.js";
import { k8sBinary, REPO_ROOT } from "../../lib/paths.js";
import { managedTempDir } from "../../lib/process.js";
import { startOperator } from "../src/operator.js";
import { argoHealth } from "./argocd-lua.js";
import { bind, createXenNode, listPods, reapTerminatingPods } from "./kubelet.js";

const CHART = join(REPO_ROOT, "charts/superfluid");
const RELEASE = "sf";
const NS = "superfluid-system";
const APPS = "apps";
const MANAGER = "argocd-controller";
let cp: ControlPlane;

test.before(async () => {
  cp = await startControlPlane({ applyCRDs: false });
});
test.after.always(async () => {
  await cp?.stop();
});

interface Obj {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string; generation?: number };
}

/** `kubectl apply --server-side` as Argo CD's controller does it (no --force-conflicts). */
async function sync(manifests: string): Promise<void> {
  const r = await cp.kubectl(["apply", "--server-side", `--field-manager=${MANAGER}`, "-f", "-"], {
    input: manifests,
  });
  if (r.code !== 0) throw new Error(`server-side apply as ${MANAGER}: ${r.stderr}`);
}

async function live(o: Obj): Promise<Obj> {
  const group = o.apiVersion.includes("/") ? `.${o.apiVersion.split("/")[0]}` : "";
  const r = await cp.kubectl([
    "get",
    `${o.kind.toLowerCase()}${group}`,
    o.metadata.name,
    ...(o.metadata.namespace ? ["-n", o.metadata.namespace] : []),
    "-o",
    "json",
  ]);
  if (r.code !== 0) throw new Error(`get ${o.kind} ${o.metadata.name}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Obj;
}

const health = (obj: unknown): string => argoHealth(obj).status;

const vmManifest = (name: string, runPolicy: string) =>
  `apiVersion: ${API_VERSION}\nkind: UnikernelVM\nmetadata: {name: ${name}, namespace: ${APPS}}\n` +
  `spec: {image: "registry.local:5000/hello:1", memory: 4Mi, runPolicy: ${runPolicy}}\n`;

test.serial(
  "a sync of the chart and the VMs as Argo CD does it: idempotent, no fights, Healthy",
  async (t) => {
    t.timeout(240_000);
    // 1. Render, then apply CRDs first (Argo CD's sync order puts them before the objects using them).
    const rendered = await runCommand(k8sBinary("helm"), [
      "template",
      RELEASE,
      CHART,
      "--namespace",
      NS,
      "--include-crds",
    ]);
    t.is(rendered.code, 0, rendered.stderr);
    const docs = parseAllDocuments(rendered.stdout)
      .map((d) => d.toJS() as Obj | null)
      .filter((o): o is Obj => !!o);
    const yaml = (objs: Obj[]) => objs.map((o) => JSON.stringify(o)).join("\n---\n");
    const crds = docs.filter((o) => o.kind === "CustomResourceDefinition");
    const rest = docs.filter((o) => o.kind !== "CustomResourceDefinition");
    t.true(crds.length >= 2 && rest.length >= 8, `${crds.length} CRDs, ${rest.length} other objects`);
    // CreateNamespace=true, as an Application with a destination namespace would have it.
    await sync(
      `apiVersion: v1\nkind: Namespace\nmetadata: {name: ${NS}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: ${APPS}}\n`,
    );
    await sync(yaml(crds));
    const established = await cp.kubectl([
      "wait",
      "--for=condition=Established",
      "crd",
      "--all",
      "--timeout=60s",
    ]);
    t.is(established.code, 0, established.stderr);
    await sync(yaml(rest));

    // 2. A second sync of the same revision changes nothing: no object gets a new resourceVersion.
    const before = await Promise.all(docs.map(live));
    await sync(yaml(crds));
    await sync(yaml(rest));
    const after = await Promise.all(docs.map(live));
    t.deepEqual(
      after.map((o) => `${o.kind}/${o.metadata.name}@${o.metadata.resourceVersion}`),
      before.map((o) => `${o.kind}/${o.metadata.name}@${o.metadata.resourceVersion}`),
      "a re-sync rewrote objects (perpetual drift)",
    );

    // 3. The operator runs with the chart's ServiceAccount (the chart's admission policies hold it to that identity).
    const token = await cp.kubectl(["create", "token", `${RELEASE}-operator`, "-n", NS, "--duration=1h"]);
    t.is(token.code, 0, token.stderr);
    const dir = managedTempDir("sf-gitops-");
    writeUserKubeconfig(cp, join(dir, "operator.kubeconfig"), { token: token.stdout.trim() });
    const kc = new KubeConfig();
    kc.loadFromFile(join(dir, "operator.kubeconfig"));
    const admin = new KubeClient(cp.kubeConfig);
    await admin
      .request({
        method: "POST",
        path: `/api/v1/namespaces/${APPS}/serviceaccounts`,
        body: { metadata: { name: "default" } },
      })
      .catch(() => undefined);
    await createXenNode(admin, "xen-gitops");
    const op = await startOperator({ kubeConfig: kc, namespace: APPS });
    // Stopping a VM deletes its pod; the kubelet's last step (removing it) is played by the test.
    const stopReaper = reapTerminatingPods(admin, APPS);
    const getVM = (name: string) =>
      admin.request<UnikernelVM>({ method: "GET", path: paths.customObject(UNIKERNELVM_PLURAL, APPS, name) });
    try {
      await op.leading;
      // 4. Git holds two VMs: one running, one parked.
      await sync(vmManifest("web", "Running") + "---\n" + vmManifest("parked", "Stopped"));

      // The parked VM: Stopped, and Healthy for Argo CD, with no node involved.
      const parked = await waitFor(
        "parked reports Stopped",
        async () => {
          const v = await getVM("parked");
          return v.status?.phase === "Stopped" ? v : undefined;
        },
        60_000,
        200,
      );
      t.is(health(parked), "Healthy");

      // The running VM: Progressing until its pod runs, then Healthy. The test plays scheduler and kubelet.
      t.is(health(await getVM("web")), "Progressing");
      const pod = await waitFor(
        "web's pod",
        async () => (await listPods(admin, APPS, `${LABELS.vm}=web`))[0],
        60_000,
        200,
      );
      await bind(admin, pod, "xen-gitops");
      await podRunning(admin, pod);
      const web = await waitFor(
        "web reports Ready",
        async () => {
          const v = await getVM("web");
          return v.status?.conditions?.find((c) => c.type === "Ready")?.status === "True" ? v : undefined;
        },
        60_000,
        200,
      );
      t.is(health(web), "Healthy");

      // 5. Re-sync after the operator wrote status and finalizers: no conflict, no new generation,
      // and Git (argocd-controller) still owns the spec alone.
      const gens = [web.metadata.generation, parked.metadata.generation];
      await sync(vmManifest("web", "Running") + "---\n" + vmManifest("parked", "Stopped"));
      const [web2, parked2] = await Promise.all([getVM("web"), getVM("parked")]);
      t.deepEqual([web2.metadata.generation, parked2.metadata.generation], gens);
      for (const v of [web2, parked2]) {
        const specOwners = (
          (v.metadata as { managedFields?: { manager: string; fieldsV1?: unknown }[] }).managedFields ?? []
        )
          .filter((m) => JSON.stringify(m.fieldsV1 ?? {}).includes('"f:spec"'))
          .map((m) => m.manager);
        t.deepEqual(specOwners, [MANAGER], `${v.metadata.name}: spec owned by ${specOwners.join(", ")}`);
      }

      // 6. A commit that parks web: Progressing while it stops, then Healthy as Stopped.
      await sync(vmManifest("web", "Stopped"));
      const stopped = await waitFor(
        "web stopped",
        async () => {
          const v = await getVM("web");
          return v.status?.phase === "Stopped" && v.status.observedGeneration === v.metadata.generation
            ? v
            : undefined;
        },
        60_000,
        200,
      );
      t.is(health(stopped), "Healthy");
    } finally {
      stopReaper();
      await op.stop();
      admin.close();
    }
  },
);

/** What the kubelet would write once the domain booted: the pod Running and Ready. */
async function podRunning(admin: KubeClient, pod: V1Pod): Promise<void> {
  const now = new Date().toISOString();
  await admin.request({
    method: "PATCH",
    path: `${paths.pod(APPS, pod.metadata!.name!)}/status`,
    contentType: "application/merge-patch+json",
    body: {
      status: {
        phase: "Running",
        podIP: "10.244.0.9",
        podIPs: [{ ip: "10.244.0.9" }],
        startTime: now,
        conditions: ["PodScheduled", "Initialized", "ContainersReady", "Ready"].map((type) => ({
          type,
          status: "True",
          lastTransitionTime: now,
        })),
      },
    },
  });
}
