// The layers rule of `npm run lint`: a deliberate violation fails lint, and the tree has none.
import test from "ava";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { ESLint } from "eslint";
import { pathToFileURL } from "node:url";
import { REPO_ROOT } from "../lib/paths.js";

// The rule is plain ESM that eslint.config.js loads from the source tree (it is not compiled).
type Violation = { from: string; to: string; test: boolean } | undefined;
const rule = (await import(pathToFileURL(join(REPO_ROOT, "tools/eslint-layers.mjs")).href)) as {
  violation: (file: string, spec: string) => Violation;
};
const check = rule.violation;

async function lintAs(path: string, code: string): Promise<string[]> {
  const eslint = new ESLint({ cwd: REPO_ROOT });
  const [result] = await eslint.lintText(code, { filePath: join(REPO_ROOT, path) });
  return (result?.messages ?? []).filter((m) => m.ruleId === "superfluid/layers").map((m) => m.message);
}

const cases: [string, string, string | undefined][] = [
  ["api/v1alpha1/x.ts", "../../lib/log.js", "lib"],
  ["lib/oci/x.ts", "../../operator/src/operator.js", "operator"],
  ["lib/oci/x.ts", "../../api/image-format.js", undefined],
  ["operator/src/x.ts", "../../cri-shim/src/shim.js", "cri-shim"],
  ["cri-shim/src/agent/x.ts", "../../../operator/src/queue.js", "operator"],
  ["cri-shim/src/agent/x.ts", "../../../e2e/cluster/shim.js", "e2e"],
  ["cri-shim/src/agent/x.test.ts", "../../../e2e/cluster/shim.js", undefined],
  ["cri-shim/src/agent/x.test.ts", "../../../operator/src/operator.js", "operator"],
  ["operator/test/world.ts", "../../e2e/harness/control-plane.js", undefined],
  ["cri-shim/src/x.ts", "../../bench/create.js", "bench"],
  ["e2e/cluster/x.ts", "../../bench/create.js", "bench"],
  ["bench/x.ts", "../e2e/harness/agent-bed.js", undefined],
  ["cri-shim/src/x.ts", "./services/containers.js", undefined],
  ["cri-shim/src/x.ts", "koffi", undefined],
];
for (const [file, spec, expected] of cases) {
  test(`layers: ${file} importing ${spec} is ${expected ? `refused (${expected}/)` : "allowed"}`, (t) => {
    t.is(check(join(REPO_ROOT, file), spec)?.to, expected);
  });
}

test("npm run lint fails on a deliberate violation and names the layers", async (t) => {
  const messages = await lintAs(
    "cri-shim/src/services/violation.ts",
    'import { WorkQueue } from "../../../operator/src/unikernelvm-controller.js";\nexport const q = WorkQueue;\n',
  );
  t.is(messages.length, 1);
  t.regex(messages[0] ?? "", /cri-shim\/ may not import operator\//);
  t.deepEqual(
    await lintAs(
      "cri-shim/src/services/fine.ts",
      'import { logger } from "../../../lib/log.js";\nexport const l = logger;\n',
    ),
    [],
  );
});

function sources(dir: string, out: string[] = []): string[] {
  for (const e of readdirSync(dir)) {
    if (e === "node_modules" || e === "dist") continue;
    const p = join(dir, e);
    if (statSync(p).isDirectory()) sources(p, out);
    else if (/\.[cm]?ts$/.test(e)) out.push(p);
  }
  return out;
}

test("no file of the tree crosses a layer", (t) => {
  const offenders: string[] = [];
  for (const top of ["api", "lib", "operator", "cri-shim", "e2e", "bench", "tools"])
    for (const file of sources(join(REPO_ROOT, top)))
      for (const m of readFileSync(file, "utf8").matchAll(
        /^\s*(?:import|export)[^"']*?from\s*["']([^"']+)["']/gm,
      ))
        if (check(file, m[1]!)) offenders.push(`${relative(REPO_ROOT, file)} -> ${m[1]}`);
  t.deepEqual(offenders, []);
});
