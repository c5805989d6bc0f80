import test from "ava";
import {
  ANNOTATIONS,
  API_VERSION,
  LABELS,
  parseSandboxAnnotations,
  RESOURCES,
  RUNTIME_CLASS,
  type UnikernelVM,
  type UnikernelVMSpec,
} from "../../api/index.js";
import {
  cpuRequestMillis,
  DEFAULT_CPU_ALLOCATION_RATIO,
  desiredPod,
  guestMemoryMiB,
  podResources,
  desiredService,
  domainHash,
  InvalidSpecError,
  podName,
  quantityToBytes,
} from "./desired.js";

function vm(spec: Partial<UnikernelVMSpec> = {}, name = "hello"): UnikernelVM {
  return {
    apiVersion: API_VERSION,
    kind: "UnikernelVM",
    metadata: { name, namespace: "apps", uid: "uid-1", generation: 1 },
    spec: { image: "registry.local/hello:1", ...spec },
  };
}

const quantities: [string | number, number][] = [
  ["64Mi", 64 * 2 ** 20],
  ["1Gi", 2 ** 30],
  ["100M", 1e8],
  ["1e9", 1e9],
  [1048576, 1048576],
  ["0.5Gi", 2 ** 29],
];
for (const [q, bytes] of quantities)
  test(`quantity ${q} is ${bytes} bytes`, (t) => t.is(quantityToBytes(q), bytes));

test("a full spec becomes a pod the shim parses back to the same config", (t) => {
  const v = vm({
    memory: "100M",
    vcpus: 2,
    guestType: "pvh",
    args: ["-v", "interval=1"],
    env: [{ name: "GREETING", value: "hi" }],
    runPolicy: "Paused",
    restartPolicy: "OnFailure",
    nodeSelector: { zone: "a", [LABELS.xenNode]: "false" },
    tolerations: [{ key: "xen", operator: "Exists", effect: "NoSchedule" }],
    ports: [{ containerPort: 8080 }],
  });
  const pod = desiredPod(v)!;
  t.is(pod.metadata!.name, podName(v));
  t.regex(pod.metadata!.name!, /^hello-[0-9a-f]{10}$/);
  t.is(pod.spec!.runtimeClassName, RUNTIME_CLASS);
  t.is(pod.spec!.restartPolicy, "OnFailure");
  t.deepEqual(pod.spec!.nodeSelector, { zone: "a", [LABELS.xenNode]: "true" });
  t.deepEqual(pod.spec!.tolerations, [{ key: "xen", operator: "Exists", effect: "NoSchedule" }]);
  t.deepEqual(pod.metadata!.labels![LABELS.vm], "hello");
  t.deepEqual(pod.metadata!.ownerReferences, [
    {
      apiVersion: API_VERSION,
      kind: "UnikernelVM",
      name: "hello",
      uid: "uid-1",
      controller: true,
      blockOwnerDeletion: true,
    },
  ]);
  const c = pod.spec!.containers[0]!;
  t.is(c.image, "registry.local/hello:1");
  // 100M = 95.37 MiB, rounded up: the guest never gets less than asked.
  t.deepEqual(c.resources, {
    requests: { cpu: "20m", memory: "0", [RESOURCES.guestMemoryMiB]: "96" },
    limits: { memory: "96Mi", [RESOURCES.guestMemoryMiB]: "96" },
  });
  t.deepEqual(c.ports, [{ containerPort: 8080, protocol: "TCP" }]);
  t.deepEqual(parseSandboxAnnotations(pod.metadata!.annotations), {
    vm: { namespace: "apps", name: "hello", uid: "uid-1" },
    args: ["-v", "interval=1"],
    env: { GREETING: "hi" },
    memoryMiB: 96,
    vcpus: 2,
    guestType: "pvh",
    runPolicy: "Paused",
  });
  t.is(pod.metadata!.annotations![ANNOTATIONS.domainHash], domainHash(v));
});

