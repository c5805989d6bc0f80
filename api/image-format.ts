// The unikernel image format: which OCI annotations say "this image is a unikernel" and how they
// become one typed config. Three dialects are accepted — ours (superfluid.dev/unikernel.*), urunc's
// (com.urunc.unikernel.*) and Unikraft/KraftKit's (org.unikraft.kernel.*) — and parsed ONCE here, so
// the shim and the tools never look at raw annotation keys. See docs/image-format.md.
import { GUEST_TYPES, type GuestType } from "./v1alpha1/unikernelvm.js";

const P = "superfluid.dev/unikernel.";

/** Our keys. Written on the manifest (and mirrored into the config's Labels) by `npm run image -- build`. */
export const IMAGE_ANNOTATIONS = {
  /** Path of the kernel inside the image's layer, e.g. `unikernel/kernel`. Required. */
  kernel: `${P}kernel`,
  /** Path of the initrd inside the layer. Optional. */
  initrd: `${P}initrd`,
  /** Xen guest type: pv or pvh. Default pv. */
  guestType: `${P}guest-type`,
  /** Default guest memory in MiB (a pod's superfluid.dev/memory-mib overrides it). */
  memoryMiB: `${P}memory-mib`,
  /** Default kernel command line, before the pod's args and env. */
  cmdline: `${P}cmdline`,
  /** Must be "xen" when present: the only hypervisor superfluid runs. */
  hypervisor: `${P}hypervisor`,
} as const;

/** urunc's keys (github.com/urunc-dev/urunc, docs "annotations"; written by bunny/bima). */
export const URUNC_ANNOTATIONS = {
  binary: "com.urunc.unikernel.binary",
  cmdline: "com.urunc.unikernel.cmdline",
  hypervisor: "com.urunc.unikernel.hypervisor",
  unikernelType: "com.urunc.unikernel.unikernelType",
  unikernelVersion: "com.urunc.unikernel.unikernelVersion",
  initrd: "com.urunc.unikernel.initrd",
  block: "com.urunc.unikernel.block",
  blkMntPoint: "com.urunc.unikernel.blkMntPoint",
  useDMBlock: "com.urunc.unikernel.useDMBlock",
  mountRootfs: "com.urunc.unikernel.mountRootfs",
} as const;

/** Unikraft/KraftKit's keys (kraftkit oci/annotations.go). KraftKit puts kernel/initrd on layer descriptors. */
export const UNIKRAFT_ANNOTATIONS = {
  kernel: "org.unikraft.kernel.image",
  initrd: "org.unikraft.kernel.initrd",
  version: "org.unikraft.kernel.version",
  arch: "org.unikraft.kernel.arch",
  plat: "org.unikraft.kernel.plat",
  filesystem: "org.unikraft.filesystem",
} as const;

export type ImageDialect = "superfluid" | "urunc" | "unikraft";

/** What an image says about the unikernel it carries, whatever dialect it was written in. */
export interface UnikernelImageConfig {
  dialect: ImageDialect;
  hypervisor: "xen";
  guestType: GuestType;
  /** Relative path inside the unpacked layers (no leading "/", no ".."). */
  kernelPath: string;
  initrdPath?: string;
  /** Default command line; empty when the image has none. */
  cmdline: string;
  /** Default memory; undefined when the image does not say (the VM spec must). */
  memoryMiB?: number;
  /** The framework the image names (urunc's unikernelType, "unikraft"), for logs and events. */
  framework?: string;
}

/** Everything in an image that may carry annotations; the store gathers it from manifest and config. */
export interface ImageAnnotationSources {
  manifest?: Record<string, string>;
  /** Annotations of the layer descriptors, in manifest order (KraftKit puts its keys there). */
  layers?: Array<Record<string, string> | undefined>;
  /** The image config's config.Labels (bunny/bima write urunc keys as LABELs). */
  labels?: Record<string, string>;
  /** The image config's config.Cmd (Unikraft images carry their command line there). */
  cmd?: string[];
  architecture?: string;
  os?: string;
}

export class ImageFormatError extends Error {
  constructor(
    /** The annotation key at fault, or "" when the problem is that no key is present. */
    readonly key: string,
    message: string,
  ) {
    super(key ? `image annotation ${key}: ${message}` : `image format: ${message}`);
    this.name = "ImageFormatError";
  }
}

const MAX_CMDLINE = 1024; // Xen's MAX_GUEST_CMDLINE
const SUPPORTED_ARCHITECTURES = ["amd64", "x86_64"];

