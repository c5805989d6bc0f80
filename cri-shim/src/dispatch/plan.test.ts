// The dispatch rules as a table, and the Status merge (pure; the real-containerd proof is
// dispatch/containerd.test.ts).
import test from "ava";
import { planCall, type Facts, type Plan } from "./plan.js";
import { FALLBACK_NOT_READY, FALLBACK_UNAVAILABLE, mergeStatus, type StatusReply } from "./status-merge.js";

const base: Facts = { method: "", hasFallback: true, ourHandlers: ["superfluid"] };
const cases: Array<[string, Partial<Facts>, Pick<Plan, "do"> & { backend?: string }]> = [
  [
    "no fallback: a Linux pod is still ours",
    { method: "RunPodSandbox", hasFallback: false },
    { do: "one", backend: "ours" },
  ],
  [
    "no fallback: lists are ours alone",
    { method: "ListPodSandbox", hasFallback: false },
    { do: "one", backend: "ours" },
  ],
  [
    "superfluid handler runs here",
    { method: "RunPodSandbox", runtimeHandler: "superfluid" },
    { do: "one", backend: "ours" },
  ],
  [
    "default handler goes to containerd",
    { method: "RunPodSandbox", runtimeHandler: "" },
    { do: "one", backend: "fallback" },
  ],
  [
    "an unknown handler goes to containerd (which names it)",
    { method: "RunPodSandbox", runtimeHandler: "kata" },
    { do: "one", backend: "fallback" },
  ],
  ["our sandbox id stays here", { method: "StopPodSandbox", idIsOurs: true }, { do: "one", backend: "ours" }],
  [
    "a foreign sandbox id is forwarded",
    { method: "PodSandboxStatus", idIsOurs: false },
    { do: "one", backend: "fallback" },
  ],
  ["container in our sandbox", { method: "CreateContainer", idIsOurs: true }, { do: "one", backend: "ours" }],
  [
    "containerd's container logs reopen there",
    { method: "ReopenContainerLog", idIsOurs: false },
    { do: "one", backend: "fallback" },
  ],
  [
    "exec into containerd's container is forwarded",
    { method: "Exec", idIsOurs: false },
    { do: "one", backend: "fallback" },
  ],
  [
    "exec into ours is refused by our handler",
    { method: "ExecSync", idIsOurs: true },
    { do: "one", backend: "ours" },
  ],
  [
    "port-forward follows the sandbox",
    { method: "PortForward", idIsOurs: false },
    { do: "one", backend: "fallback" },
  ],
  ["lists merge", { method: "ListContainers" }, { do: "merge" }],
  ["stats lists merge", { method: "ListPodSandboxStats" }, { do: "merge" }],
  ["image lists merge", { method: "ListImages" }, { do: "merge" }],
  ["image file systems merge", { method: "ImageFsInfo" }, { do: "merge" }],
  ["status merges", { method: "Status" }, { do: "status" }],
  ["version is the front's", { method: "Version" }, { do: "one", backend: "ours" }],
  ["cgroup driver is containerd's", { method: "RuntimeConfig" }, { do: "one", backend: "fallback" }],
  ["pod CIDR goes to both", { method: "UpdateRuntimeConfig" }, { do: "both" }],
  [
    "pull with our handler",
    { method: "PullImage", runtimeHandler: "superfluid" },
    { do: "one", backend: "ours" },
  ],
  [
    "pull with runc handler",
    { method: "PullImage", runtimeHandler: "runc" },
    { do: "one", backend: "fallback" },
  ],
  ["pull for our pod", { method: "PullImage", podIsOurs: true }, { do: "one", backend: "ours" }],
  [
    "pull for containerd's pod",
    { method: "PullImage", podIsOurs: false },
    { do: "one", backend: "fallback" },
  ],
  ["pull without a pod: the format decides", { method: "PullImage" }, { do: "image-format" }],
  ["image status: whoever holds it", { method: "ImageStatus" }, { do: "image-lookup" }],
  [
    "image status with a handler",
    { method: "ImageStatus", runtimeHandler: "superfluid" },
    { do: "one", backend: "ours" },
  ],
  ["image remove: whoever holds it", { method: "RemoveImage" }, { do: "image-lookup" }],
];
for (const [name, facts, want] of cases)
  test(`plan: ${name}`, (t) => {
    const plan = planCall({ ...base, ...facts });
    t.is(plan.do, want.do);
    if (want.backend) t.is(plan.do === "one" ? (plan.backend as string) : undefined, want.backend);
  });

const ready = (extra: Partial<StatusReply> = {}): StatusReply => ({
  status: {
    conditions: [
      { type: "RuntimeReady", status: true, reason: "", message: "" },
      { type: "NetworkReady", status: true, reason: "", message: "" },
    ],
  },
  info: {},
  runtime_handlers: [{ name: "" }, { name: "superfluid" }],
  ...extra,
});
const cond = (s: StatusReply, type: string) => s.status?.conditions.find((c) => c.type === type);

test("status: both ready is ready, handlers of both listed once", (t) => {
  const merged = mergeStatus(ready(), ready({ runtime_handlers: [{ name: "" }, { name: "runc" }] }));
  t.true(cond(merged, "RuntimeReady")?.status);
  t.true(cond(merged, "NetworkReady")?.status);
  t.deepEqual(
    merged.runtime_handlers.map((h) => h.name),
    ["", "runc", "superfluid"],
  );
});

test("status: an unreachable fallback makes RuntimeReady false with the reason and its error", (t) => {
  const merged = mergeStatus(ready(), {
    error: "fallback runtime unix:///x is unavailable (Status): No connection",
  });
  const rt = cond(merged, "RuntimeReady");
  t.false(rt?.status);
  t.is(rt?.reason, FALLBACK_UNAVAILABLE);
  t.regex(rt?.message ?? "", /unix:\/\/\/x is unavailable/);
  t.true(cond(merged, "NetworkReady")?.status, "our network is still known to be fine");
});

test("status: the fallback's own NetworkReady=false is passed on", (t) => {
  const theirs = ready();
  theirs.status!.conditions[1] = {
    type: "NetworkReady",
    status: false,
    reason: "NetworkPluginNotReady",
    message: "cni config uninitialized",
  };
  const net = cond(mergeStatus(ready(), theirs), "NetworkReady");
  t.false(net?.status);
  t.is(net?.reason, FALLBACK_NOT_READY);
  t.regex(net?.message ?? "", /NetworkPluginNotReady: cni config uninitialized/);
});

test("status: our hypervisor being down wins over a healthy fallback", (t) => {
  const ours = ready();
  ours.status!.conditions[0] = {
    type: "RuntimeReady",
    status: false,
    reason: "HypervisorUnavailable",
    message: "libxl",
  };
  const rt = cond(mergeStatus(ours, ready()), "RuntimeReady");
  t.false(rt?.status);
  t.is(rt?.reason, "HypervisorUnavailable");
});
