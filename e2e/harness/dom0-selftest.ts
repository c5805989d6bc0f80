// Runs a selftest script inside dom0 and returns the JSON report it prints last on stdout (the
// convention of the hypervisor selftests: one object, the test asserts on it).
import type { Dom0 } from "./migration-bed.js";

export async function runDom0Selftest<T>(
  node: Pick<Dom0, "exec">,
  cmd: string,
  timeoutMs: number,
): Promise<T> {
  const r = await node.exec(cmd, { timeoutMs });
  const last = r.stdout.trim().split("\n").pop() ?? "";
  if (!last.startsWith("{"))
    throw new Error(`selftest printed no report (exit ${r.code}): ${r.stderr.slice(-3000)}`);
  return JSON.parse(last) as T;
}
