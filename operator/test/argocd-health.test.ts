// Runs the Argo CD health check Lua from docs/argocd.md, as written there, under lua5.4.
import test from "ava";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "../../lib/paths.js";

const doc = readFileSync(join(REPO_ROOT, "docs/argocd.md"), "utf8");
const lua = /```lua\n([\s\S]*?)```/.exec(doc)?.[1];

/** A Lua table constructor for a JSON value, the shape Argo CD hands the script as `obj`. */
function toLua(v: unknown): string {
  if (v === null || v === undefined) return "nil";
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  if (Array.isArray(v)) return `{${v.map(toLua).join(", ")}}`;
  return `{${Object.entries(v as Record<string, unknown>)
    .map(([k, x]) => `[${JSON.stringify(k)}] = ${toLua(x)}`)
    .join(", ")}}`;
}

function health(obj: unknown): { status: string; message: string } {
  const script = `local obj = ${toLua(obj)}\nlocal function check()\n${lua}\nend\nlocal hs = check()\nio.write(hs.status, "\\n", hs.message)`;
  const r = spawnSync("lua5.4", ["-"], { input: script, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`lua5.4 failed: ${r.stderr}`);
  const [status, ...rest] = r.stdout.split("\n");
  return { status: status!, message: rest.join("\n") };
}

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