test("the defaults: 16 MiB of guest memory, 10m of CPU for one vcpu, restart Always; the annotation carries the same figure", (t) => {
  const pod = desiredPod(vm())!;
  t.deepEqual(pod.spec!.containers[0]!.resources, {
    requests: { cpu: "10m", memory: "0", [RESOURCES.guestMemoryMiB]: "16" },
    limits: { memory: "16Mi", [RESOURCES.guestMemoryMiB]: "16" },
  });
  t.is(pod.spec!.restartPolicy, "Always");
  // The shim gives the guest no DNS settings: nothing for the kubelet to compute or warn about.
  t.is(pod.spec!.dnsPolicy, "Default");
  t.is(pod.metadata!.annotations![ANNOTATIONS.memoryMiB], "16");
  t.deepEqual(parseSandboxAnnotations(pod.metadata!.annotations).runPolicy, "Running");
});

// The resource model, case by case: [what, spec, model ratio, image default MiB, cpu, guest MiB].
const resourceCases: [string, Partial<UnikernelVMSpec>, number, number | undefined, string, string][] = [
  ["one vcpu at the default ratio", {}, DEFAULT_CPU_ALLOCATION_RATIO, undefined, "10m", "16"],
  ["four vcpus at ratio 100", { vcpus: 4 }, 100, undefined, "40m", "16"],
  ["KubeVirt's ratio 10", { vcpus: 2 }, 10, undefined, "200m", "16"],
  ["ratio 1: a CPU per vcpu, as before", { vcpus: 2 }, 1, undefined, "2000m", "16"],
  ["a ratio so high the share rounds up to 1m", {}, 5000, undefined, "1m", "16"],
  ["a fractional share rounds up", { vcpus: 3 }, 7, undefined, "429m", "16"],
  [
    "an explicit cpuRequest wins over the ratio",
    { vcpus: 8, cpuRequest: "50m" },
    100,
    undefined,
    "50m",
    "16",
  ],
  ["cpuRequest in whole CPUs", { cpuRequest: "1.5" }, 100, undefined, "1500m", "16"],
  ["the image's memory when the spec has none", {}, 100, 128, "10m", "128"],
  ["the spec's memory over the image's", { memory: "4Mi" }, 100, 128, "10m", "4"],
  ["memory in decimal units rounds up to whole MiB", { memory: "100M" }, 100, undefined, "10m", "96"],
  ["memory in Gi", { memory: "1Gi" }, 100, undefined, "10m", "1024"],
];
for (const [what, spec, ratio, imageMiB, cpu, mib] of resourceCases)
  test(`resources: ${what}`, (t) => {
    const image = imageMiB === undefined ? {} : { memoryMiB: imageMiB };
    const pod = desiredPod(vm(spec), { cpuAllocationRatio: ratio }, image)!;
    const r = pod.spec!.containers[0]!.resources!;
    t.deepEqual(r, podResources(vm(spec), { cpuAllocationRatio: ratio }, image));
    t.is(r.requests!.cpu, cpu);
    t.is(r.limits!.cpu, undefined, "no CPU limit: vcpus caps the guest in Xen");
    t.is(r.requests!.memory, "0", "no dom0 memory but the RuntimeClass overhead");
    t.is(r.requests![RESOURCES.guestMemoryMiB], mib);
    t.is(r.limits![RESOURCES.guestMemoryMiB], mib, "an extended resource's request equals its limit");
    t.is(r.limits!.memory, `${mib}Mi`);
    t.is(
      pod.metadata!.annotations![ANNOTATIONS.memoryMiB],
      mib,
      "one figure: the shim reserves and builds this",
    );
    t.is(parseSandboxAnnotations(pod.metadata!.annotations).memoryMiB, Number(mib));
    t.is(guestMemoryMiB(vm(spec), image), Number(mib));
    t.is(cpuRequestMillis(vm(spec), { cpuAllocationRatio: ratio }), Number(cpu.slice(0, -1)));
  });

