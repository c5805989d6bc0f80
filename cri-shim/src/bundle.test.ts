// The bundles `npm run build` writes for dom0 (scripts/build-bundle.mjs) still find what they load at
// run time outside themselves: koffi's native prebuilt (external, from node_modules) and the CRI
// proto (via REPO_ROOT). A module that starts reading a file relative to its own URL breaks here, on
// the host, rather than minutes into a Xen test.
import test from "ava";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { REPO_ROOT } from "../../lib/paths.js";
import { startUnitShim } from "./testing/unit-shim.js";

const exec = promisify(execFile);
const BUNDLE_DIR = join(REPO_ROOT, "dist", "bundle");
const SHIM = join(BUNDLE_DIR, "cri-shim.mjs");
const CRI_VERSION = join(BUNDLE_DIR, "cri-version.mjs");

/** Runs a bundle with node; resolves with its exit code and output instead of throwing on failure. */
async function runBundle(
  path: string,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  if (!existsSync(path)) throw new Error(`${path} is missing: run \`npm run build\` (it runs build:bundle)`);
  try {
    const r = await exec(process.execPath, [path, ...args], { timeout: 60_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === "number" ? e.code : -1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}

test("the bundled shim prints its flags", async (t) => {
  const r = await runBundle(SHIM, ["--help"]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /--socket PATH/);
});

test("the bundled shim loads libxenlight through the external koffi, and cleans up when it cannot open it", async (t) => {
  // The host is not dom0: libxl's own error message proves koffi loaded its prebuilt and the library.
  t.false(existsSync("/proc/xen/privcmd"), "this test expects a host without Xen");
  const dir = mkdtempSync(join(tmpdir(), "sf-bundle-"));
  try {
    const r = await runBundle(SHIM, [
      "--socket",
      join(dir, "cri.sock"),
      "--state-dir",
      join(dir, "state"),
      "--image-dir",
      join(dir, "images"),
      "--kernel-cache",
      join(dir, "kernels"),
      "--checkpoint-dir",
      join(dir, "checkpoints"),
    ]);
    t.not(r.code, 0);
    t.regex(r.stderr, /cannot open libxl .*libxl_ctx_alloc/s);
    t.false(existsSync(join(dir, "cri.sock")), "no socket left behind");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the bundled cri-version loads the CRI proto and asks a real CRI server for its version", async (t) => {
  const shim = await startUnitShim();
  try {
    const r = await runBundle(CRI_VERSION, [shim.socket, "30"]);
    t.is(r.code, 0, r.stderr);
    t.regex(r.stdout.trim(), /^superfluid \S+ \(CRI v1\)$/);
  } finally {
    await shim.dispose();
  }
  t.false(existsSync(shim.dir));
});

test("the bundled cri-version gives up on a socket nobody serves, with a reason", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "sf-bundle-"));
  try {
    const r = await runBundle(CRI_VERSION, [join(dir, "none.sock"), "2"]);
    t.is(r.code, 1);
    t.regex(r.stderr, /did not answer within 2 s/);
    t.deepEqual(readdirSync(dir), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
