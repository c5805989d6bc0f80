// The chart's admission policies (ValidatingAdmissionPolicy, CEL) decided by a real kube-apiserver:
// only the operator's ServiceAccount sets superfluid.dev/ annotations on pods, and a node agent acts
// only on its own node's pods, UnikernelVMs and migrations, its node being the one its token is bound
// to. Cluster-scoped policies, RBAC and Nodes make this file use a private control plane.
import test from "ava";
import { KubeConfig } from "@kubernetes/client-node";
import { join } from "node:path";
import { API_VERSION, MIGRATION_PLURAL, nodeAgentFieldManager, UNIKERNELVM_PLURAL } from "../../api/index.js";
import { KubeClient, paths } from "../../lib/kube/client.js";
import { waitFor } from "../../lib/net.js";
import { k8sBinary, REPO_ROOT } from "../../lib/paths.js";
import { managedTempDir } from "../../lib/process.js";
import {
  type CommandResult,
  type ControlPlane,
  runCommand,
  startControlPlane,
  writeUserKubeconfig,
} from "../../e2e/harness/control-plane.js";

const CHART = join(REPO_ROOT, "charts/superfluid");
const RELEASE = "sf";
const NS = "superfluid-system";
const APPS = "apps";
let cp: ControlPlane;
let dir: string;
type Kubectl = (args: string[], input?: unknown) => Promise<CommandResult>;
const as: Record<"admin" | "alice" | "operator" | "agentA" | "agentUnbound", Kubectl> = {} as never;

async function tokenKubectl(name: string, sa: string, bound?: string): Promise<Kubectl> {
  const r = await cp.kubectl([
    "create",
    "token",
    sa,
    "-n",
    NS,
    "--duration=1h",
    ...(bound ? ["--bound-object-kind", "Node", "--bound-object-name", bound] : []),
  ]);
  if (r.code !== 0) throw new Error(`token for ${sa}: ${r.stderr}`);
  const path = join(dir, `${name}.kubeconfig`);
  writeUserKubeconfig(cp, path, { token: r.stdout.trim() });
  return (args, input) =>
    runCommand(
      k8sBinary("kubectl"),
      ["--kubeconfig", path, ...args],
      input === undefined ? undefined : JSON.stringify(input),
    );
}

const must = async (what: string, p: Promise<CommandResult>) => {
  const r = await p;
  if (r.code !== 0) throw new Error(`${what}: ${r.stderr}`);
  return r;
};

function pod(name: string, nodeName: string, annotations: Record<string, string> = {}) {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace: APPS, annotations },
    spec: { nodeName, containers: [{ name: "unikernel", image: "r/hello:1" }] },
  };
}

const mergePatch = (resource: string, name: string, patch: unknown, subresource?: string) => [
  "patch",
  resource,
  name,
  "-n",
  APPS,
  "--type=merge",
  ...(subresource ? [`--subresource=${subresource}`] : []),
  "-p",
  JSON.stringify(patch),
];

/** One of our objects in APPS, with the status the operator would have written, as admin. */
async function createWithStatus(kind: string, plural: string, name: string, spec: unknown, status: unknown) {
  const body = { apiVersion: API_VERSION, kind, metadata: { name, namespace: APPS }, spec };
  await must(name, as.admin(["create", "-f", "-"], body));
  await must(`${name} status`, as.admin(mergePatch(plural, name, { status }, "status")));
}

