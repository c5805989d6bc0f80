// The kubectl plugin, run the way users run it: the Go-built kubectl finds `kubectl-superfluid` on
// PATH and hands it the arguments; the test checks what changed in the real apiserver.
import test from "ava";
import { join } from "node:path";
import { GROUP, MIGRATION_PLURAL, UNIKERNELVM_PLURAL, VERSION } from "../api/index.js";
import type { UnikernelVM } from "../api/v1alpha1/unikernelvm.js";
import { useCluster } from "../e2e/harness/ava.js";
import { k8sBinary, REPO_ROOT } from "../lib/paths.js";
import { runAsync } from "../lib/process.js";
import { parseArgs, UsageError } from "./kubectl-superfluid.js";

const cluster = useCluster(test, "kubectl-plugin");

function kubectlSuperfluid(args: string[]) {
  const { cp, namespace } = cluster();
  return runAsync(k8sBinary("kubectl"), ["superfluid", ...args, "-n", namespace], {
    env: {
      ...process.env,
      PATH: `${join(REPO_ROOT, "bin")}:${process.env.PATH}`,
      KUBECONFIG: cp.kubeconfigPath,
    },
  });
}

async function createVM(name: string) {
  const { custom, namespace } = cluster();
  await custom.createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace,
    plural: UNIKERNELVM_PLURAL,
    body: {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: "UnikernelVM",
      metadata: { name },
      spec: { image: "localhost:5000/hello:1", memory: "4Mi" },
    },
  });
}

const getVM = async (name: string) => {
  const { custom, namespace } = cluster();
  return (await custom.getNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace,
    plural: UNIKERNELVM_PLURAL,
    name,
  })) as UnikernelVM;
};

test("pause, suspend, resume and stop set the VM's runPolicy", async (t) => {
  await createVM("plug-policy");
  for (const [verb, policy] of [
    ["pause", "Paused"],
    ["suspend", "Suspended"],
    ["resume", "Running"],
    ["stop", "Stopped"],
  ] as const) {
    const r = await kubectlSuperfluid([verb, "plug-policy"]);
    t.is(r.code, 0, r.stderr);
    t.regex(r.stdout, new RegExp(`runPolicy set to ${policy}`));
    t.is((await getVM("plug-policy")).spec.runPolicy, policy);
  }
});

test("migrate creates a UnikernelVMMigration for the VM", async (t) => {
  await createVM("plug-migrate");
  const r = await kubectlSuperfluid(["migrate", "plug-migrate", "--to", "xen-node-2", "--cold"]);
  t.is(r.code, 0, r.stderr);
  const { custom, namespace } = cluster();
  const list = (await custom.listNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace,
    plural: MIGRATION_PLURAL,
  })) as {
    items: { metadata: { name: string }; spec: { vmName: string; targetNode?: string; mode: string } }[];
  };
  const mine = list.items.filter((m) => m.spec.vmName === "plug-migrate");
  t.is(mine.length, 1);
  t.deepEqual(mine[0]!.spec, { vmName: "plug-migrate", targetNode: "xen-node-2", mode: "cold" });
  t.true(mine[0]!.metadata.name.startsWith("plug-migrate-"));
});

test("status lists the VM with its policy and phase", async (t) => {
  await createVM("plug-status");
  const r = await kubectlSuperfluid(["status", "plug-status"]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^NAME\s+POLICY\s+PHASE\s+NODE/);
  t.regex(r.stdout, /\nplug-status\s+Running\s+Pending\s+-/);
});

test("a VM that does not exist is a clear error and creates nothing", async (t) => {
  const r = await kubectlSuperfluid(["migrate", "no-such-vm"]);
  t.is(r.code, 1);
  t.regex(r.stderr, /not found/);
  const { custom, namespace } = cluster();
  const list = (await custom.listNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace,
    plural: MIGRATION_PLURAL,
  })) as { items: { spec: { vmName: string } }[] };
  t.false(list.items.some((m) => m.spec.vmName === "no-such-vm"));
});

test("usage errors exit 2 and say what is wrong", async (t) => {
  const r = await kubectlSuperfluid(["pause"]);
  t.is(r.code, 2);
  t.regex(r.stderr, /pause needs the name of a UnikernelVM/);
  const unknown = await kubectlSuperfluid(["teleport", "x"]);
  t.is(unknown.code, 2);
  t.regex(unknown.stderr, /unknown command "teleport"/);
});

test("parseArgs", (t) => {
  const p = parseArgs(["migrate", "vm1", "--to=node-b", "-n", "prod", "--wait"]);
  t.is(p.command, "migrate");
  t.deepEqual(p.positional, ["vm1"]);
  t.is(p.flags.get("to"), "node-b");
  t.is(p.flags.get("namespace"), "prod");
  t.is(p.flags.get("wait"), true);
  t.throws(() => parseArgs(["status", "--to"]), { instanceOf: UsageError, message: /--to needs a value/ });
  t.throws(() => parseArgs(["status", "--bogus"]), {
    instanceOf: UsageError,
    message: /unknown flag --bogus/,
  });
});
