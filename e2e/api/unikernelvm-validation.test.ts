// Invalid UnikernelVMs are refused by the real apiserver (OpenAPI schema + CEL rules in the CRD),
// each with a message that names the offending field.
import test from "ava";
import { API_VERSION, GROUP, MIGRATION_PLURAL, UNIKERNELVM_PLURAL, VERSION } from "../../api/index.js";
import { useCluster } from "../harness/ava.js";

const cluster = useCluster(test, "api-validation");

const valid = { image: "registry.local:5000/superfluid/hello:1.0", memory: "8Mi" };

const cases: { name: string; spec: Record<string, unknown>; field: RegExp; says?: RegExp }[] = [
  { name: "negative memory", spec: { ...valid, memory: "-64Mi" }, field: /spec\.memory/, says: /positive/ },
  {
    name: "memory below the 4Mi minimum",
    spec: { ...valid, memory: "1Mi" },
    field: /spec\.memory/,
    says: /at least 4Mi/,
  },
  { name: "memory that is not a quantity", spec: { ...valid, memory: "lots" }, field: /spec\.memory/ },
  {
    name: "zero vcpus",
    spec: { ...valid, vcpus: 0 },
    field: /spec\.vcpus/,
    says: /greater than or equal to 1/,
  },
  { name: "too many vcpus", spec: { ...valid, vcpus: 1000 }, field: /spec\.vcpus/ },
  { name: "malformed image reference", spec: { ...valid, image: "UPPER/Case::tag" }, field: /spec\.image/ },
  { name: "empty image", spec: { ...valid, image: "" }, field: /spec\.image/ },
  { name: "missing image", spec: { memory: "8Mi" }, field: /spec\.image/, says: /Required/ },
  {
    name: "unknown runPolicy",
    spec: { ...valid, runPolicy: "Sleeping" },
    field: /spec\.runPolicy/,
    says: /Unsupported value/,
  },
  { name: "unknown guestType", spec: { ...valid, guestType: "hvm" }, field: /spec\.guestType/ },
  { name: "unknown hypervisor", spec: { ...valid, hypervisor: "kvm" }, field: /spec\.hypervisor/ },
  {
    name: "unknown restartPolicy",
    spec: { ...valid, restartPolicy: "Sometimes" },
    field: /spec\.restartPolicy/,
  },
  {
    name: "port out of range",
    spec: { ...valid, ports: [{ containerPort: 70000 }] },
    field: /spec\.ports\[0\]\.containerPort/,
  },
  {
    name: "duplicate port",
    spec: {
      ...valid,
      ports: [
        { containerPort: 80, protocol: "TCP" },
        { containerPort: 80, protocol: "TCP" },
      ],
    },
    field: /spec\.ports\[1\]/,
    says: /Duplicate/,
  },
  {
    name: "service without ports",
    spec: { ...valid, service: { type: "ClusterIP" } },
    field: /spec\.service/,
    says: /at least one entry in ports/,
  },
  {
    name: "invalid env name",
    spec: { ...valid, env: [{ name: "1 bad", value: "x" }] },
    field: /spec\.env\[0\]\.name/,
  },
  {
    name: "pvh guest with too little memory",
    spec: { ...valid, guestType: "pvh", memory: "4Mi" },
    field: /spec\.memory/,
    says: /pvh guests need/,
  },
];

for (const c of cases) {
  test(`rejects ${c.name}`, async (t) => {
    const { custom, namespace } = cluster();
    const name = c.name
      .replace(/[^a-z0-9]+/g, "-")
      .replace(/^-|-$/g, "")
      .slice(0, 50);
    const err = await t.throwsAsync(
      custom.createNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace,
        plural: UNIKERNELVM_PLURAL,
        body: { apiVersion: API_VERSION, kind: "UnikernelVM", metadata: { name }, spec: c.spec },
      }),
    );
    const message = String(err?.message);
    t.regex(message, /422|Invalid/);
    t.regex(message, c.field);
    if (c.says) t.regex(message, c.says);
    // Nothing was stored.
    const list = (await custom.listNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace,
      plural: UNIKERNELVM_PLURAL,
      fieldSelector: `metadata.name=${name}`,
    })) as { items: unknown[] };
    t.is(list.items.length, 0);
  });
}

test("a valid spec with every field is accepted", async (t) => {
  const { custom, namespace } = cluster();
  const body = {
    apiVersion: API_VERSION,
    kind: "UnikernelVM",
    metadata: { name: "everything" },
    spec: {
      ...valid,
      imagePullSecrets: [{ name: "regcred" }],
      args: ["interval=1"],
      env: [{ name: "GREETING", value: "hi" }],
      vcpus: 2,
      hypervisor: "xen",
      guestType: "pvh",
      runPolicy: "Paused",
      restartPolicy: "OnFailure",
      ports: [{ name: "http", containerPort: 8080 }],
      service: { type: "ClusterIP" },
      nodeSelector: { zone: "a" },
      affinity: {
        nodeAffinity: {
          requiredDuringSchedulingIgnoredDuringExecution: {
            nodeSelectorTerms: [{ matchExpressions: [{ key: "zone", operator: "In", values: ["a"] }] }],
          },
        },
      },
      tolerations: [{ key: "superfluid.dev/xen", operator: "Exists", effect: "NoSchedule" }],
    },
  };
  const created = (await custom.createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace,
    plural: UNIKERNELVM_PLURAL,
    body,
  })) as { spec: { affinity: unknown; ports: unknown[] } };
  t.deepEqual(created.spec.affinity, body.spec.affinity, "affinity is kept as written");
  t.deepEqual(
    created.spec.ports,
    [{ name: "http", containerPort: 8080, protocol: "TCP" }],
    "protocol defaulted",
  );
});

test("a migration's spec is immutable", async (t) => {
  const { custom, namespace } = cluster();
  const base = { group: GROUP, version: VERSION, namespace, plural: MIGRATION_PLURAL };
  await custom.createNamespacedCustomObject({
    ...base,
    body: {
      apiVersion: API_VERSION,
      kind: "UnikernelVMMigration",
      metadata: { name: "m1" },
      spec: { vmName: "hello", targetNode: "xen-1" },
    },
  });
  const got = (await custom.getNamespacedCustomObject({ ...base, name: "m1" })) as {
    spec: Record<string, unknown>;
  };
  t.is(got.spec.mode, "live");
  const err = await t.throwsAsync(
    custom.replaceNamespacedCustomObject({
      ...base,
      name: "m1",
      body: { ...got, spec: { ...got.spec, targetNode: "xen-2" } },
    }),
  );
  t.regex(String(err?.message), /immutable/);
});
