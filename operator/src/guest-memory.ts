// The one guest-memory figure of a VM's pod, as a pure rule chain: the spec's, else the figure the
// VM's current pod was made with, else the image's default as the operator read it from the
// registry, else the CRD's default. The pod carries it three times (desired.ts: the guest-memory
// request and limit, the memory-mib annotation the shim builds the domain with, the memory limit the
// shim checks the annotation against), so the scheduler, the shim's reservation and the domain agree.
import { ANNOTATIONS, type UnikernelVM } from "../../api/index.js";
import { DEFAULT_MEMORY_MIB, memoryMiB } from "./desired.js";

/** What the operator learned about an image's default memory (image-defaults.ts). */
export type ImageLookup =
  /** Read: the image's superfluid.dev/unikernel.memory-mib, undefined when it names none. */
  | { state: "read"; memoryMiB?: number }
  /** Not read (unreachable registry, private image, not a unikernel image): why. */
  | { state: "unread"; reason: string };

export interface GuestMemory {
  mib: number;
  source: "spec" | "pod" | "image" | "default";
  /** Set when the figure is the default only because the image could not be read. */
  warning?: string;
}

/** The memory-mib annotation of a pod, when it is a whole positive number. */
export function podMemoryMiB(annotations: Record<string, string> | undefined): number | undefined {
  const raw = annotations?.[ANNOTATIONS.memoryMiB];
  return raw !== undefined && /^[1-9]\d{0,6}$/.test(raw) ? Number(raw) : undefined;
}

/**
 * The rules, first match wins:
 * 1. spec.memory;
 * 2. the current pod's figure: a pod's resources cannot change, and an image whose default moved
 *    (a re-pushed tag) must not make the operator want a pod the apiserver would refuse;
 * 3. the image's default, when it was read and names one;
 * 4. the default (16 MiB), with a warning when the image could not be read.
 */
export function resolveGuestMemory(vm: UnikernelVM, image?: ImageLookup, podMiB?: number): GuestMemory {
  const spec = memoryMiB(vm);
  if (spec !== undefined) return { mib: spec, source: "spec" };
  if (podMiB !== undefined) return { mib: podMiB, source: "pod" };
  if (image?.state === "read" && image.memoryMiB !== undefined)
    return { mib: image.memoryMiB, source: "image" };
  if (image?.state === "unread")
    return {
      mib: DEFAULT_MEMORY_MIB,
      source: "default",
      warning: `could not read the default memory of image ${vm.spec.image} (${image.reason}); the VM gets ${DEFAULT_MEMORY_MIB} MiB: set spec.memory`,
    };
  return { mib: DEFAULT_MEMORY_MIB, source: "default" };
}