test.before(async () => {
  cp = await startControlPlane();
  dir = managedTempDir("sf-admission-");
  const rendered = await runCommand(k8sBinary("helm"), [
    "template",
    RELEASE,
    CHART,
    "--namespace",
    NS,
    ...["serviceaccounts", "rbac", "admission-policies"].flatMap((t) => [
      "--show-only",
      `templates/${t}.yaml`,
    ]),
  ]);
  if (rendered.code !== 0) throw new Error(`helm template: ${rendered.stderr}`);
  const namespaces = `apiVersion: v1\nkind: Namespace\nmetadata: {name: ${NS}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: ${APPS}}\n---\n`;
  await must("apply", cp.kubectl(["apply", "-f", "-"], { input: namespaces + rendered.stdout }));
  // What kube-controller-manager would make: the namespace's default ServiceAccount; Nodes a kubelet would register.
  await must("default SA", cp.kubectl(["create", "serviceaccount", "default", "-n", APPS]));
  for (const n of ["xen-a", "xen-b"])
    await must(
      `node ${n}`,
      cp.kubectl(["create", "-f", "-"], {
        input: JSON.stringify({ apiVersion: "v1", kind: "Node", metadata: { name: n } }),
      }),
    );
  // alice: a tenant who may create and edit pods in her namespace (a Role of her own: the built-in
  // `edit` is aggregated by kube-controller-manager, which does not run here).
  await must(
    "alice's role",
    cp.kubectl(["create", "role", "pods", "-n", APPS, "--verb=create,get,patch,update", "--resource=pods"]),
  );
  await must(
    "alice",
    cp.kubectl(["create", "rolebinding", "alice", "-n", APPS, "--role=pods", "--user=alice"]),
  );
  as.admin = (args, input) => cp.kubectl(args, input === undefined ? {} : { input: JSON.stringify(input) });
  as.alice = (args, input) => as.admin(["--as=alice", ...args], input);
  as.operator = await tokenKubectl("operator", `${RELEASE}-operator`);
  as.agentA = await tokenKubectl("agent-a", `${RELEASE}-cri-shim`, "xen-a");
  as.agentUnbound = await tokenKubectl("agent-unbound", `${RELEASE}-cri-shim`);
  // The policies take effect once the apiserver has compiled them.
  await waitFor(
    "the pod-annotation policy in force",
    async () => {
      const r = await as.alice(["create", "-f", "-"], pod("probe", "xen-a", { "superfluid.dev/vcpus": "1" }));
      if (r.code === 0) await as.admin(["delete", "pod", "probe", "-n", APPS, "--wait=false"]);
      return r.code !== 0 && /superfluid operator/.test(r.stderr) ? true : undefined;
    },
    60_000,
    500,
  );
});
test.after.always(async () => {
  await cp?.stop();
});

test.serial("a tenant's pod may not carry superfluid.dev/ annotations; the operator's may", async (t) => {
  const denied = await as.alice(
    ["create", "-f", "-"],
    pod("greedy", "xen-a", { "superfluid.dev/memory-mib": "65536", "superfluid.dev/vm": "other/vm" }),
  );
  t.not(denied.code, 0);
  t.regex(
    denied.stderr,
    /metadata\.annotations: only the superfluid operator may set superfluid\.dev\/ annotations/,
  );
  t.regex(denied.stderr, /alice may not set .*superfluid\.dev\/memory-mib/);

  const plain = await as.alice(["create", "-f", "-"], pod("plain", "xen-a", { "example.com/note": "x" }));
  t.is(plain.code, 0, plain.stderr);

  const ours = await as.operator(
    ["create", "-f", "-"],
    pod("vm-abc", "xen-a", { "superfluid.dev/vm": `${APPS}/vm`, "superfluid.dev/memory-mib": "8" }),
  );
  t.is(ours.code, 0, ours.stderr);
  // The tenant may not steer the operator's pod either, but may touch what is not ours.
  const steer = await as.alice(
    mergePatch("pod", "vm-abc", { metadata: { annotations: { "superfluid.dev/memory-mib": "65536" } } }),
  );
  t.not(steer.code, 0);
  t.regex(steer.stderr, /may not set superfluid\.dev\/memory-mib/);
  const drop = await as.alice(
    mergePatch("pod", "vm-abc", { metadata: { annotations: { "superfluid.dev/vm": null } } }),
  );
  t.not(drop.code, 0, "removing one is changing it");
  const note = await as.alice(
    mergePatch("pod", "vm-abc", { metadata: { annotations: { "example.com/note": "y" } } }),
  );
  t.is(note.code, 0, note.stderr);
  // Even an administrator goes through the operator: the shim trusts these annotations.
  const admin = await as.admin(
    ["create", "-f", "-"],
    pod("by-admin", "xen-a", { "superfluid.dev/vcpus": "2" }),
  );
  t.not(admin.code, 0);
});

