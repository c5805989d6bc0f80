// Runs the Argo CD health check Lua from docs/argocd.md, as written there, under lua5.4.
import test from "ava";
import { argoHealth as health, HEALTH_LUA as lua } from "./argocd-lua.js";

const vm = (
  ready: { status: string; reason: string } | undefined,
  extra: { generation?: number; observed?: number; phase?: string; runPolicy?: string } = {},
) => ({
  metadata: { name: "x", generation: extra.generation ?? 2 },
  spec: { image: "r/hello:1", ...(extra.runPolicy ? { runPolicy: extra.runPolicy } : {}) },
  status: ready
    ? {
        phase: extra.phase ?? "Pending",
        observedGeneration: extra.observed ?? 2,
        conditions: [
          { type: "Scheduled", status: "True", reason: "Scheduled", message: "" },
          { type: "Ready", ...ready, message: "details" },
        ],
      }
    : undefined,
});

const cases: [string, ReturnType<typeof vm>, string][] = [
  ["no status yet", vm(undefined), "Progressing"],
  ["Ready", vm({ status: "True", reason: "Running" }, { phase: "Running" }), "Healthy"],
  ["creating", vm({ status: "False", reason: "Creating" }), "Progressing"],
  ["image pull failing", vm({ status: "False", reason: "ImagePullBackOff" }), "Degraded"],
  ["no Xen node", vm({ status: "False", reason: "NoXenNode" }), "Degraded"],
  ["invalid spec", vm({ status: "False", reason: "InvalidSpec" }, { phase: "Failed" }), "Degraded"],
  // Parked as the spec declares: Healthy, so a sync that applied it can finish (Argo CD #29663).
  [
    "stopped as declared",
    vm({ status: "False", reason: "Stopped" }, { phase: "Stopped", runPolicy: "Stopped" }),
    "Healthy",
  ],
  [
    "paused as declared",
    vm({ status: "False", reason: "Paused" }, { phase: "Paused", runPolicy: "Paused" }),
    "Healthy",
  ],
  [
    "suspended as declared",
    vm({ status: "False", reason: "Suspended" }, { phase: "Suspended", runPolicy: "Suspended" }),
    "Healthy",
  ],
  // Parked while the spec asks it to run (resume under way): not there yet.
  [
    "suspended, runPolicy Running",
    vm({ status: "False", reason: "Suspended" }, { phase: "Suspended" }),
    "Progressing",
  ],
  [
    "paused, runPolicy Suspended (suspend under way)",
    vm({ status: "False", reason: "Paused" }, { phase: "Paused", runPolicy: "Suspended" }),
    "Progressing",
  ],
  [
    "status of an older generation",
    vm({ status: "True", reason: "Running" }, { generation: 3, observed: 2 }),
    "Progressing",
  ],
];

for (const [name, obj, want] of cases) {
  test(`Argo CD health: ${name} is ${want}`, (t) => {
    t.truthy(lua, "docs/argocd.md has a lua block");
    const h = health(obj);
    t.is(h.status, want);
    t.true(h.message.length > 0);
  });
}
