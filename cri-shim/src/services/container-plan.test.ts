// CreateContainer's decisions: which siblings refuse a container, and the record a request becomes.
import test from "ava";
import { CriError, type CriErrorCode } from "../errors.js";
import type { ContainerConfig } from "../proto.js";
import { checkSandboxTakes, planContainer, type ContainerPlanInput, type Sibling } from "./container-plan.js";

const refusals: { name: string; siblings: Sibling[]; code?: CriErrorCode; message?: RegExp }[] = [
  { name: "an empty sandbox takes it", siblings: [] },
  {
    name: "a sandbox whose earlier attempt exited takes the next attempt",
    siblings: [{ id: "c0", name: "vm", attempt: 0, exited: true }],
  },
  {
    name: "the same name and attempt again: AlreadyExists",
    siblings: [{ id: "c1", name: "vm", attempt: 1, exited: true }],
    code: "AlreadyExists",
    message: /container vm attempt 1 already exists in sandbox sb1/,
  },
  {
    name: "a live sibling under another name: one container per unikernel pod",
    siblings: [{ id: "c0", name: "other", attempt: 0, exited: false }],
    code: "FailedPrecondition",
    message: /already runs container c0: a unikernel pod has one container/,
  },
];
for (const c of refusals)
  test(`checkSandboxTakes: ${c.name}`, (t) => {
    const run = () => checkSandboxTakes("sb1", { name: "vm", attempt: 1 }, c.siblings);
    if (!c.code) return t.notThrows(run);
    const err = t.throws(run, { instanceOf: CriError, message: c.message });
    t.is(err?.code, c.code);
  });

const config = (over: Partial<ContainerConfig> = {}): ContainerPlanInput["config"] =>
  ({
    metadata: { name: "vm", attempt: 2 },
    image: { image: "reg/hello:v1", annotations: { a: "1" } },
    command: [],
    args: ["--x"],
    envs: [],
    labels: { l: "v" },
    annotations: { k: "w" },
    log_path: "vm/2.log",
    linux: null,
    ...over,
  }) as ContainerPlanInput["config"];

const input = (over: Partial<ContainerPlanInput> = {}): ContainerPlanInput => ({
  id: "c".repeat(64),
  createdAt: "123",
  sandbox: {
    id: "sb1",
    config: { args: [], env: {}, runPolicy: "Running" },
    hostname: "hello",
    logDirectory: "/var/log/pods/ns_hello_uid",
    domainName: "sf-0123456789ab",
  },
  network: {
    ip: "10.244.1.5",
    prefixLength: 24,
    gateway: "10.244.1.1",
    bridge: "sf0",
    mac: "00:16:3e:00:00:01",
  },
  config: config(),
  imageRef: "reg/hello:v1",
  image: {
    id: "sha256:cfg",
    repoDigests: ["reg/hello@sha256:abc"],
    config: { guestType: "pv", cmdline: "quiet" },
  },
  kernels: { kernelPath: "/cache/k" },
  bootModes: { kind: "elf", pv: true, pvh: false, noteTypes: [] },
  logRel: "vm/2.log",
  defaults: { memoryMiB: 16, vcpus: 1 },
  ...over,
});

test("planContainer: the record a request becomes, from the sandbox, the image and the node's defaults", (t) => {
  const { meta, status } = planContainer(input());
  t.deepEqual(meta, {
    id: "c".repeat(64),
    sandboxId: "sb1",
    metadata: { name: "vm", attempt: 2 },
    image: { image: "reg/hello:v1", annotations: { a: "1" } },
    imageRef: "reg/hello@sha256:abc",
    imageId: "sha256:cfg",
    labels: { l: "v" },
    annotations: { k: "w" },
    logPath: "/var/log/pods/ns_hello_uid/vm/2.log",
    createdAt: "123",
    domainName: "sf-0123456789ab",
    kernelPath: "/cache/k",
    initrdPath: undefined,
    cmdline: "quiet --x ip=10.244.1.5/24 gw=10.244.1.1 hostname=hello",
    guestType: "pv",
  });
  // Not started, not ended, no domain yet: only the size is decided.
  t.like(status, { state: "creating", startedAt: "0", finishedAt: "0", memoryMiB: 16, vcpus: 1 });
  t.is(status.domid, undefined);
});

const sized: { name: string; over: Partial<ContainerPlanInput>; memoryMiB: number; vcpus: number }[] = [
  { name: "node defaults", over: {}, memoryMiB: 16, vcpus: 1 },
  {
    name: "the image's memory over the node's default",
    over: { image: { id: "i", repoDigests: [], config: { guestType: "pv", cmdline: "", memoryMiB: 8 } } },
    memoryMiB: 8,
    vcpus: 1,
  },
  {
    name: "the pod's annotations over the image",
    over: {
      sandbox: {
        ...input().sandbox,
        config: { args: [], env: {}, runPolicy: "Running", memoryMiB: 4, vcpus: 2 },
      },
    },
    memoryMiB: 4,
    vcpus: 2,
  },
];
for (const c of sized)
  test(`planContainer sizes the guest: ${c.name}`, (t) => {
    const { status } = planContainer(input(c.over));
    t.is(status.memoryMiB, c.memoryMiB);
    t.is(status.vcpus, c.vcpus);
  });

test("planContainer: no log path, no log file; no repo digest, the image id", (t) => {
  const { meta } = planContainer(
    input({
      logRel: "",
      image: { id: "sha256:i", repoDigests: [], config: { guestType: "pv", cmdline: "" } },
    }),
  );
  t.is(meta.logPath, "");
  t.is(meta.imageRef, "sha256:i");
});

test("planContainer refuses a PVH request for a kernel with no PVH entry", (t) => {
  const sandbox = {
    ...input().sandbox,
    config: { args: [], env: {}, runPolicy: "Running" as const, guestType: "pvh" as const },
  };
  t.throws(() => planContainer(input({ sandbox })), { message: /needs a kernel with a PVH entry/ });
});
