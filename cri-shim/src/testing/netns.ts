// Node scripts run inside a network namespace a test made (`ip netns exec`), as ES modules: for
// tests that change a network for real without touching the host's.
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

/** Runs `script` (an ES module's text) with this node inside namespace `ns`; resolves with its stdout. */
export async function nodeInNetns(ns: string, script: string): Promise<string> {
  const { stdout } = await run("ip", [
    "netns",
    "exec",
    ns,
    process.execPath,
    "--input-type=module",
    "-e",
    script,
  ]);
  return stdout;
}
