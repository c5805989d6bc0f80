// CreateContainer's decisions, apart from its effects: whether the sandbox may take this container,
// and the container's record (its fixed metadata and first status) from the request, the sandbox,
// the image and the node's defaults. Pure: the caller reads the image and the kernel's boot modes.
import { join } from "node:path";
import { CriError } from "../errors.js";
import type { XenBootModes } from "./elf-notes.js";
import type { ContainerConfig } from "../proto.js";
import { decideGuestType, guestCmdline, guestMemoryMiB } from "./guest-config.js";
import type { ImageInfo } from "./image-backend.js";
import type { ContainerMeta, ContainerStatusRecord, SandboxMeta, SandboxNetwork } from "./model.js";

/** What the sandbox already holds, as far as the rule needs it. */
export interface Sibling {
  id: string;
  name: string;
  attempt: number;
  exited: boolean;
}

/**
 * A unikernel pod has one live container, and a name+attempt is never reused in a sandbox.
 * Throws AlreadyExists or FailedPrecondition, as the kubelet expects of a CRI runtime.
 */
export function checkSandboxTakes(
  sandboxId: string,
  md: { name: string; attempt: number },
  siblings: Sibling[],
): void {
  if (siblings.some((c) => c.name === md.name && c.attempt === md.attempt))
    throw new CriError(
      "AlreadyExists",
      `container ${md.name} attempt ${md.attempt} already exists in sandbox ${sandboxId}`,
    );
  const live = siblings.find((c) => !c.exited);
  if (live)
    throw new CriError(
      "FailedPrecondition",
      `sandbox ${sandboxId} already runs container ${live.id}: a unikernel pod has one container`,
    );
}

export interface ContainerPlanInput {
  id: string;
  createdAt: string;
  sandbox: Pick<SandboxMeta, "id" | "config" | "hostname" | "logDirectory" | "domainName">;
  network: SandboxNetwork;
  /** The request, its metadata already checked present. */
  config: ContainerConfig & { metadata: { name: string; attempt: number } };
  imageRef: string;
  image: Pick<ImageInfo, "id" | "repoDigests" | "config">;
  /** The kernel (and initrd) as the domain builder reads them, and the boot modes its ELF notes give. */
  kernels: { kernelPath: string; initrdPath?: string };
  bootModes: XenBootModes;
  /** The checked, relative log path of the request ("" for none). */
  logRel: string;
  defaults: { memoryMiB: number; vcpus: number };
}

/** The container's record as CreateContainer first writes it ("creating"). */
export function planContainer(p: ContainerPlanInput): { meta: ContainerMeta; status: ContainerStatusRecord } {
  const { sandbox: sb, config } = p;
  const meta: ContainerMeta = {
    id: p.id,
    sandboxId: sb.id,
    metadata: { name: config.metadata.name, attempt: config.metadata.attempt },
    image: { image: p.imageRef, annotations: { ...(config.image?.annotations ?? {}) } },
    imageRef: p.image.repoDigests[0] ?? p.image.id,
    imageId: p.image.id,
    labels: { ...config.labels },
    annotations: { ...config.annotations },
    logPath: p.logRel && sb.logDirectory ? join(sb.logDirectory, p.logRel) : "",
    createdAt: p.createdAt,
    domainName: sb.domainName,
    kernelPath: p.kernels.kernelPath,
    initrdPath: p.kernels.initrdPath,
    cmdline: guestCmdline(p.image.config.cmdline, config, sb, p.network),
    guestType: decideGuestType(sb.config.guestType ?? p.image.config.guestType, p.bootModes, p.imageRef),
  };
  const status: ContainerStatusRecord = {
    state: "creating",
    startedAt: "0",
    finishedAt: "0",
    exitCode: 0,
    reason: "",
    message: "",
    memoryMiB: guestMemoryMiB({
      annotated: sb.config.memoryMiB,
      image: p.image.config.memoryMiB,
      resources: config.linux?.resources,
      fallback: p.defaults.memoryMiB,
    }),
    vcpus: sb.config.vcpus ?? p.defaults.vcpus,
  };
  return { meta, status };
}
