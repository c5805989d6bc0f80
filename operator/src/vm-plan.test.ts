import test from "ava";
import type { V1Pod } from "@kubernetes/client-node";
import {
  ANNOTATIONS,
  API_VERSION,
  FINALIZER,
  type UnikernelVM,
  type UnikernelVMSpec,
} from "../../api/index.js";
import { desiredPod, desiredService, domainHash } from "./desired.js";
import { type Action, inPlaceSpec, plan, type PlanInput } from "./vm-plan.js";

const NOW = new Date("2026-01-01T00:00:00Z");

function vm(spec: Partial<UnikernelVMSpec> = {}, meta: Partial<UnikernelVM["metadata"]> = {}): UnikernelVM {
  return {
    apiVersion: API_VERSION,
    kind: "UnikernelVM",
    metadata: {
      name: "hello",
      namespace: "apps",
      uid: "u1",
      generation: 1,
      finalizers: [FINALIZER],
      ...meta,
    },
    spec: { image: "r/hello:1", ...spec },
  };
}

/** The pod the VM wants, as the cache would show it, with changes. */
function podOf(
  v: UnikernelVM,
  p: { phase?: string; deleting?: boolean; name?: string; runPolicy?: string } = {},
): V1Pod {
  const want = desiredPod({ ...v, spec: { ...v.spec, runPolicy: "Running" } })!;
  return {
    ...want,
    metadata: {
      ...want.metadata,
      ...(p.name ? { name: p.name } : {}),
      uid: `pod-${p.name ?? want.metadata!.name}`,
      annotations: {
        ...want.metadata!.annotations,
        ...(p.runPolicy ? { [ANNOTATIONS.runPolicy]: p.runPolicy } : {}),
      },
      ...(p.deleting ? { deletionTimestamp: NOW } : {}),
    },
    status: { phase: p.phase ?? "Running" },
  };
}

const kinds = (actions: Action[]) =>
  actions.map((a) =>
    a.kind === "deletePod" || a.kind === "applyPod"
      ? `${a.kind} ${a.pod.metadata?.name}`
      : a.kind === "applyService" || a.kind === "deleteService"
        ? `${a.kind} ${a.service.metadata?.name}`
        : a.kind,
  );

const base = (v: UnikernelVM, more: Partial<PlanInput> = {}): PlanInput => ({
  vm: v,
  pods: [],
  services: [],
  migrations: {},
  now: NOW,
  ...more,
});

const fresh = vm({}, { finalizers: [] });
const running = vm();
const stopped = vm({ runPolicy: "Stopped" });
const changed = vm({ image: "r/hello:2" });
const withService = vm({ ports: [{ containerPort: 80 }], service: {} });
const deleting = vm({}, { deletionTimestamp: NOW.toISOString() });
const oldPodName = desiredPod(running)!.metadata!.name!;