/** A path inside the image, made relative; anything that could leave the unpack root is refused. */
export function normalizeImagePath(key: string, raw: string): string {
  const trimmed = raw.trim();
  if (trimmed === "")
    throw new ImageFormatError(key, "is missing or empty (it must name a file in the image)");
  if (trimmed.includes("\0")) throw new ImageFormatError(key, "contains a NUL byte");
  const parts = trimmed.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.length === 0) throw new ImageFormatError(key, `${JSON.stringify(raw)} names no file`);
  if (parts.includes("..")) throw new ImageFormatError(key, `${JSON.stringify(raw)} must not contain ".."`);
  return parts.join("/");
}

function parseMemoryMiB(key: string, raw: string): number {
  if (!/^[0-9]+$/.test(raw.trim()))
    throw new ImageFormatError(key, `must be a whole number of MiB, got ${JSON.stringify(raw.slice(0, 40))}`);
  const n = Number(raw.trim());
  if (n < 1 || n > 64 * 1024) throw new ImageFormatError(key, `must be between 1 and 65536 MiB, got ${n}`);
  return n;
}

function parseGuestType(key: string, raw: string): GuestType {
  if (!(GUEST_TYPES as readonly string[]).includes(raw))
    throw new ImageFormatError(
      key,
      `guest type must be one of ${GUEST_TYPES.join(", ")}, got ${JSON.stringify(raw.slice(0, 40))}`,
    );
  return raw as GuestType;
}

function checkCmdline(key: string, cmdline: string): string {
  if (cmdline.length > MAX_CMDLINE)
    throw new ImageFormatError(key, `command line is ${cmdline.length} bytes, Xen allows ${MAX_CMDLINE}`);
  if (/[\0\n\r]/.test(cmdline))
    throw new ImageFormatError(key, "command line must be one line without NUL bytes");
  return cmdline;
}

function requireXen(key: string, value: string | undefined, alternatives: string): void {
  if (value === undefined) return;
  if (value.toLowerCase() !== "xen")
    throw new ImageFormatError(
      key,
      `hypervisor ${JSON.stringify(value.slice(0, 40))} is not supported: superfluid runs guests on Xen only (${alternatives})`,
    );
}

/** Manifest annotations win over layer annotations, which win over config labels. */
function merged(src: ImageAnnotationSources): Record<string, string> {
  const out: Record<string, string> = { ...(src.labels ?? {}) };
  for (const layer of src.layers ?? []) Object.assign(out, layer ?? {});
  Object.assign(out, src.manifest ?? {});
  return out;
}

/** A value that is present and non-empty (bunny writes "" for keys it does not use). */
function present(a: Record<string, string>, key: string): string | undefined {
  const v = a[key];
  return v === undefined || v === "" ? undefined : v;
}

/** Our guest-type and memory-mib keys, which also apply on top of the urunc and Unikraft dialects. */
function applyOurDefaults(config: UnikernelImageConfig, a: Record<string, string>): UnikernelImageConfig {
  const gt = present(a, IMAGE_ANNOTATIONS.guestType);
  if (gt !== undefined) config.guestType = parseGuestType(IMAGE_ANNOTATIONS.guestType, gt);
  const mem = present(a, IMAGE_ANNOTATIONS.memoryMiB);
  if (mem !== undefined) config.memoryMiB = parseMemoryMiB(IMAGE_ANNOTATIONS.memoryMiB, mem);
  return config;
}

function parseOurs(a: Record<string, string>): UnikernelImageConfig {
  const K = IMAGE_ANNOTATIONS;
  requireXen(K.hypervisor, a[K.hypervisor], "leave the key out or set it to xen");
  const config: UnikernelImageConfig = {
    dialect: "superfluid",
    hypervisor: "xen",
    guestType: "pv",
    kernelPath: normalizeImagePath(K.kernel, a[K.kernel] ?? ""),
    cmdline: checkCmdline(K.cmdline, a[K.cmdline] ?? ""),
  };
  const initrd = present(a, K.initrd);
  if (initrd !== undefined) config.initrdPath = normalizeImagePath(K.initrd, initrd);
  return applyOurDefaults(config, a);
}

function parseUrunc(a: Record<string, string>): UnikernelImageConfig {
  const K = URUNC_ANNOTATIONS;
  const hv = present(a, K.hypervisor);
  if (hv === undefined) throw new ImageFormatError(K.hypervisor, "is required by urunc's format and missing");
  requireXen(
    K.hypervisor,
    hv,
    "urunc's qemu, firecracker, cloud-hypervisor, hvt and spt monitors need KVM or seccomp",
  );
  const type = present(a, K.unikernelType);
  if (type === undefined)
    throw new ImageFormatError(K.unikernelType, "is required by urunc's format and missing");
  if (present(a, K.block) !== undefined)
    throw new ImageFormatError(
      K.block,
      "block-device root file systems are not supported; ship the root file system as an initrd",
    );
  const config: UnikernelImageConfig = {
    dialect: "urunc",
    hypervisor: "xen",
    guestType: "pv",
    kernelPath: normalizeImagePath(K.binary, a[K.binary] ?? ""),
    cmdline: checkCmdline(K.cmdline, a[K.cmdline] ?? ""),
    framework: type,
  };
  const initrd = present(a, K.initrd);
  if (initrd !== undefined) config.initrdPath = normalizeImagePath(K.initrd, initrd);
  return applyOurDefaults(config, a);
}

