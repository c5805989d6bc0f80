// What a unikernel gets from its pod: the kernel command line (image cmdline, CRI command/args, the
// VM's args and env, the pod's network), the memory it is built with, its guest type, and the
// domain all that makes at CreateContainer. Pure functions. Every word
// that did not come from the shim itself is checked here, the sandbox's too (they were checked when
// its annotations were parsed, but a record on disk may predate a rule): one word each, and none may
// set the network or host name the shim sets last.
import { reservedKeyProblem } from "../../../api/cmdline.js";
import type { DomainSpec, GuestType } from "../hypervisor/types.js";
import { invalid } from "../errors.js";
import type { ContainerConfig, LinuxContainerResources } from "../proto.js";
import type { ContainerMeta, SandboxMeta, SandboxNetwork } from "./model.js";
import type { XenBootModes } from "./elf-notes.js";
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

/** UpdateContainerResources' figures for a live domain: its memory limit, and vCPUs from the CPU quota. */
export function resizeFromResources(r: LinuxContainerResources): {
  memoryMiB: number | undefined;
  vcpus: number | undefined;
} {
  const quota = Number(r.cpu_quota),
    period = Number(r.cpu_period);
  return {
    memoryMiB: memoryFromResources(r),
    vcpus: quota > 0 && period > 0 ? Math.max(1, Math.ceil(quota / period)) : undefined,
  };
}

/**
 * The memory the domain is built with: the pod's superfluid.dev/memory-mib (the operator writes the
 * VM's one figure there, and the same figure as the guest-memory request the scheduler counted and
 * as the container's memory limit), else the image's default, else the container's memory limit,
 * else the node's default. A pod whose annotation and memory limit both speak and differ would be
 * counted for one size and built with another: refused, with both figures in the reason.
 */
export function guestMemoryMiB(figures: {
  annotated: number | undefined;
  image: number | undefined;
  resources: Pick<LinuxContainerResources, "memory_limit_in_bytes"> | null | undefined;
  fallback: number;
}): number {
  const limit = memoryFromResources(figures.resources);
  if (figures.annotated !== undefined && limit !== undefined && figures.annotated !== limit)
    throw invalid(
      `the pod's guest memory figures disagree: annotation superfluid.dev/memory-mib says ${figures.annotated} MiB, the container's memory limit says ${limit} MiB; the scheduler would count one and the domain get the other. Give both the same figure (a UnikernelVM's pod always does)`,
    );
  return figures.annotated ?? figures.image ?? limit ?? figures.fallback;
}

/**
 * PV or PVH: the pod's or image's `guestType`, checked against what the kernel's ELF notes offer.
 * A kernel whose notes cannot be read (compressed, not ELF64) is trusted as requested.
 */
export function decideGuestType(requested: GuestType, modes: XenBootModes, image: string): GuestType {
  if (modes.kind === "unknown") return requested;
  if (requested === "pvh" && !modes.pvh)
    throw invalid(
      `guestType "pvh" needs a kernel with a PVH entry (XEN_ELFNOTE_PHYS32_ENTRY); image ${image} has none (Xen notes: ${modes.noteTypes.join(",") || "none"})`,
    );
  if (requested === "pv" && !modes.pv)
    throw invalid(
      `guestType "pv" needs a kernel with a PV entry (XEN_ELFNOTE_ENTRY); image ${image} has none${modes.pvh ? '; it can boot as guestType "pvh"' : ""}`,
    );
  return requested;
}

/**
 * The domain CreateContainer builds: the container's kernel, command line and guest type, its sizes,
 * and one vif on the pod's bridge with the pod's MAC. The vif carries the pod's address only when
 * anti-spoofing guards it (the hypervisor then lets that address alone out of the vif).
 */
export function guestDomainSpec(
  meta: Pick<ContainerMeta, "domainName" | "kernelPath" | "initrdPath" | "cmdline" | "guestType">,
  size: { memoryMiB: number; vcpus: number },
  net: Pick<SandboxNetwork, "bridge" | "mac" | "ip">,
  antiSpoof: boolean,
): DomainSpec {
  return {
    name: meta.domainName,
    kernelPath: meta.kernelPath,
    initrdPath: meta.initrdPath,
    cmdline: meta.cmdline,
    memoryMiB: size.memoryMiB,
    vcpus: size.vcpus,
    guestType: meta.guestType,
    vifs: [{ bridge: net.bridge, mac: net.mac, ...(antiSpoof ? { ip: net.ip } : {}) }],
  };
}
