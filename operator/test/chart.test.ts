// The Helm chart: lint, template validated by kubeconform -strict against schemas from the real
// apiserver (ours included), install into a real apiserver, and the installed operator's RBAC: the
// operator runs with the chart's ServiceAccount token, does its job, and is refused the rest.
// Cluster-scoped objects (RuntimeClass, ClusterRoles, CRDs) make this file use a private control plane.
import test, { type ExecutionContext } from "ava";
import { KubeConfig } from "@kubernetes/client-node";
import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { waitFor } from "../../lib/net.js";
import { k8sBinary, REPO_ROOT } from "../../lib/paths.js";
import { managedTempDir } from "../../lib/process.js";
import { API_VERSION, FINALIZER, UNIKERNELVM_PLURAL, type UnikernelVM } from "../../api/index.js";
import {
  type ControlPlane,
  runCommand,
  startControlPlane,
  writeUserKubeconfig,
} from "../../e2e/harness/control-plane.js";
import { KubeClient, paths } from "../../lib/kube/client.js";
import { startOperator } from "../src/operator.js";
import { writeKubeconformSchemas } from "./openapi-schemas.js";

const CHART = join(REPO_ROOT, "charts/superfluid");
const RELEASE = "sf";
const NS = "superfluid-system";
const helm = (args: string[], input?: string) => runCommand(k8sBinary("helm"), args, input);
/** `helm install` of the chart into the test apiserver. */
const helmInstall = (release: string, extra: string[]) =>
  helm([
    "install",
    release,
    CHART,
    "--namespace",
    NS,
    "--create-namespace",
    "--kubeconfig",
    cp.kubeconfigPath,
    ...extra,
  ]);
let cp: ControlPlane;
let dir: string;

test.before(async () => {
  // The chart installs the CRDs itself.
  cp = await startControlPlane({ applyCRDs: false });
  dir = managedTempDir("sf-chart-");
});
test.after.always(async () => {
  await cp?.stop();
});

interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  rules?: { apiGroups?: string[]; resources?: string[]; verbs?: string[] }[];
}

async function render(extra: string[] = []): Promise<{ text: string; objects: Manifest[] }> {
  const r = await helm(["template", RELEASE, CHART, "--namespace", NS, "--include-crds", ...extra]);
  if (r.code !== 0) throw new Error(`helm template: ${r.stderr}`);
  return {
    text: r.stdout,
    objects: parseAllDocuments(r.stdout)
      .map((d) => d.toJS() as Manifest)
      .filter(Boolean),
  };
}

test.serial("helm lint is clean", async (t) => {
  const r = await helm(["lint", "--strict", CHART]);
  t.is(r.code, 0, r.stdout + r.stderr);
  t.notRegex(r.stdout, /\[(WARNING|ERROR)\]/);
});

test.serial("values.schema.json rejects a bad value with a clear error", async (t) => {
  const r = await helm(["template", RELEASE, CHART, "--set", "operator.replicas=0"]);
  t.not(r.code, 0);
  t.regex(r.stderr, /replicas/);
});

test.serial(
  "helm install with a values file the schema refuses fails, naming the field, and installs nothing",
  async (t) => {
    const cases: [string, RegExp][] = [
      ["shim:\n  hypervisor: xen\n", /hypervisor/],
      ["operator:\n  wokers: 4\n", /wokers/],
      ["xenNode:\n  podCidrMaskSize: 28\n", /podCidrMaskSize/],
    ];
    for (const [i, [values, field]] of cases.entries()) {
      const file = join(dir, `bad-values-${i}.yaml`);
      writeFileSync(file, values);
      const r = await helmInstall(`bad-${i}`, ["-f", file]);
      t.not(r.code, 0, values);
      t.regex(r.stderr, field, r.stderr);
      const releases = await helm(["list", "-A", "-q", "--kubeconfig", cp.kubeconfigPath]);
      t.notRegex(releases.stdout, new RegExp(`^bad-${i}$`, "m"), "a refused install left a release");
    }
  },
);

