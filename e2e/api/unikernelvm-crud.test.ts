// The UnikernelVM API against a real kube-apiserver: CRUD, watch, server-side apply with two field
// managers, the status subresource, printer columns.
import { PatchStrategy, Watch, setHeaderOptions } from "@kubernetes/client-node";
import test from "ava";
import { API_VERSION, GROUP, UNIKERNELVM_PLURAL, VERSION, type UnikernelVM } from "../../api/index.js";
import { useCluster } from "../harness/ava.js";

const cluster = useCluster(test, "api-crud");

const vm = (name: string, spec: Partial<UnikernelVM["spec"]> = {}): UnikernelVM => ({
  apiVersion: API_VERSION,
  kind: "UnikernelVM",
  metadata: { name },
  spec: { image: "registry.local:5000/superfluid/hello:1.0", memory: "8Mi", ...spec },
});

const ssa = setHeaderOptions("Content-Type", PatchStrategy.ServerSideApply);

test("create, get, list, update status, delete", async (t) => {
  const { custom, namespace } = cluster();
  const created = (await custom.createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace,
    plural: UNIKERNELVM_PLURAL,
    body: {
      ...vm("crud", { args: ["-v"], env: [{ name: "GREETING", value: "hi" }] }),
      metadata: { name: "crud", labels: { case: "crud" } },
    },
  })) as UnikernelVM;
  t.is(created.metadata.generation, 1);
  // Defaults from the schema are applied by the apiserver.
  t.is(created.spec.runPolicy, "Running");
  t.is(created.spec.guestType, "pv");
  t.is(created.spec.vcpus, 1);

  const got = (await custom.getNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace,
    plural: UNIKERNELVM_PLURAL,
    name: "crud",
  })) as UnikernelVM;
  t.deepEqual(got.spec.env, [{ name: "GREETING", value: "hi" }]);

  const list = (await custom.listNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace,
    plural: UNIKERNELVM_PLURAL,
    labelSelector: "case=crud",
  })) as { items: UnikernelVM[] };
  t.deepEqual(
    list.items.map((i) => i.metadata.name),
    ["crud"],
  );

  // Status goes through the status subresource only; the main resource ignores it.
  const withStatus = {
    ...got,
    status: {
      phase: "Running" as const,
      nodeName: "xen-0",
      ip: "10.1.0.5",
      domainId: 7,
      observedGeneration: 1,
    },
  };
  const afterMain = (await custom.replaceNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace,
    plural: UNIKERNELVM_PLURAL,
    name: "crud",
    body: withStatus,
  })) as UnikernelVM;
  t.is(afterMain.status, undefined, "status written through the main resource is dropped");
  const afterStatus = (await custom.replaceNamespacedCustomObjectStatus({
    group: GROUP,
    version: VERSION,
    namespace,
    plural: UNIKERNELVM_PLURAL,
    name: "crud",
    body: { ...afterMain, status: withStatus.status },
  })) as UnikernelVM;
  t.is(afterStatus.status?.domainId, 7);
  t.is(afterStatus.metadata.generation, 1, "a status write does not bump generation");

  await custom.deleteNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace,
    plural: UNIKERNELVM_PLURAL,
    name: "crud",
  });
  const err = await t.throwsAsync(
    custom.getNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace,
      plural: UNIKERNELVM_PLURAL,
      name: "crud",
    }),
  );
  t.regex(String(err?.message), /404|not found/i);
});

test("watch sees ADDED, MODIFIED and DELETED", async (t) => {
  const { cp, custom, namespace } = cluster();
  const base = { group: GROUP, version: VERSION, namespace, plural: UNIKERNELVM_PLURAL };
  // Watch from the list's resourceVersion so no event is lost however slowly the watch connects.
  const list = (await custom.listNamespacedCustomObject(base)) as { metadata: { resourceVersion: string } };
  const events: string[] = [];
  let watchError: unknown;
  let sawDeleted!: () => void;
  const deleted = new Promise<void>((r) => (sawDeleted = r));
  const req = await new Watch(cp.kubeConfig).watch(
    `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${UNIKERNELVM_PLURAL}`,
    { fieldSelector: "metadata.name=watched", resourceVersion: list.metadata.resourceVersion },
    (type, obj: UnikernelVM) => {
      events.push(`${type}:${obj.spec.runPolicy}`);
      if (type === "DELETED") sawDeleted();
    },
    (err) => (watchError = err),
  );
  await custom.createNamespacedCustomObject({ ...base, body: vm("watched") });
  await custom.patchNamespacedCustomObject(
    { ...base, name: "watched", body: [{ op: "replace", path: "/spec/runPolicy", value: "Paused" }] },
    setHeaderOptions("Content-Type", PatchStrategy.JsonPatch),
  );
  await custom.deleteNamespacedCustomObject({ ...base, name: "watched" });
  await Promise.race([
    deleted,
    new Promise((_, rej) =>
      setTimeout(
        () =>
          rej(new Error(`no DELETED event within 60 s; saw [${events}], watch error: ${String(watchError)}`)),
        60_000,
      ),
    ),
  ]);
  req.abort();
  t.deepEqual(events, ["ADDED:Running", "MODIFIED:Paused", "DELETED:Paused"]);
});