test("resources: the image's default does not rename the pod; a new cpuRequest does", (t) => {
  t.is(desiredPod(vm(), undefined, { memoryMiB: 128 })!.metadata!.name, desiredPod(vm())!.metadata!.name);
  t.not(podName(vm({ cpuRequest: "50m" })), podName(vm()));
});

test("runPolicy Stopped means no pod", (t) => {
  t.is(desiredPod(vm({ runPolicy: "Stopped" })), undefined);
});

const hashCases: [string, Partial<UnikernelVMSpec>, boolean][] = [
  ["image", { image: "registry.local/hello:2" }, true],
  ["memory", { memory: "32Mi" }, true],
  ["args", { args: ["x"] }, true],
  ["nodeSelector", { nodeSelector: { zone: "b" } }, true],
  ["restartPolicy", { restartPolicy: "Never" }, true],
  ["runPolicy Paused (the domain is paused, not rebuilt)", { runPolicy: "Paused" }, false],
  ["service (not part of the domain)", { service: { type: "ClusterIP" } }, false],
];
for (const [what, change, recreates] of hashCases) {
  test(`changing ${what} ${recreates ? "recreates" : "keeps"} the pod`, (t) => {
    const base = vm({ memory: "16Mi", ports: [{ containerPort: 80 }] });
    const changed = vm({ memory: "16Mi", ports: [{ containerPort: 80 }], ...change });
    t.is(podName(base) !== podName(changed), recreates);
  });
}

test("the pod name does not depend on the order of object keys", (t) => {
  const a = vm({ nodeSelector: { a: "1", b: "2" } });
  const b = vm({ nodeSelector: { b: "2", a: "1" } });
  t.is(podName(a), podName(b));
});

const invalid: [string, Partial<UnikernelVMSpec>, RegExp][] = [
  ["an env value with a space", { env: [{ name: "X", value: "a b" }] }, /no white space/],
  [
    "a command line over Xen's limit",
    { args: Array.from({ length: 20 }, () => "x".repeat(60)) },
    /Xen allows 1024/,
  ],
  ["memory beyond 64Gi", { memory: "65Gi" }, /between 1 and 65536/],
];
for (const [what, spec, message] of invalid) {
  test(`${what} passes the schema but is an InvalidSpecError`, (t) => {
    const err = t.throws(() => desiredPod(vm(spec)), { instanceOf: InvalidSpecError });
    t.regex(err!.message, message);
  });
}

test("a Service that would take a VM name starting with a digit is an InvalidSpecError; one named in the spec is made", (t) => {
  const spec = { service: {}, ports: [{ containerPort: 80 }] };
  const err = t.throws(() => desiredService(vm(spec, "1web")), { instanceOf: InvalidSpecError });
  t.regex(err!.message, /metadata\.name "1web" must start with a letter when spec\.service\.name is not set/);
  t.is(desiredService(vm({ ...spec, service: { name: "web" } }, "1web"))!.metadata!.name, "web");
  t.is(desiredService(vm(spec, "web-1"))!.metadata!.name, "web-1");
});

test("the service selects the VM by label and names its ports", (t) => {
  const svc = desiredService(
    vm({
      service: { type: "NodePort" },
      ports: [{ containerPort: 80 }, { containerPort: 53, protocol: "UDP", name: "dns" }],
    }),
  )!;
  t.is(svc.metadata!.name, "hello");
  t.deepEqual(svc.spec!.selector, { [LABELS.vm]: "hello" });
  t.is(svc.spec!.type, "NodePort");
  t.deepEqual(svc.spec!.ports, [
    { name: "tcp-80", port: 80, targetPort: 80, protocol: "TCP" },
    { name: "dns", port: 53, targetPort: 53, protocol: "UDP" },
  ]);
  t.is(desiredService(vm()), undefined);
  t.is(
    desiredService(vm({ service: { name: "front" }, ports: [{ containerPort: 1 }] }))!.metadata!.name,
    "front",
  );
});