test.serial(
  "helm template | kubeconform -strict is clean with schemas from the apiserver and our CRDs",
  async (t) => {
    // Our CRDs first, so /openapi/v2 publishes their schemas too.
    const crds = await cp.kubectl(["apply", "--server-side", "-f", join(CHART, "crds")]);
    t.is(crds.code, 0, crds.stderr);
    await cp.kubectl(["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"]);
    const openapi = await waitFor(
      "UnikernelVM in /openapi/v2",
      async () => {
        const raw = await cp.kubectl(["get", "--raw", "/openapi/v2"]);
        return raw.code === 0 && raw.stdout.includes("dev.superfluid.v1alpha1.UnikernelVM")
          ? JSON.parse(raw.stdout)
          : undefined;
      },
      60_000,
      500,
    );
    const schemas = join(dir, "schemas");
    const kinds = new Set([
      "ServiceAccount",
      "ClusterRole",
      "ClusterRoleBinding",
      "Role",
      "RoleBinding",
      "Deployment",
      "DaemonSet",
      "RuntimeClass",
      "CustomResourceDefinition",
      "UnikernelVM",
      "UnikernelVMMigration",
      "ValidatingAdmissionPolicy",
      "ValidatingAdmissionPolicyBinding",
    ]);
    t.true(writeKubeconformSchemas(openapi, schemas, kinds).length >= kinds.size);
    const kubeconform = (input: string) =>
      runCommand(
        k8sBinary("kubeconform"),
        [
          "-strict",
          "-summary",
          "-schema-location",
          join(schemas, "{{ .ResourceKind }}{{ .KindSuffix }}.json"),
          "-",
        ],
        input,
      );

    for (const values of [
      [],
      ["--set", "operator.watchNamespace=apps"],
      ["--set", "shim.enabled=false", "--set", "operator.leaderElection=false"],
      ["--set", "shim.fallbackRuntimeEndpoint=unix:///run/containerd/containerd.sock"],
      ["--set", "shim.enabled=false", "--set", "nodeCredentials.enabled=true"],
      [
        "--set",
        "shim.enabled=false",
        "--set",
        "nodeInstaller.enabled=true",
        "--set",
        "nodeInstaller.shimArgs={--bridge=xenbr0}",
      ],
    ]) {
      const { text } = await render(values);
      const r = await kubeconform(text);
      t.is(r.code, 0, `${values.join(" ")}: ${r.stdout}${r.stderr}`);
      t.regex(r.stdout, /Invalid: 0, Errors: 0, Skipped: 0/);
    }
    const examples = readdirSync(join(REPO_ROOT, "examples")).filter((f) => f.endsWith(".yaml"));
    for (const f of examples) {
      const r = await runCommand(k8sBinary("kubeconform"), [
        "-strict",
        "-summary",
        "-schema-location",
        join(schemas, "{{ .ResourceKind }}{{ .KindSuffix }}.json"),
        join(REPO_ROOT, "examples", f),
      ]);
      t.is(r.code, 0, `${f}: ${r.stdout}`);
    }
    // The check can fail: an unknown field is refused, in a built-in kind and in ours.
    const typo = await kubeconform(
      "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replicaz: 1\n  selector: {matchLabels: {a: b}}\n  template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: i}]}}\n",
    );
    t.not(typo.code, 0);
    const badVM = await kubeconform(
      `apiVersion: ${API_VERSION}\nkind: UnikernelVM\nmetadata: {name: x}\nspec: {image: r/x:1, memroy: 8Mi}\n`,
    );
    t.not(badVM.code, 0);
  },
);

test.serial(
  "shim.fallbackRuntimeEndpoint becomes the shim's flag and a mount of the socket's directory",
  async (t) => {
    type Ds = Manifest & {
      spec: {
        template: {
          spec: {
            containers: { args: string[]; volumeMounts: { name: string; mountPath: string }[] }[];
            volumes: { name: string; hostPath?: { path: string } }[];
          };
        };
      };
    };
    const shimOf = async (extra: string[]) =>
      (await render(extra)).objects.find(
        (o) => o.kind === "DaemonSet" && o.metadata.name.endsWith("cri-shim"),
      ) as Ds;
    const plain = (await shimOf([])).spec.template.spec;
    t.false(plain.containers[0]!.args.some((a) => a.startsWith("--fallback-runtime-endpoint")));
    const ds = (
      await shimOf(["--set", "shim.fallbackRuntimeEndpoint=unix:///run/containerd/containerd.sock"])
    ).spec.template.spec;
    t.true(
      ds.containers[0]!.args.includes("--fallback-runtime-endpoint=unix:///run/containerd/containerd.sock"),
    );
    t.deepEqual(ds.volumes.find((v) => v.name === "fallback-runtime")?.hostPath?.path, "/run/containerd");
    t.true(
      ds.containers[0]!.volumeMounts.some(
        (m) => m.name === "fallback-runtime" && m.mountPath === "/run/containerd",
      ),
    );
    const bad = await helm([
      "template",
      RELEASE,
      CHART,
      "--set",
      "shim.fallbackRuntimeEndpoint=tcp://1.2.3.4:1",
    ]);
    t.not(bad.code, 0);
    t.regex(bad.stderr, /fallbackRuntimeEndpoint/);
  },
);