test("server-side apply: two field managers own their fields and lists merge by key", async (t) => {
  const { custom, namespace } = cluster();
  const base = { group: GROUP, version: VERSION, namespace, plural: UNIKERNELVM_PLURAL, name: "shared" };
  await custom.patchNamespacedCustomObject(
    {
      ...base,
      fieldManager: "team-a",
      body: vm("shared", { env: [{ name: "A", value: "1" }], ports: [{ containerPort: 8080 }] }),
    },
    ssa,
  );
  // A second manager adds an env entry and a port; list-map keys make these merge, not replace.
  const b = (await custom.patchNamespacedCustomObject(
    {
      ...base,
      fieldManager: "team-b",
      body: {
        apiVersion: API_VERSION,
        kind: "UnikernelVM",
        metadata: { name: "shared" },
        spec: { env: [{ name: "B", value: "2" }], ports: [{ containerPort: 9090, protocol: "TCP" }] },
      },
    },
    ssa,
  )) as UnikernelVM;
  t.deepEqual(b.spec.env?.map((e) => e.name).sort(), ["A", "B"]);
  t.deepEqual(b.spec.ports?.map((p) => p.containerPort).sort(), [8080, 9090]);

  // team-b changing a field team-a owns is a conflict unless forced.
  const conflict = await t.throwsAsync(
    custom.patchNamespacedCustomObject(
      {
        ...base,
        fieldManager: "team-b",
        body: {
          apiVersion: API_VERSION,
          kind: "UnikernelVM",
          metadata: { name: "shared" },
          spec: { memory: "16Mi" },
        },
      },
      ssa,
    ),
  );
  t.regex(String(conflict?.message), /409|conflict/i);
  t.regex(String(conflict?.message), /team-a/);

  // team-a dropping its env entry removes only its own entry.
  const a2 = (await custom.patchNamespacedCustomObject(
    { ...base, fieldManager: "team-a", body: vm("shared", { ports: [{ containerPort: 8080 }] }) },
    ssa,
  )) as UnikernelVM;
  t.deepEqual(
    a2.spec.env?.map((e) => e.name),
    ["B"],
  );
  const managers = (a2.metadata as { managedFields?: { manager: string }[] }).managedFields
    ?.map((m) => m.manager)
    .sort();
  t.deepEqual(managers, ["team-a", "team-b"]);
});

test("kubectl get uvm prints the printer columns", async (t) => {
  const { custom, namespace, kubectl } = cluster();
  const base = { group: GROUP, version: VERSION, namespace, plural: UNIKERNELVM_PLURAL };
  const created = (await custom.createNamespacedCustomObject({
    ...base,
    body: vm("printed"),
  })) as UnikernelVM;
  await custom.replaceNamespacedCustomObjectStatus({
    ...base,
    name: "printed",
    body: { ...created, status: { phase: "Running", nodeName: "xen-node-1", ip: "10.244.1.9", domainId: 3 } },
  });
  const out = await kubectl(["get", "uvm", "printed"]);
  t.is(out.code, 0, out.stderr);
  const [header, row] = out.stdout.trim().split("\n");
  t.deepEqual(header?.split(/\s+/), ["NAME", "PHASE", "NODE", "IP", "AGE"]);
  t.regex(row ?? "", /^printed\s+Running\s+xen-node-1\s+10\.244\.1\.9\s+\d+s$/);
  const wide = await kubectl(["get", "uvm", "printed", "-o", "wide"]);
  t.deepEqual(wide.stdout.split("\n")[0]?.split(/\s+/), [
    "NAME",
    "PHASE",
    "NODE",
    "IP",
    "AGE",
    "IMAGE",
    "MEMORY",
    "DOMAIN",
    "BOOT-MS",
  ]);
  t.regex(wide.stdout, /registry\.local:5000\/superfluid\/hello:1\.0\s+8Mi\s+3/);
});