test.serial(
  "a pod whose guest-memory request and memory-mib annotation disagree is refused, even the operator's",
  async (t) => {
    const withFigures = (name: string, annotated: string, requested: string) => {
      const p = pod(name, "xen-a", {
        "superfluid.dev/vm": `${APPS}/${name}`,
        "superfluid.dev/memory-mib": annotated,
      });
      const figure = { "superfluid.dev/guest-memory-mib": requested };
      p.spec.containers[0] = {
        ...p.spec.containers[0]!,
        resources: { requests: figure, limits: figure },
      } as never;
      return p;
    };
    const bad = await as.operator(["create", "-f", "-"], withFigures("mem-bad", "16", "4"));
    t.not(bad.code, 0);
    t.regex(
      bad.stderr,
      /guest memory figures of the pod disagree: annotation superfluid\.dev\/memory-mib says 16 MiB, the superfluid\.dev\/guest-memory-mib requests say 4/,
    );
    const good = await as.operator(["create", "-f", "-"], withFigures("mem-good", "16", "16"));
    t.is(good.code, 0, good.stderr);
  },
);

test.serial("a node agent acts only on its own node's pods, VMs and migrations", async (t) => {
  for (const [name, node] of [
    ["pa", "xen-a"],
    ["pb", "xen-b"],
  ] as const)
    await must(
      name,
      as.operator(["create", "-f", "-"], pod(name, node, { "superfluid.dev/vm": `${APPS}/${name}` })),
    );
  const report = (state: string) => ({ metadata: { annotations: { "superfluid.dev/domain-state": state } } });

  // The agent writes no pod: it reports on the UnikernelVM's status. RBAC grants it no pod write.
  for (const name of ["pa", "pb"]) {
    const r = await as.agentA(mergePatch("pod", name, report("running")));
    t.not(r.code, 0);
    t.regex(r.stderr, /forbidden|cannot patch resource "pods"/i);
  }
  // Should someone grant it pods anyway, admission still holds it to its own node and to no
  // superfluid.dev/ key.
  await must(
    "extra role",
    as.admin(["create", "role", "agent-pods", "-n", APPS, "--verb=get,patch", "--resource=pods"]),
  );
  await must(
    "extra binding",
    as.admin([
      ...["create", "rolebinding", "agent-pods", "-n", APPS, "--role=agent-pods"],
      `--serviceaccount=${NS}:${RELEASE}-cri-shim`,
    ]),
  );
  t.teardown(() => as.admin(["delete", "rolebinding,role", "agent-pods", "-n", APPS]));
  const granted = async () => (await as.agentA(["auth", "can-i", "patch", "pods", "-n", APPS])).stdout.trim();
  await waitFor(
    "the extra role in force",
    async () => ((await granted()) === "yes" ? true : undefined),
    30_000,
    200,
  );
  const other = await as.agentA(mergePatch("pod", "pb", { metadata: { labels: { x: "y" } } }));
  t.not(other.code, 0);
  t.regex(other.stderr, /spec\.nodeName: the node agent of xen-a may only touch pods on its own node/);
  const annotate = await as.agentA(mergePatch("pod", "pa", report("running")));
  t.not(annotate.code, 0);
  t.regex(annotate.stderr, /may not set superfluid\.dev\/domain-state/);
  const steer = await as.agentA(
    mergePatch("pod", "pa", { metadata: { annotations: { "superfluid.dev/memory-mib": "65536" } } }),
  );
  t.not(steer.code, 0);
  t.regex(steer.stderr, /may not set superfluid\.dev\/memory-mib/);
  // A token bound to no node may do nothing.
  const unbound = await as.agentUnbound(mergePatch("pod", "pa", { metadata: { labels: { x: "y" } } }));
  t.not(unbound.code, 0);
  t.regex(unbound.stderr, /carries no node claim/);

  // UnikernelVMs: the status of those the operator placed on xen-a only.
  await createWithStatus(
    "UnikernelVM",
    UNIKERNELVM_PLURAL,
    "va",
    { image: "r/hello:1" },
    { nodeName: "xen-a" },
  );
  await createWithStatus(
    "UnikernelVM",
    UNIKERNELVM_PLURAL,
    "vb",
    { image: "r/hello:1" },
    { nodeName: "xen-b" },
  );
  const phase = { status: { phase: "Paused" } };
  const vmOwn = await as.agentA(mergePatch(UNIKERNELVM_PLURAL, "va", phase, "status"));
  t.is(vmOwn.code, 0, vmOwn.stderr);
  const vmOther = await as.agentA(mergePatch(UNIKERNELVM_PLURAL, "vb", phase, "status"));
  t.not(vmOther.code, 0);
  t.regex(
    vmOther.stderr,
    /status\.nodeName: the node agent of xen-a may only write the status of UnikernelVMs on its own node/,
  );
  const vmMove = await as.agentA(
    mergePatch(UNIKERNELVM_PLURAL, "va", { status: { nodeName: "xen-b" } }, "status"),
  );
  t.not(vmMove.code, 0, "nor move a VM of its own elsewhere");
  // The agent's own write: its slice of the status (domain id and state) by server-side apply.
  const kc = new KubeConfig();
  kc.loadFromFile(join(dir, "agent-a.kubeconfig"));
  const agent = new KubeClient(kc);
  t.teardown(() => agent.close());
  const applyDomain = (name: string) =>
    agent
      .apply(
        paths.customObject(UNIKERNELVM_PLURAL, APPS, name),
        {
          apiVersion: API_VERSION,
          kind: "UnikernelVM",
          metadata: { name, namespace: APPS },
          status: { domainId: 5, domainState: "running" },
        },
        nodeAgentFieldManager("xen-a"),
        "status",
      )
      .then(
        () => "",
        (err: Error) => err.message,
      );
  t.is(await applyDomain("va"), "");
  const va = await must("get va", as.admin(["get", UNIKERNELVM_PLURAL, "va", "-n", APPS, "-o", "json"]));
  t.like((JSON.parse(va.stdout) as { status: unknown }).status, { domainId: 5, domainState: "running" });
  t.regex(
    await applyDomain("vb"),
    /status\.nodeName: the node agent of xen-a may only write the status of UnikernelVMs on its own node/,
  );

  // Migrations: those from or to xen-a.
  const move = { vmName: "va" };
  await createWithStatus("UnikernelVMMigration", MIGRATION_PLURAL, "m-from-a", move, {
    sourceNode: "xen-a",
    targetNode: "xen-b",
  });
  await createWithStatus("UnikernelVMMigration", MIGRATION_PLURAL, "m-elsewhere", move, {
    sourceNode: "xen-b",
    targetNode: "xen-c",
  });
  // The agent may patch a migration's status but not read it (kubectl patch would GET first): raw PATCH.
  const patchStatus = (name: string, status: unknown) =>
    agent
      .request({
        method: "PATCH",
        path: `${paths.customObject(MIGRATION_PLURAL, APPS, name)}/status`,
        body: { status },
        contentType: "application/merge-patch+json",
      })
      .then(
        () => "",
        (err: Error) => err.message,
      );
  t.is(await patchStatus("m-from-a", { transferredBytes: 1 }), "");
  t.regex(
    await patchStatus("m-elsewhere", { targetEndpoint: "10.6.6.6:1" }),
    /may only write migrations from or to its own node/,
  );
});
