// What a failed scenario prints about its cluster: events, the VMs and pods described, the operator,
// and per node the kubelet's log, `xl list` and the shim's log. CI shows only the tail of a run's
// output, so the most telling part goes last (the shim's log: every create, start, exit and refused
// call), and the kubelet's log loses lines that repeat every few seconds whatever the test does.
// With SUPERFLUID_E2E_KEEP_LOGS=<dir>, the whole shim and kubelet logs are copied there as well.
import { copyFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import type { CommandResult } from "../harness/control-plane.js";
import type { Kubelet } from "./kubelet.js";
import type { Operator } from "./operator.js";
import type { Shim } from "./shim.js";

/**
 * Kubelet lines that say nothing about a test: its eviction manager and CRI stats provider failing
 * every 10 s to find the device under the shim's image directory (ImageFsInfo's mountpoint, for which
 * cAdvisor in the emulated dom0 has no filesystem info).
 */
const KUBELET_NOISE = [
  /eviction_manager\.go:\d+\] "Eviction manager: failed to (synchronize|get HasDedicatedImageFs)"/,
  /cri_stats_provider\.go:\d+\] "Failed to get the info of the filesystem with mountpoint"/,
];

/** The kubelet's log without the periodic lines above; says how many it dropped. */
export function quietKubeletLog(text: string): string {
  let dropped = 0;
  const kept = text.split("\n").filter((l) => {
    const noise = KUBELET_NOISE.some((re) => re.test(l));
    if (noise) dropped++;
    return !noise;
  });
  return dropped === 0
    ? kept.join("\n")
    : `(${dropped} periodic filesystem-info lines left out)\n${kept.join("\n")}`;
}

export interface DiagnosedNode {
  readonly xen: { readonly name: string; exec(cmd: string): Promise<CommandResult> };
  readonly shim: Pick<Shim, "log" | "logPath">;
  readonly kubelet: Pick<Kubelet, "log" | "logPath">;
  readonly containerd?: { log(lines?: number): string } | undefined;
}

export async function collectDiagnostics(
  kubectl: (args: string[]) => Promise<CommandResult>,
  nodes: readonly DiagnosedNode[],
  operator: Operator | undefined,
  namespace: string,
  keepLogsIn = process.env.SUPERFLUID_E2E_KEEP_LOGS,
): Promise<string> {
  const out: string[] = [];
  const section = (title: string, body: string) => out.push(`===== ${title}\n${body.trim()}`);
  const run = async (title: string, args: string[]) => {
    const r = await kubectl(args);
    section(title, r.stdout + r.stderr);
  };
  await run("events", ["get", "events", "-A", "--sort-by=.lastTimestamp"]);
  await run("describe uvm", ["describe", "uvm", "-n", namespace]);
  await run("describe pods", ["describe", "pods", "-n", namespace]);
  await run("nodes", ["get", "nodes", "-o", "wide"]);
  if (operator) section("operator log", operator.log(80));
  for (const n of nodes) {
    // The last 400 lines, of which the noise takes most on an idle node.
    section(
      `kubelet log (${n.xen.name})`,
      quietKubeletLog(n.kubelet.log(400)).split("\n").slice(-80).join("\n"),
    );
    if (n.containerd) section(`containerd log (${n.xen.name})`, n.containerd.log(60));
    const xl = await n.xen.exec("xl list").catch((e: Error) => ({ stdout: "", stderr: e.message }));
    section(`xl list (${n.xen.name})`, xl.stdout + xl.stderr);
    section(`shim log (${n.xen.name})`, n.shim.log(80));
    if (keepLogsIn) out.push(keepLogs(keepLogsIn, n));
  }
  return out.join("\n");
}

/** Copies the node's whole shim and kubelet logs into dir; says where (or why not). */
function keepLogs(dir: string, n: DiagnosedNode): string {
  try {
    mkdirSync(dir, { recursive: true });
    const stamp = new Date().toISOString().replace(/[:.]/g, "-");
    const shim = join(dir, `${n.xen.name}-${stamp}-shim.log`);
    const kubelet = join(dir, `${n.xen.name}-${stamp}-kubelet.log`);
    copyFileSync(n.shim.logPath, shim);
    copyFileSync(n.kubelet.logPath, kubelet);
    return `===== whole logs of ${n.xen.name} kept: ${shim}, ${kubelet}`;
  } catch (err) {
    return `===== the logs of ${n.xen.name} could not be kept in ${dir}: ${String(err)}`;
  }
}
