import test from "ava";
import type { UnikernelVM } from "../../api/index.js";
import { type GuestMemory, type ImageLookup, podMemoryMiB, resolveGuestMemory } from "./guest-memory.js";

const vm = (memory?: string): UnikernelVM => ({
  apiVersion: "superfluid.dev/v1alpha1",
  kind: "UnikernelVM",
  metadata: { name: "v", namespace: "ns" },
  spec: { image: "registry.test/hello:1", ...(memory ? { memory } : {}) },
});

const table: Array<
  [
    string,
    string | undefined,
    ImageLookup | undefined,
    number | undefined,
    Omit<GuestMemory, "warning">,
    boolean,
  ]
> = [
  ["the spec wins over all", "64Mi", { state: "read", memoryMiB: 4 }, 8, { mib: 64, source: "spec" }, false],
  ["the spec, rounded up to whole MiB", "1500Ki", undefined, undefined, { mib: 2, source: "spec" }, false],
  [
    "no spec: the current pod's figure",
    undefined,
    { state: "read", memoryMiB: 4 },
    8,
    { mib: 8, source: "pod" },
    false,
  ],
  [
    "no spec, no pod: the image's default",
    undefined,
    { state: "read", memoryMiB: 4 },
    undefined,
    { mib: 4, source: "image" },
    false,
  ],
  [
    "an image that names none: the default",
    undefined,
    { state: "read" },
    undefined,
    { mib: 16, source: "default" },
    false,
  ],
  [
    "an unread image: the default, with a warning",
    undefined,
    { state: "unread", reason: "connection refused" },
    undefined,
    { mib: 16, source: "default" },
    true,
  ],
  ["no lookup at all: the default", undefined, undefined, undefined, { mib: 16, source: "default" }, false],
  [
    "an unread image does not override the pod's figure",
    undefined,
    { state: "unread", reason: "x" },
    4,
    { mib: 4, source: "pod" },
    false,
  ],
];
for (const [name, memory, image, podMiB, want, warns] of table)
  test(`guest memory: ${name}`, (t) => {
    const got = resolveGuestMemory(vm(memory), image, podMiB);
    t.deepEqual({ mib: got.mib, source: got.source }, want);
    t.is(got.warning !== undefined, warns);
    if (warns) t.regex(got.warning!, /registry\.test\/hello:1 \(connection refused\).*set spec\.memory/);
  });

test("a pod's figure is read only when it is a whole positive number", (t) => {
  t.is(podMemoryMiB({ "superfluid.dev/memory-mib": "4" }), 4);
  for (const bad of ["0", "-1", "4.5", "4Mi", "", "99999999"])
    t.is(podMemoryMiB({ "superfluid.dev/memory-mib": bad }), undefined, bad);
  t.is(podMemoryMiB(undefined), undefined);
});