test.serial(
  "a shim under systemd: the node-credentials DaemonSet carries the node agent's identity, and not beside the shim DaemonSet",
  async (t) => {
    const { objects } = await render([
      "--set",
      "shim.enabled=false",
      "--set",
      "nodeCredentials.enabled=true",
    ]);
    type Ds = Manifest & {
      spec: {
        template: {
          spec: {
            serviceAccountName: string;
            automountServiceAccountToken: boolean;
            containers: { command: string[]; volumeMounts: { mountPath: string }[] }[];
            volumes: { hostPath?: { path: string } }[];
          };
        };
      };
    };
    const pod = onlyDaemonSet<Ds>(t, objects, `${RELEASE}-cri-shim-credentials`).spec.template.spec;
    // The node agent's ServiceAccount, the one its ClusterRole and admission policy name.
    t.is(pod.serviceAccountName, `${RELEASE}-cri-shim`);
    t.true(pod.automountServiceAccountToken);
    t.true(objects.some((o) => o.kind === "ServiceAccount" && o.metadata.name === `${RELEASE}-cri-shim`));
    t.true(
      objects.some(
        (o) => o.kind === "ValidatingAdmissionPolicy" && o.metadata.name === `${RELEASE}-node-agent`,
      ),
    );
    const binding = objects.find(
      (o) => o.kind === "ClusterRoleBinding" && o.metadata.name === `${RELEASE}-cri-shim-node-agent`,
    ) as (Manifest & { subjects: { name: string }[] }) | undefined;
    t.deepEqual(
      binding?.subjects.map((s) => s.name),
      [`${RELEASE}-cri-shim`],
    );
    t.true(pod.containers[0]!.command.some((a) => a.endsWith("node-agent-credentials.mjs")));
    t.deepEqual(
      pod.volumes.map((v) => v.hostPath?.path),
      ["/var/lib/superfluid/agent"],
    );
    // Without it and without the shim DaemonSet, no pod gets the node agent's token.
    const neither = await render(["--set", "shim.enabled=false"]);
    t.false(neither.objects.some((o) => o.kind === "DaemonSet"));
    t.false(
      neither.objects.some((o) => o.kind === "ServiceAccount" && o.metadata.name === `${RELEASE}-cri-shim`),
    );
    // Both at once is refused with the reason.
    const both = await helm(["template", RELEASE, CHART, "--set", "nodeCredentials.enabled=true"]);
    t.not(both.code, 0);
    t.regex(both.stderr, /nodeCredentials\.enabled is for a shim under systemd/);
  },
);