function parseUnikraft(a: Record<string, string>, src: ImageAnnotationSources): UnikernelImageConfig {
  const K = UNIKRAFT_ANNOTATIONS;
  requireXen(K.plat, present(a, K.plat), "build the kernel with `kraft build --plat xen`");
  const arch = present(a, K.arch);
  if (arch !== undefined && !SUPPORTED_ARCHITECTURES.includes(arch))
    throw new ImageFormatError(
      K.arch,
      `architecture ${JSON.stringify(arch.slice(0, 40))} is not supported, only x86_64`,
    );
  const config: UnikernelImageConfig = {
    dialect: "unikraft",
    hypervisor: "xen",
    guestType: "pv",
    kernelPath: normalizeImagePath(K.kernel, a[K.kernel] ?? ""),
    // KraftKit keeps the application's arguments in the image config's Cmd.
    cmdline: checkCmdline("config.Cmd", (src.cmd ?? []).join(" ")),
    framework: "unikraft",
  };
  const initrd = present(a, K.initrd);
  if (initrd !== undefined) config.initrdPath = normalizeImagePath(K.initrd, initrd);
  return applyOurDefaults(config, a);
}

/**
 * Turns an image's annotations into its unikernel config. Dialect precedence when several are
 * present: ours, then urunc, then Unikraft. Our guest-type and memory-mib keys also apply on top of
 * the other two dialects (neither can express them). Throws ImageFormatError naming the key at fault.
 */
export function parseImageAnnotations(src: ImageAnnotationSources): UnikernelImageConfig {
  if (
    src.architecture !== undefined &&
    src.architecture !== "" &&
    !SUPPORTED_ARCHITECTURES.includes(src.architecture)
  )
    throw new ImageFormatError(
      "",
      `image architecture ${JSON.stringify(src.architecture)} is not supported, only amd64`,
    );
  if (src.os !== undefined && src.os !== "" && src.os !== "linux")
    // linux is what OCI tooling writes for "no OS in particular"; anything else is somebody else's image.
    throw new ImageFormatError("", `image os ${JSON.stringify(src.os)} is not supported, only linux`);
  const a = merged(src);
  if (a[IMAGE_ANNOTATIONS.kernel] !== undefined) return parseOurs(a);
  if (a[URUNC_ANNOTATIONS.binary] !== undefined || a[URUNC_ANNOTATIONS.unikernelType] !== undefined)
    return parseUrunc(a);
  if (a[UNIKRAFT_ANNOTATIONS.kernel] !== undefined) return parseUnikraft(a, src);
  throw new ImageFormatError(
    "",
    `not a unikernel image: none of ${IMAGE_ANNOTATIONS.kernel}, ${URUNC_ANNOTATIONS.binary} or ${UNIKRAFT_ANNOTATIONS.kernel} is set on the manifest, its layers or the config labels`,
  );
}

/** The annotations `npm run image -- build` writes for a config (our dialect). */
export function imageAnnotationsFor(
  config: Omit<UnikernelImageConfig, "dialect" | "hypervisor" | "framework">,
): Record<string, string> {
  const out: Record<string, string> = {
    [IMAGE_ANNOTATIONS.kernel]: config.kernelPath,
    [IMAGE_ANNOTATIONS.guestType]: config.guestType,
    [IMAGE_ANNOTATIONS.hypervisor]: "xen",
  };
  if (config.initrdPath !== undefined) out[IMAGE_ANNOTATIONS.initrd] = config.initrdPath;
  if (config.cmdline !== "") out[IMAGE_ANNOTATIONS.cmdline] = config.cmdline;
  if (config.memoryMiB !== undefined) out[IMAGE_ANNOTATIONS.memoryMiB] = String(config.memoryMiB);
  return out;
}

/** The key that named the kernel (or initrd) in a dialect, for errors found after unpacking. */
export function pathAnnotationKey(dialect: ImageDialect, which: "kernel" | "initrd"): string {
  if (dialect === "urunc") return which === "kernel" ? URUNC_ANNOTATIONS.binary : URUNC_ANNOTATIONS.initrd;
  if (dialect === "unikraft")
    return which === "kernel" ? UNIKRAFT_ANNOTATIONS.kernel : UNIKRAFT_ANNOTATIONS.initrd;
  return which === "kernel" ? IMAGE_ANNOTATIONS.kernel : IMAGE_ANNOTATIONS.initrd;
}