const cases: [
  string,
  PlanInput,
  {
    actions: string[];
    pod?: string;
    replacing?: boolean;
    requeue?: number;
    status?: boolean;
    settleLater?: boolean;
  },
][] = [
  [
    "a new VM: its pod alone; the finalizer and the status settle in a later pass",
    base(fresh),
    { actions: [`applyPod ${oldPodName}`], status: false, settleLater: true },
  ],
  [
    "the settling pass: the finalizer, and the status",
    base(fresh, { pods: [podOf(fresh)] }),
    { actions: ["addFinalizer"], status: true, settleLater: false, pod: oldPodName },
  ],
  [
    "the settling pass while the pod's watch event has not come yet: the expected pod counts",
    base(fresh, { expectedPod: (n) => (n === oldPodName ? podOf(fresh) : undefined) }),
    { actions: ["addFinalizer"], status: true, settleLater: false, pod: oldPodName },
  ],
  [
    "the finalizer we just added is not added again while the cache lags",
    base(fresh, { pods: [podOf(fresh)], finalizerPending: true }),
    { actions: [], status: true },
  ],
  [
    "a replacement pod for one that failed and went is created alone too",
    base(running),
    { actions: [`applyPod ${oldPodName}`], status: false, settleLater: true },
  ],
  [
    "a running VM with its pod: nothing to do",
    base(running, { pods: [podOf(running)] }),
    { actions: [], pod: oldPodName },
  ],
  [
    "the pod we applied is expected, not applied twice",
    base(running, { expectedPod: (n) => (n === oldPodName ? podOf(running) : undefined) }),
    { actions: [], pod: oldPodName },
  ],
  [
    "a changed spec deletes the old pod first, and waits for it",
    base(changed, { pods: [podOf(running)] }),
    { actions: [`deletePod ${oldPodName}`], replacing: true, requeue: 2000 },
  ],
  [
    "the old pod already terminating: wait",
    base(changed, { pods: [podOf(running, { deleting: true })] }),
    { actions: [], replacing: true, requeue: 2000 },
  ],
  [
    "Stopped deletes the pod",
    base(stopped, { pods: [podOf(running)] }),
    { actions: [`deletePod ${oldPodName}`], replacing: true, requeue: 2000 },
  ],
  ["Stopped and no pod: nothing", base(stopped), { actions: [] }],
  [
    "a failed pod under restartPolicy Always is deleted and its status shows it terminating",
    base(running, { pods: [podOf(running, { phase: "Failed" })] }),
    { actions: [`deletePod ${oldPodName}`], pod: oldPodName },
  ],
  [
    "restartPolicy Never keeps a failed pod",
    base(vm({ restartPolicy: "Never" }), {
      pods: [podOf(vm({ restartPolicy: "Never" }), { phase: "Failed" })],
    }),
    { actions: [], pod: desiredPod(vm({ restartPolicy: "Never" }))!.metadata!.name! },
  ],
  [
    "runPolicy changed in place: the pod is re-applied under its name",
    base(vm({ runPolicy: "Paused" }), { pods: [podOf(running)] }),
    { actions: [`applyPod ${oldPodName}`], pod: oldPodName },
  ],
  [
    "an adopted target pod keeps its own name",
    base(vm({ runPolicy: "Paused" }), { pods: [podOf(running, { name: "hello-target" })] }),
    { actions: ["applyPod hello-target"], pod: "hello-target" },
  ],
  [
    "a service is created, and not again once it is there",
    base(withService, { pods: [podOf(withService)] }),
    { actions: ["applyService hello"] },
  ],
  [
    "a service the spec no longer asks for is deleted",
    base(running, { pods: [podOf(running)], services: [desiredService(withService)!] }),
    { actions: ["deleteService hello"] },
  ],
  [
    "deletion: children first, the finalizer stays while a pod remains",
    base(deleting, { pods: [podOf(deleting)], services: [desiredService(withService)!] }),
    { actions: [`deletePod ${oldPodName}`, "deleteService hello"], requeue: 2000, status: false },
  ],
  [
    "deletion: the pods are gone, the finalizer goes",
    base(deleting),
    { actions: ["removeFinalizer"], status: false },
  ],
  [
    "deletion without our finalizer: nothing",
    base(vm({}, { deletionTimestamp: NOW.toISOString(), finalizers: [] })),
    { actions: [], status: false },
  ],
  [
    "an invalid spec touches no pod",
    base(vm({ service: {} }), { pods: [podOf(running)] }),
    { actions: [], pod: oldPodName },
  ],
];

for (const [name, input, want] of cases) {
  test(`plan: ${name}`, (t) => {
    const p = plan(input);
    t.deepEqual(kinds(p.actions), want.actions);
    if ("pod" in want) t.is(p.pod?.metadata?.name, want.pod);
    if (want.replacing !== undefined) t.is(p.replacing, want.replacing);
    t.is(p.requeueAfterMs, want.requeue);
    if (want.status !== undefined) t.is(p.writeStatus, want.status);
    if (want.settleLater !== undefined) t.is(p.settleLater ?? false, want.settleLater);
  });
}

test("plan: an invalid spec is reported, not thrown", (t) => {
  const p = plan(base(vm({ service: {} })));
  t.regex(p.invalidSpec ?? "", /ports/);
  t.true(p.writeStatus);
});

