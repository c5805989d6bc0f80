// Invalid UnikernelVMs are refused by the real apiserver (OpenAPI schema + CEL rules in the CRD),
// each with a message that names the offending field. (A name that could not name the VM's Service
// is the operator's InvalidSpec: operator/test/child-rejection.test.ts.)
import test from "ava";
import { API_VERSION, GROUP, MIGRATION_PLURAL, UNIKERNELVM_PLURAL, VERSION } from "../../api/index.js";
import { useCluster } from "../harness/ava.js";

const cluster = useCluster(test, "api-validation");

const valid = { image: "registry.local:5000/superfluid/hello:1.0", memory: "8Mi" };

const cases: {
  name: string;
  spec: Record<string, unknown>;
  field: RegExp;
  says?: RegExp;
  /** metadata.name, when the case is about the name. */
  vmName?: string;
}[] = [
  { name: "negative memory", spec: { ...valid, memory: "-64Mi" }, field: /spec\.memory/, says: /positive/ },
  {
    name: "memory below the 4Mi minimum",
    spec: { ...valid, memory: "1Mi" },
    field: /spec\.memory/,
    says: /at least 4Mi/,
  },
  { name: "memory that is not a quantity", spec: { ...valid, memory: "lots" }, field: /spec\.memory/ },
  {
    name: "memory above the 64Gi maximum",
    spec: { ...valid, memory: "65Gi" },
    field: /spec\.memory/,
    says: /at most 64Gi/,
  },
  {
    name: "zero cpuRequest",
    spec: { ...valid, cpuRequest: "0" },
    field: /spec\.cpuRequest/,
    says: /positive/,
  },
  {
    name: "cpuRequest above 64",
    spec: { ...valid, cpuRequest: "65" },
    field: /spec\.cpuRequest/,
    says: /at most 64/,
  },
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
    name: "an arg that smuggles a second word onto the command line",
    spec: { ...valid, args: ["interval=1 gw=10.0.0.1"] },
    field: /spec\.args\[0\]/,
    says: /args must be one word/,
  },
  {
    name: "an arg with a tab",
    spec: { ...valid, args: ["a\tb"] },
    field: /spec\.args\[0\]/,
    says: /one word/,
  },
  {
    name: "an arg with a quote",
    spec: { ...valid, args: ["ok", 'say="hi'] },
    field: /spec\.args\[1\]/,
    says: /one word/,
  },
  {
    name: "an arg with an escape character",
    spec: { ...valid, args: ["a\u001b[2Jb"] },
    field: /spec\.args\[0\]/,
    says: /control characters/,
  },
  {
    name: "an arg with a no-break space",
    spec: { ...valid, args: ["a\u00a0b"] },
    field: /spec\.args\[0\]/,
    says: /one word/,
  },
  { name: "an empty arg", spec: { ...valid, args: [""] }, field: /spec\.args\[0\]/ },
  {
    name: "an arg that sets the address the shim sets",
    spec: { ...valid, args: ["ip=10.0.0.9/24"] },
    field: /spec\.args\[0\]/,
    says: /must not set ip=, gw=, hostname=/,
  },
  {
    name: "an arg that sets the host name",
    spec: { ...valid, args: ["hostname=other"] },
    field: /spec\.args\[0\]/,
    says: /the shim sets them itself/,
  },
  {
    name: "an env value with a space",
    spec: { ...valid, env: [{ name: "X", value: "a gw=10.0.0.1" }] },
    field: /spec\.env\[0\]\.value/,
    says: /env value must be one word/,
  },
  {
    name: "an env value with a newline",
    spec: { ...valid, env: [{ name: "X", value: "a\nb" }] },
    field: /spec\.env\[0\]\.value/,
  },
  {
    name: "an env variable named like a key the shim sets",
    spec: { ...valid, env: [{ name: "gw", value: "10.0.0.1" }] },
    field: /spec\.env\[0\]\.name/,
    says: /env name must not be one of ip, gw, hostname/,
  },
  {
    name: "a service name that starts with a digit",
    spec: { ...valid, ports: [{ containerPort: 80 }], service: { name: "1web" } },
    field: /spec\.service\.name/,
  },
  {
    name: "a port name of digits only",
    spec: { ...valid, ports: [{ name: "8080", containerPort: 8080 }] },
    field: /spec\.ports\[0\]\.name/,
    says: /IANA service name/,
  },
  {
    name: "a VM name longer than a label value",
    spec: valid,
    vmName: "a".repeat(70),
    field: /metadata\.name/,
    says: /Too long|longer than 63|more than 63/,
  },
  {
    name: "a VM name with a dot",
    spec: valid,
    vmName: "web.v1",
    field: /metadata\.name/,
    says: /should match '\^\[a-z0-9\]/,
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
    const name =
      c.vmName ??
      c.name
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

test("words that only look like the shim's keys, a 63-character name and a named Service are accepted", async (t) => {
  const { custom, namespace } = cluster();
  const name = `v${"1".repeat(62)}`;
  const created = (await custom.createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace,
    plural: UNIKERNELVM_PLURAL,
    body: {
      apiVersion: API_VERSION,
      kind: "UnikernelVM",
      metadata: { name },
      spec: {
        ...valid,
        args: ["gwx=1", "-ip", "a=b=c", "interval=1"],
        env: [
          { name: "IP", value: "" },
          { name: "URL", value: "http://x/?a=1&b=2" },
        ],
        ports: [{ name: "http", containerPort: 80 }],
        service: { name: "web" },
      },
    },
  })) as { metadata: { name: string } };
  t.is(created.metadata.name, name);
});

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
