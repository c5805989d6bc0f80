#!/usr/bin/env node
// The test runner behind `npm test` and .ci/run: ava in two stages (everything that needs only the
// host, then the suites that boot emulated Xen nodes), one summary line at the end.
import { spawn } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const dirs = ["api", "lib", "operator", "cri-shim", "e2e", "bench", "tools"];
const only = process.argv.slice(2); // optional substrings to select files

function walk(dir, out = []) {
  let entries = [];
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const e of entries) {
    if (e === "node_modules" || e === "dist") continue;
    const p = join(dir, e);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (e.endsWith(".test.ts")) out.push(relative(root, p));
  }
  return out;
}

const all = dirs
  .flatMap((d) => walk(join(root, d)))
  .sort()
  .filter((f) => only.length === 0 || only.some((o) => f.includes(o)));
// SUPERFLUID_STAGES=host (or xen) runs one stage only, for a quick local loop; CI runs both.
const wanted = (process.env.SUPERFLUID_STAGES ?? "host,xen").split(",");
// ava runs the files in the order given, two at a time on 2 cores: the longest Xen files (minutes
// each, from the last full runs) go first, so that none of them starts last and runs on alone.
const LONGEST_XEN = [
  "e2e/scenarios/real-node",
  "e2e/scenarios/migration",
  "e2e/scenarios/density",
  "cri-shim/src/migration/migrate",
  "e2e/scenarios/two-nodes",
];
function longFirst(files) {
  const rank = (f) => {
    const i = LONGEST_XEN.findIndex((p) => f.startsWith(p));
    return i < 0 ? LONGEST_XEN.length : i;
  };
  return [...files].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

const stages = [
  { name: "host", files: all.filter((f) => !f.endsWith(".xen.test.ts")), args: [] },
  // Booting an emulated Xen node happens in before-hooks and can take minutes on a busy 2-core
  // machine; ava's timeout is one of inactivity, so give this stage room.
  { name: "xen", files: longFirst(all.filter((f) => f.endsWith(".xen.test.ts"))), args: ["--timeout=20m"] },
].filter((s) => wanted.includes(s.name));

function runAva(files, extraArgs) {
  return new Promise((resolve) => {
    const child = spawn(join(root, "node_modules/.bin/ava"), [...extraArgs, ...files], {
      cwd: root,
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      process.stdout.write(d);
    });
    child.on("close", (code) => resolve({ code: code ?? 1, out }));
  });
}

const count = (out, word) => {
  const m = new RegExp(`(\\d+) (?:tests?|known failures?) ${word}`).exec(out);
  return m ? Number(m[1]) : 0;
};

// One control plane (etcd + kube-apiserver) shared by every test file; each file gets a namespace.
const { startControlPlane } = await import(join(root, "dist/e2e/harness/control-plane.js"));
const t0 = Date.now();
const cp = await startControlPlane();
console.log(`control plane up at ${cp.server} in ${Date.now() - t0} ms`);
process.env.SUPERFLUID_TEST_CONTROL_PLANE = join(cp.dir, "control-plane.json");
const stopControlPlane = () => cp.stop();
process.once("SIGINT", async () => {
  await stopControlPlane();
  process.exit(130);
});
process.once("SIGTERM", async () => {
  await stopControlPlane();
  process.exit(143);
});

/** The first lines of ava's report for a failed test (its title alone on a line, then the error). */
function failureDetail(out, markLine) {
  const title = markLine
    .trim()
    .replace(/^✘\s*(\[fail\]:\s*)?/, "")
    .trim();
  const lines = out.split("\n");
  let at = -1;
  // The mark line may carry the assertion's message after the title; the report's header does not.
  for (let i = lines.length - 1; i >= 0 && at < 0; i--) {
    const l = lines[i].trim();
    if (l.length > 8 && title.startsWith(l) && !/^✘/.test(l)) at = i;
  }
  if (at < 0) return "";
  return lines
    .slice(at + 1)
    .filter((l) => l.trim() !== "")
    .slice(0, 8)
    .map((l) => `      ${l.trim().slice(0, 240)}`)
    .join("\n");
}

let passed = 0,
  failed = 0,
  skipped = 0,
  exit = 0;
const failures = [];
for (const stage of stages) {
  if (stage.files.length === 0) continue;
  console.log(`\n=== stage ${stage.name}: ${stage.files.length} test files ===`);
  const { code, out } = await runAva(stage.files, stage.args);
  // ava prints "N tests passed" only when nothing failed, so count the per-test marks instead.
  const p = (out.match(/^\s*✔/gm) ?? []).length,
    f = count(out, "failed"),
    s = count(out, "skipped") + count(out, "todo");
  passed += p;
  failed += f;
  skipped += s;
  // CI shows only the tail of the log: name what failed next to the summary.
  for (const line of out.split("\n"))
    if (/^\s*✘/.test(line)) failures.push(`[${stage.name}] ${line.trim()}\n${failureDetail(out, line)}`);
  if (code !== 0) {
    exit = code;
    if (f === 0) failed += 1;
  }
}
await stopControlPlane();
if (failures.length > 0) console.log(`\nfailed:\n${failures.map((f) => `  ${f}`).join("\n")}`);
console.log(`\nava: ${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(exit);
