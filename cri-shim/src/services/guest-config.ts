// What a unikernel gets from its pod: the kernel command line (image cmdline, CRI command/args, the
// VM's args and env, the pod's network) and the memory it is built with. Pure functions. Every word
// that did not come from the shim itself is checked here, the sandbox's too (they were checked when
// its annotations were parsed, but a record on disk may predate a rule): one word each, and none may
// set the network or host name the shim sets last.
import { reservedKeyProblem } from "../../../api/cmdline.js";
import { invalid } from "../errors.js";
import type { ContainerConfig, LinuxContainerResources } from "../proto.js";
import type { SandboxMeta, SandboxNetwork } from "./model.js";
import { checkCmdlineWord } from "./validate.js";

/** Xen's limit on a PV guest's command line. */
export const MAX_CMDLINE = 1024;

export function guestCmdline(
  imageCmdline: string | undefined,
  config: Pick<ContainerConfig, "command" | "args" | "envs">,
  sandbox: Pick<SandboxMeta, "config" | "hostname">,
  net: Pick<SandboxNetwork, "ip" | "prefixLength" | "gateway">,
): string {
  const words = [
    ...(imageCmdline ? imageCmdline.split(/\s+/).filter(Boolean) : []).map((w) => {
      const problem = reservedKeyProblem(w);
      if (problem)
        throw invalid(`the image's command line word ${JSON.stringify(w.slice(0, 80))} ${problem}`);
      return w;
    }),
    ...config.command.map((w) => checkCmdlineWord("command", w)),
    ...config.args.map((w) => checkCmdlineWord("args", w)),
    ...sandbox.config.args.map((w) => checkCmdlineWord("VM args", w)),
    ...Object.entries(sandbox.config.env).map(([k, v]) => checkCmdlineWord("VM env", `${k}=${v}`)),
    // The kubelet adds the API server's service variables to every container; a unikernel has no
    // use for them and they would take a quarter of Xen's 1024-byte command line.
    ...config.envs
      .filter((e) => !e.key.startsWith("KUBERNETES_"))
      .map((e) => checkCmdlineWord("env", `${checkCmdlineWord("env name", e.key)}=${e.value.toString()}`)),
    `ip=${net.ip}/${net.prefixLength}`,
    `gw=${net.gateway}`,
    ...(sandbox.hostname ? [`hostname=${sandbox.hostname}`] : []),
  ];
  const cmdline = words.join(" ");
  if (cmdline.length > MAX_CMDLINE)
    throw invalid(`kernel command line is ${cmdline.length} bytes; Xen allows ${MAX_CMDLINE}`);
  return cmdline;
}

export function memoryFromResources(
  r: Pick<LinuxContainerResources, "memory_limit_in_bytes"> | null | undefined,
): number | undefined {
  const bytes = Number(r?.memory_limit_in_bytes ?? 0);
  return bytes > 0 ? Math.ceil(bytes / (1024 * 1024)) : undefined;
}
