// The project's layers, enforced by `npm run lint` (rule `superfluid/layers`):
//   api/  <-  lib/  <-  operator/, cri-shim/  <-  e2e/, bench/, tools/
// A layer imports only itself and the layers below it; operator/ and cri-shim/ meet only in api/.
// Test code (`*.test.ts`, and test support under a `test/` folder) may also import the test beds in
// e2e/ and the CLIs in tools/ it exercises, but never the other side (an operator test never imports
// the shim, nor a shim test the operator).
import { dirname, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** What each top-level folder may import, besides itself. */
export const ALLOWED = {
  api: [],
  lib: ["api"],
  operator: ["api", "lib"],
  "cri-shim": ["api", "lib"],
  e2e: ["api", "lib", "operator", "cri-shim"],
  bench: ["api", "lib", "operator", "cri-shim", "e2e"],
  tools: ["api", "lib", "operator", "cri-shim", "e2e"],
};

const TEST_EXTRA = ["e2e", "tools"];

function topLevel(absPath) {
  const rel = relative(ROOT, absPath);
  if (rel.startsWith("..")) return undefined;
  return rel.split(sep)[0];
}

function isTestCode(absPath) {
  const rel = relative(ROOT, absPath).split(sep);
  return /\.test\.[cm]?[jt]s$/.test(absPath) || rel.slice(1, -1).includes("test");
}

/** The layer a relative import from `file` lands in, or undefined when it stays outside the checked folders. */
export function violation(file, spec) {
  if (!spec.startsWith(".")) return undefined;
  const from = topLevel(file);
  if (!from || !(from in ALLOWED)) return undefined;
  const to = topLevel(resolve(dirname(file), spec));
  if (!to || to === from || !(to in ALLOWED)) return undefined;
  const allowed = [...ALLOWED[from], ...(isTestCode(file) ? TEST_EXTRA : [])];
  if (allowed.includes(to)) return undefined;
  return { from, to, test: isTestCode(file) };
}

const layers = {
  meta: {
    type: "problem",
    docs: { description: "a layer imports only itself and the layers below it" },
    schema: [],
    messages: {
      upward:
        "{{from}}/ may not import {{to}}/ ('{{spec}}'): layers are api <- lib <- operator, cri-shim <- e2e, bench, tools{{hint}}",
    },
  },
  create(context) {
    const file = context.filename ?? context.getFilename();
    const check = (node, source) => {
      if (!source || typeof source.value !== "string") return;
      const v = violation(file, source.value);
      if (!v) return;
      const hint =
        v.to === "e2e"
          ? "; a test bed used by benchmarks or tests lives in e2e/ and only tests may import it"
          : "";
      context.report({
        node,
        messageId: "upward",
        data: { from: v.from, to: v.to, spec: source.value, hint },
      });
    };
    return {
      ImportDeclaration: (node) => check(node, node.source),
      ExportNamedDeclaration: (node) => check(node, node.source),
      ExportAllDeclaration: (node) => check(node, node.source),
      ImportExpression: (node) => check(node, node.source.type === "Literal" ? node.source : undefined),
    };
  },
};

export default { rules: { layers } };
