// The hypervisor selftests' shape: boot one emulated Xen node, run a script inside dom0 that prints
// one JSON report last on stdout, then assert on the report (and on `xl list` afterwards).
import test from "ava";
import { existsSync } from "node:fs";
import { startXenNode, type XenNode } from "../xen-node/index.js";

export async function runDom0Selftest<T>(
  node: Pick<XenNode, "exec">,
  cmd: string,
  timeoutMs: number,
): Promise<T> {
  const r = await node.exec(cmd, { timeoutMs });
  const last = r.stdout.trim().split("\n").pop() ?? "";
  if (!last.startsWith("{"))
    throw new Error(`selftest printed no report (exit ${r.code}): ${r.stderr.slice(-3000)}`);
  return JSON.parse(last) as T;
}

/**
 * Registers the before/after hooks of a selftest file: `files` must exist, a node named `name`
 * boots, `cmd(node)` runs in its dom0. Returns accessors for the report and the domain names `xl
 * list` showed after the script.
 */
export function dom0Selftest<T>(o: {
  name: string;
  files: string[];
  cmd: (node: XenNode) => string;
  timeoutMs: number;
  before?: { timeoutMs: number };
  onReport?: (report: T, log: (msg: string) => void) => void;
}): { report(): T; xlNames(): string[] } {
  let node: XenNode | undefined;
  let report: T | undefined;
  let xlList = "";
  test.before(async (t) => {
    t.timeout(o.before?.timeoutMs ?? 30 * 60_000);
    for (const f of o.files)
      if (!existsSync(f)) throw new Error(`${f} is missing: run \`make -C native\` and \`npm run build\``);
    node = await startXenNode({ name: o.name });
    report = await runDom0Selftest<T>(node, o.cmd(node), o.timeoutMs);
    o.onReport?.(report, (m) => t.log(m));
    xlList = (await node.exec("xl list")).stdout;
  });
  test.after.always(async () => {
    await node?.stop();
  });
  return {
    report() {
      if (!report) throw new Error("no selftest report");
      return report;
    },
    xlNames: () =>
      xlList
        .trim()
        .split("\n")
        .slice(1)
        .map((l) => l.split(/\s+/)[0]!),
  };
}