test.serial(
  "the node installer puts the shim under systemd on each Xen host and keeps the node agent's credentials",
  async (t) => {
    const { objects } = await render([
      "--set",
      "shim.enabled=false",
      "--set",
      "nodeInstaller.enabled=true",
      "--set",
      "nodeInstaller.shimArgs={--bridge=xenbr0,--pod-cidr=10.244.8.0/21}",
    ]);
    type Ctr = { name: string; command: string[]; securityContext?: { privileged?: boolean } };
    type Ds = Manifest & {
      spec: {
        template: {
          spec: {
            serviceAccountName: string;
            hostPID?: boolean;
            initContainers: Ctr[];
            containers: Ctr[];
            volumes: { hostPath?: { path: string } }[];
          };
        };
      };
    };
    const pod = onlyDaemonSet<Ds>(t, objects, `${RELEASE}-cri-shim-installer`).spec.template.spec;
    t.is(pod.serviceAccountName, `${RELEASE}-cri-shim`);
    t.true(pod.hostPID);
    const install = pod.initContainers[0]!;
    t.true(install.securityContext?.privileged);
    const cmd = install.command.join(" ");
    t.regex(cmd, /node-install\.mjs --root=\/host --copy-node --start --in-host /);
    t.regex(
      cmd,
      / -- --node-name=\$\(NODE_NAME\) --kubeconfig=\/var\/lib\/superfluid\/agent\/kubeconfig --bridge=xenbr0 --pod-cidr=10\.244\.8\.0\/21$/,
    );
    t.true(pod.containers[0]!.command.some((a) => a.endsWith("node-agent-credentials.mjs")));
    t.deepEqual(pod.volumes.map((v) => v.hostPath?.path).sort(), [
      "/etc/containerd",
      "/etc/default",
      "/etc/systemd/system",
      "/opt/superfluid",
      "/var/lib/superfluid/agent",
    ]);
    t.true(
      objects.some(
        (o) => o.kind === "ValidatingAdmissionPolicy" && o.metadata.name === `${RELEASE}-node-agent`,
      ),
    );
    for (const [extra, reason] of [
      [[], /nodeInstaller\.enabled installs the shim under systemd/],
      [
        ["--set", "shim.enabled=false", "--set", "nodeCredentials.enabled=true"],
        /keeps the credentials itself/,
      ],
      [["--set", "shim.enabled=false", "--set", "nodeInstaller.shimArgs={rm -rf /}"], /shimArgs/],
    ] as const) {
      const r = await helm(["template", RELEASE, CHART, "--set", "nodeInstaller.enabled=true", ...extra]);
      t.not(r.code, 0);
      t.regex(r.stderr, reason);
    }
  },
);

/** The rendered DaemonSets are exactly the one named; returns it. */
function onlyDaemonSet<D extends Manifest>(t: ExecutionContext, objects: Manifest[], name: string): D {
  const daemonSets = objects.filter((o) => o.kind === "DaemonSet");
  t.deepEqual(
    daemonSets.map((d) => d.metadata.name),
    [name],
  );
  return daemonSets[0] as D;
}

test.serial(
  "the operator's liveness probe waits for its start (startupSeconds), and every probe allows a slow answer",
  async (t) => {
    interface Probe {
      httpGet: { path: string };
      periodSeconds: number;
      timeoutSeconds: number;
      failureThreshold?: number;
    }
    type Probes = { startupProbe: Probe; livenessProbe: Probe; readinessProbe: Probe };
    const probesOf = async (extra: string[]) => {
      const d = (await render(extra)).objects.find(
        (o) => o.kind === "Deployment" && o.metadata.name.endsWith("operator"),
      ) as Manifest & { spec: { template: { spec: { containers: Probes[] } } } };
      return d.spec.template.spec.containers[0]!;
    };
    const byDefault = await probesOf([]);
    t.is(byDefault.startupProbe.httpGet.path, "/healthz");
    t.is(byDefault.startupProbe.periodSeconds * byDefault.startupProbe.failureThreshold!, 300);
    for (const p of [byDefault.startupProbe, byDefault.livenessProbe, byDefault.readinessProbe])
      t.true(p.timeoutSeconds >= 5, JSON.stringify(p));
    const patient = await probesOf(["--set", "operator.startupSeconds=900"]);
    t.is(patient.startupProbe.periodSeconds * patient.startupProbe.failureThreshold!, 900);
    const bad = await helm(["template", RELEASE, CHART, "--set", "operator.startupSeconds=0"]);
    t.not(bad.code, 0);
    t.regex(bad.stderr, /startupSeconds/);
  },
);

test.serial("the RBAC has no wildcards", async (t) => {
  const { objects } = await render();
  const roles = objects.filter((o) => o.kind === "ClusterRole" || o.kind === "Role");
  t.true(roles.length >= 3);
  for (const r of roles)
    for (const rule of r.rules ?? [])
      for (const v of [...(rule.apiGroups ?? []), ...(rule.resources ?? []), ...(rule.verbs ?? [])])
        t.false(v.includes("*"), `${r.metadata.name}: ${v}`);
});

