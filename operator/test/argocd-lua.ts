// Runs the Argo CD health check Lua from docs/argocd.md, as written there, under lua5.4: Argo CD
// hands the script the live object as a Lua table (`obj`) and reads back `hs.status`/`hs.message`.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "../../lib/paths.js";

/** The ```lua block of docs/argocd.md (undefined if the doc lost it). */
export const HEALTH_LUA = /```lua\n([\s\S]*?)```/.exec(
  readFileSync(join(REPO_ROOT, "docs/argocd.md"), "utf8"),
)?.[1];

/** A Lua table constructor for a JSON value. */
function toLua(v: unknown): string {
  if (v === null || v === undefined) return "nil";
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  if (Array.isArray(v)) return `{${v.map(toLua).join(", ")}}`;
  return `{${Object.entries(v as Record<string, unknown>)
    .map(([k, x]) => `[${JSON.stringify(k)}] = ${toLua(x)}`)
    .join(", ")}}`;
}

/** The script's verdict on `obj`. */
export function argoHealth(obj: unknown): { status: string; message: string } {
  if (!HEALTH_LUA) throw new Error("docs/argocd.md has no lua block");
  const script = `local obj = ${toLua(obj)}\nlocal function check()\n${HEALTH_LUA}\nend\nlocal hs = check()\nio.write(hs.status, "\\n", hs.message)`;
  const r = spawnSync("lua5.4", ["-"], { input: script, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`lua5.4 failed: ${r.stderr}`);
  const [status, ...rest] = r.stdout.split("\n");
  return { status: status!, message: rest.join("\n") };
}
