// `npm run build:bundle` (part of `npm run build`): bundles the programs that run in dom0 into one
// ESM file each under dist/bundle/. Why: an emulated Xen node's dom0 reads the host's / over 9p, and
// under TCG Node resolving and reading the thousands of module files of @kubernetes/client-node,
// grpc, winston, ... one by one took 1-12 minutes to start the shim. One file is one read. On a real
// node the shim ships the same way, as one artifact in the DaemonSet image.
//
// Left outside the bundle: koffi, whose native prebuilt (.node) it locates relative to its own
// package, so it resolves from node_modules at run time (dist/bundle/ -> ../../node_modules).
// Files read at run time are found through lib/paths.ts's REPO_ROOT, which is two directories above
// both dist/lib/paths.js and dist/bundle/*.mjs, so it resolves the same bundled or not.
import { build } from "esbuild";
import { statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const OUT_DIR = join(ROOT, "dist", "bundle");

/** Output name (without .mjs) -> TypeScript entry. */
export const BUNDLES = {
  "cri-shim": "cri-shim/src/main.ts",
  // The node image's other program: the node agent's credentials for a shim under systemd.
  "node-agent-credentials": "tools/node-agent-credentials.ts",
  // ...and the installer the chart's node installer runs on the host (docs/node-install.md).
  "node-install": "tools/node-install.ts",
  // The operator's image (`npm run images`) carries this one file instead of node_modules.
  operator: "operator/src/main.ts",
  "cri-version": "e2e/cluster/cri-version.ts",
  "migration-cli": "cri-shim/src/migration/cli.ts",
  "create-dom0": "bench/create-dom0.ts",
  "density-dom0": "bench/density-dom0.ts",
  "libxl-selftest": "cri-shim/src/hypervisor/selftest.ts",
  "live-selftest": "cri-shim/src/hypervisor/live-selftest.ts",
  "lean-selftest": "cri-shim/src/hypervisor/xen-lean/selftest.ts",
  "lean-save-selftest": "cri-shim/src/hypervisor/xen-lean/save-selftest.ts",
};

// `node scripts/build-bundle.mjs cri-shim` builds only the named bundles (the shim's image has no e2e/).
const wanted = process.argv.slice(2);
const unknown = wanted.filter((name) => !(name in BUNDLES));
if (unknown.length > 0) {
  console.error(
    `[build:bundle] unknown bundle ${unknown.join(", ")}; known: ${Object.keys(BUNDLES).join(", ")}`,
  );
  process.exit(2);
}
const entries = Object.entries(BUNDLES).filter(([name]) => wanted.length === 0 || wanted.includes(name));

const started = Date.now();
const result = await build({
  absWorkingDir: ROOT,
  entryPoints: Object.fromEntries(entries.map(([name, src]) => [name, join(ROOT, src)])),
  outdir: OUT_DIR,
  outExtension: { ".js": ".mjs" },
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  sourcemap: true,
  external: ["koffi"],
  // The CommonJS dependencies (grpc, winston, ...) call require() for Node built-ins, which an ESM
  // file does not have: give them one.
  banner: {
    js: 'import { createRequire as __sfCreateRequire } from "node:module"; const require = __sfCreateRequire(import.meta.url);',
  },
  logLevel: "warning",
  metafile: true,
});
if (result.errors.length > 0) process.exit(1);
const sizes = Object.keys(result.metafile.outputs)
  .filter((f) => f.endsWith(".mjs"))
  .map((f) => `${f} ${(statSync(join(ROOT, f)).size / 1e6).toFixed(1)} MB`);
console.log(`[build:bundle] ${sizes.join(", ")} in ${Date.now() - started} ms`);