test("plan: a Service that would take a VM name starting with a digit is an invalid spec, and nothing is made", (t) => {
  const p = plan(base(vm({ service: {}, ports: [{ containerPort: 80 }] }, { name: "1web" })));
  t.regex(p.invalidSpec ?? "", /must start with a letter when spec\.service\.name is not set/);
  t.false(p.actions.some((a) => a.kind === "applyPod" || a.kind === "applyService"));
});

test("plan: a failed pod being restarted is the status's pod, marked terminating", (t) => {
  const p = plan(base(running, { pods: [podOf(running, { phase: "Failed" })] }));
  t.truthy(p.pod?.metadata?.deletionTimestamp);
});

test("plan: a migration in flight holds the pods but not the service", (t) => {
  const p = plan(
    base(withService, {
      pods: [podOf(withService)],
      migrations: {
        inFlight: {
          apiVersion: API_VERSION,
          kind: "UnikernelVMMigration",
          metadata: { name: "m1", namespace: "apps" },
          spec: { vmName: "hello" },
          status: { phase: "Switching" },
        },
      },
    }),
  );
  t.deepEqual(kinds(p.actions), ["applyService hello"]);
  t.true(p.replacing);
  t.is(p.pod?.metadata?.name, `hello-${domainHash(withService)}`);
});

test("guest memory: no spec.memory, the image's default; an unread image, the default and a Warning on the new pod", (t) => {
  const input = (image: PlanInput["image"], pods: V1Pod[] = []): PlanInput => ({
    vm: vm(),
    pods,
    services: [],
    migrations: {},
    now: NOW,
    ...(image ? { image } : {}),
  });
  const applied = (i: PlanInput) => {
    const a = plan(i).actions.find((x) => x.kind === "applyPod");
    return a?.kind === "applyPod" ? a : undefined;
  };
  const figures = (pod: V1Pod | undefined) => [
    pod?.metadata?.annotations?.[ANNOTATIONS.memoryMiB],
    pod?.spec?.containers[0]?.resources?.requests?.["superfluid.dev/guest-memory-mib"],
    pod?.spec?.containers[0]?.resources?.limits?.memory,
  ];
  const read = applied(input({ state: "read", memoryMiB: 4 }));
  t.deepEqual(figures(read?.pod), ["4", "4", "4Mi"]);
  t.is(read?.event, undefined);

  const unread = applied(input({ state: "unread", reason: "connection refused" }));
  t.deepEqual(figures(unread?.pod), ["16", "16", "16Mi"]);
  t.is(unread?.event?.type, "Warning");
  t.is(unread?.event?.reason, "ImageMemoryUnknown");

  // A pod made with 8 MiB stays at 8 whatever the image now says: no drift, nothing applied.
  const made = podOf(vm());
  const existing = {
    ...made,
    metadata: {
      ...made.metadata,
      annotations: { ...made.metadata!.annotations, [ANNOTATIONS.memoryMiB]: "8" },
    },
  };
  t.is(applied(input({ state: "read", memoryMiB: 4 }, [existing])), undefined);
});

test("plan: a runPolicy change applied in place keeps what the pod cannot change (its dnsPolicy from before Default)", (t) => {
  const old = podOf(running);
  const before = { ...old, spec: { ...old.spec!, dnsPolicy: "ClusterFirst" } };
  const r = plan(base(vm({ runPolicy: "Paused" }), { pods: [before] }));
  const apply = r.actions.find((a) => a.kind === "applyPod");
  t.truthy(apply, kinds(r.actions).join(", "));
  if (apply?.kind !== "applyPod") return;
  t.false(apply.created);
  t.is(apply.pod.spec!.dnsPolicy, "ClusterFirst", "an update may not change it");
  t.is(apply.pod.metadata!.annotations![ANNOTATIONS.runPolicy], "Paused");
  // A new pod gets Default; a pod that has it keeps it.
  t.is(inPlaceSpec(desiredPod(running)!, undefined)!.dnsPolicy, "Default");
  t.is(inPlaceSpec(desiredPod(running)!, podOf(running))!.dnsPolicy, "Default");
});