test.serial(
  "helm install creates every object; the operator runs with the chart's ServiceAccount and is refused the rest",
  async (t) => {
    const r = await helmInstall(RELEASE, ["--wait=false"]);
    t.is(r.code, 0, r.stderr);
    const { objects } = await render();
    for (const o of objects) {
      const got = await cp.kubectl([
        "get",
        `${o.kind}.${o.apiVersion.includes("/") ? o.apiVersion.split("/")[0] : ""}`.replace(/\.$/, ""),
        o.metadata.name,
        ...(o.metadata.namespace ? ["-n", o.metadata.namespace] : []),
        "-o",
        "name",
      ]);
      t.is(got.code, 0, `${o.kind} ${o.metadata.name}: ${got.stderr}`);
    }

    // A token for the operator's ServiceAccount, as the kubelet would mount it (TokenRequest).
    const token = await cp.kubectl(["create", "token", `${RELEASE}-operator`, "-n", NS, "--duration=1h"]);
    t.is(token.code, 0, token.stderr);
    const saKubeconfig = join(dir, "operator-sa.kubeconfig");
    writeUserKubeconfig(cp, saKubeconfig, { token: token.stdout.trim() });
    const kc = new KubeConfig();
    kc.loadFromFile(saKubeconfig);

    const admin = new KubeClient(cp.kubeConfig);
    await cp.kubectl(["create", "namespace", "apps"]);
    await admin.request({
      method: "POST",
      path: "/api/v1/namespaces/apps/serviceaccounts",
      body: { metadata: { name: "default" } },
    });
    const op = await startOperator({
      kubeConfig: kc,
      leaderElection: { namespace: NS, name: "superfluid-operator", leaseDurationSeconds: 5 },
    });
    try {
      await op.leading;
      await admin.request({
        method: "POST",
        path: paths.custom(UNIKERNELVM_PLURAL, "apps"),
        body: {
          apiVersion: API_VERSION,
          kind: "UnikernelVM",
          metadata: { name: "rbac" },
          spec: { image: "r/hello:1", ports: [{ containerPort: 80 }], service: {} },
        },
      });
      const vm = await waitFor(
        "the VM reconciled by the ServiceAccount",
        async () => {
          const v = await admin.request<UnikernelVM>({
            method: "GET",
            path: paths.customObject(UNIKERNELVM_PLURAL, "apps", "rbac"),
          });
          return v.status?.podName && v.metadata.finalizers?.includes(FINALIZER) ? v : undefined;
        },
        60_000,
        200,
      );
      const pod = await admin.request({ method: "GET", path: paths.pod("apps", vm.status!.podName!) }).then(
        () => true,
        () => false,
      );
      t.true(pod, "pod created");
      t.true(
        await admin.request({ method: "GET", path: paths.service("apps", "rbac") }).then(
          () => true,
          () => false,
        ),
        "service created",
      );
      const lease = await admin.request<{ spec: { holderIdentity?: string } }>({
        method: "GET",
        path: paths.lease(NS, "superfluid-operator"),
      });
      t.truthy(lease.spec.holderIdentity);
      await admin.request({ method: "DELETE", path: paths.customObject(UNIKERNELVM_PLURAL, "apps", "rbac") });
      await waitFor(
        "finalizer ran",
        () =>
          admin.request({ method: "GET", path: paths.customObject(UNIKERNELVM_PLURAL, "apps", "rbac") }).then(
            () => undefined,
            () => true,
          ),
        60_000,
        200,
      );
    } finally {
      await op.stop();
    }
    // Outside its RBAC: secrets, deployments, deleting nodes, other leases.
    const sa = (args: string[]) => runCommand(k8sBinary("kubectl"), ["--kubeconfig", saKubeconfig, ...args]);
    for (const args of [
      ["get", "secrets", "-A"],
      ["get", "deployments", "-n", NS],
      ["delete", "node", "nothing"],
      ["get", "lease", "kube-scheduler", "-n", NS],
      ["create", "configmap", "x", "-n", "apps"],
    ]) {
      const res = await sa(args);
      t.not(res.code, 0, args.join(" "));
      t.regex(res.stderr, /forbidden/i, args.join(" "));
    }
    const can = await sa(["auth", "can-i", "create", "pods", "-n", "apps"]);
    t.is(can.stdout.trim(), "yes");
    // The migration-protection finalizer is a patch of the migration itself; nothing more is granted.
    for (const [verb, resource, want] of [
      ["patch", "unikernelvmmigrations.superfluid.dev", "yes"],
      ["delete", "unikernelvmmigrations.superfluid.dev", "no"],
      ["update", "unikernelvmmigrations.superfluid.dev/finalizers", "no"],
    ] as const) {
      const r = await sa(["auth", "can-i", verb, resource, "-n", "apps"]);
      t.is(r.stdout.trim(), want, `${verb} ${resource}`);
    }
  },
);
