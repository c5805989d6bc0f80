// DomainSpec -> the JSON form of libxl_domain_config (libxl_domain_config_from_json parses it).
// Building the config as JSON instead of laying out libxl_domain_config in memory keeps us free of
// the large, version-specific struct: libxl's own generated parser fills it, defaults included.
// Pure functions, so the mapping and the validation are table-tested on any host.
import { randomUUID } from "node:crypto";
import { access, constants as fsConstants } from "node:fs/promises";
import { isIPv4 } from "node:net";
import { isAbsolute } from "node:path";
import { HypervisorError, type DomainInfo, type DomainSpec, type VifSpec } from "./types.js";

/** Xen's limit on a guest command line (MAX_GUEST_CMDLINE). */
export const MAX_CMDLINE_BYTES = 1024;
/** XenStore caps domain names; 64 keeps `/local/domain/N/name` and log file names short and safe. */
export const MAX_NAME_LENGTH = 64;
export const MAX_VCPUS = 128;
/** 1 TiB: anything above is certainly a typo, not a guest. */
export const MAX_MEMORY_MIB = 1 << 20;

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const BRIDGE_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/;
const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function invalid(message: string): never {
  throw new HypervisorError(message, "InvalidArgument");
}

function checkPath(what: string, path: string): void {
  if (typeof path !== "string" || path.length === 0) invalid(`${what} path is empty`);
  if (!isAbsolute(path)) invalid(`${what} path must be absolute: ${JSON.stringify(path)}`);
  // A NUL would truncate the C string libxl sees; a newline would corrupt XenStore and log lines.
  if (/[\0\n\r]/.test(path)) invalid(`${what} path contains a control character: ${JSON.stringify(path)}`);
}

function checkCount(what: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    invalid(`${what} must be an integer in [${min}, ${max}], got ${JSON.stringify(value)}`);
  }
}

function checkVif(vif: VifSpec, index: number): void {
  if (!BRIDGE_RE.test(vif.bridge ?? ""))
    invalid(`vif ${index}: bad bridge name ${JSON.stringify(vif.bridge)}`);
  if (!MAC_RE.test(vif.mac ?? "")) invalid(`vif ${index}: bad MAC ${JSON.stringify(vif.mac)}`);
  // A multicast MAC (low bit of the first octet) would never receive unicast traffic.
  if (parseInt(vif.mac.slice(0, 2), 16) & 1) invalid(`vif ${index}: MAC ${vif.mac} is multicast`);
  if (vif.ip !== undefined && !isIPv4(vif.ip))
    invalid(`vif ${index}: bad IPv4 address ${JSON.stringify(vif.ip)}`);
  if (vif.gateway !== undefined && !isIPv4(vif.gateway))
    invalid(`vif ${index}: bad IPv4 gateway ${JSON.stringify(vif.gateway)}`);
}

/** The builder can read the kernel and initrd: said before any domain is made, with a clear error. */
export async function checkKernelFiles(spec: Pick<DomainSpec, "kernelPath" | "initrdPath">): Promise<void> {
  for (const [what, path] of [
    ["kernel", spec.kernelPath],
    ["initrd", spec.initrdPath],
  ] as const) {
    if (path === undefined) continue;
    await access(path, fsConstants.R_OK).catch(() => {
      throw new HypervisorError(`${what} file not readable: ${path}`, "InvalidArgument");
    });
  }
}

/** No domain holds `name` yet: the shim finds its domains by name. */
export async function checkNameFree(
  findByName: (name: string) => Promise<DomainInfo | undefined>,
  name: string,
): Promise<void> {
  if (await findByName(name))
    throw new HypervisorError(`a domain named ${name} already exists`, "InvalidArgument");
}

/** Throws HypervisorError("InvalidArgument") naming the first thing wrong with `spec`. */
export function validateDomainSpec(spec: DomainSpec): void {
  if (typeof spec !== "object" || spec === null) invalid("domain spec must be an object");
  if (typeof spec.name !== "string" || spec.name.length === 0) invalid("domain name is empty");
  if (spec.name.length > MAX_NAME_LENGTH) invalid(`domain name longer than ${MAX_NAME_LENGTH}: ${spec.name}`);
  if (!NAME_RE.test(spec.name))
    invalid(`domain name may hold only letters, digits, '_', '.', '-': ${JSON.stringify(spec.name)}`);
  // Tools treat an all-digit argument as a domid, so such a name could never be addressed by name.
  if (/^\d+$/.test(spec.name)) invalid(`domain name must not be all digits: ${spec.name}`);
  if (spec.name === "Domain-0") invalid("domain name Domain-0 is reserved");
  if (spec.uuid !== undefined && (!UUID_RE.test(spec.uuid) || /^[0-]+$/.test(spec.uuid)))
    invalid(`bad uuid ${JSON.stringify(spec.uuid)}`);
  checkPath("kernel", spec.kernelPath);
  if (spec.initrdPath !== undefined) checkPath("initrd", spec.initrdPath);
  if (typeof spec.cmdline !== "string") invalid("cmdline must be a string");
  if (spec.cmdline.includes("\0")) invalid("cmdline contains a NUL byte");
  const cmdlineBytes = Buffer.byteLength(spec.cmdline);
  if (cmdlineBytes >= MAX_CMDLINE_BYTES)
    invalid(`cmdline is ${cmdlineBytes} bytes; Xen takes at most ${MAX_CMDLINE_BYTES - 1}`);
  checkCount("memoryMiB", spec.memoryMiB, 1, MAX_MEMORY_MIB);
  if (spec.maxMemoryMiB !== undefined)
    checkCount("maxMemoryMiB", spec.maxMemoryMiB, spec.memoryMiB, MAX_MEMORY_MIB);
  checkCount("vcpus", spec.vcpus, 1, MAX_VCPUS);
  if (spec.maxVcpus !== undefined) checkCount("maxVcpus", spec.maxVcpus, spec.vcpus, MAX_VCPUS);
  if (spec.guestType !== "pv" && spec.guestType !== "pvh")
    invalid(`guestType must be "pv" or "pvh", got ${JSON.stringify(spec.guestType)}`);
  if (!Array.isArray(spec.vifs)) invalid("vifs must be an array");
  spec.vifs.forEach(checkVif);
  const macs = new Set(spec.vifs.map((v) => v.mac.toLowerCase()));
  if (macs.size !== spec.vifs.length) invalid("two vifs share a MAC address");
}

/** The subset of libxl_domain_config's JSON schema (libxl_types.idl) that we set. */
export interface LibxlDomainConfigJson {
  c_info: { type: "pv" | "pvh"; name: string; uuid: string; domid?: number };
  b_info: {
    max_vcpus: number;
    /** A libxl_bitmap in JSON is the list of its set bits. */
    avail_vcpus: number[];
    max_memkb: number;
    target_memkb: number;
    kernel: string;
    cmdline: string;
    ramdisk?: string;
    /** PVH: Xen's paging pool for the guest's HAP tables (outside the guest's memory). */
    shadow_memkb?: number;
    "type.pv"?: Record<string, never>;
    "type.pvh"?: Record<string, never>;
  };
  nics: {
    devid: number;
    backend_domid: 0;
    nictype: "vif";
    bridge: string;
    mac: string;
    ip?: string;
  }[];
}

/** How libxl builds a domain's devices, beyond the spec. */
export interface LibxlBuildOptions {
  /** The caller wires the vifs itself (XenStore entries, bridge, anti-spoofing): libxl makes none. */
  vifsByCaller?: boolean;
  /** The domid to build with (libxl's LIBXL_HAVE_CREATEINFO_DOMID), so that the caller knows it
   *  before the build returns; Xen picks one when unset. */
  domid?: number;
}

/**
 * The HAP paging pool of a PVH guest. libxl's default for a small guest is below what Xen 4.17
 * accepts (a 4-8 MiB hello failed with "Failed to set paging mempool size to 32kB: Cannot allocate
 * memory"): xl.cfg's documented default (1 MiB per vCPU + 8 KiB per MiB of RAM) plus 1 MiB.
 */
export function pvhPagingPoolKiB(vcpus: number, memoryMiB: number): number {
  return 1024 * (vcpus + 1) + 8 * memoryMiB;
}

/** Validates `spec` and maps it onto libxl_domain_config. */
export function domainConfig(spec: DomainSpec, opts: LibxlBuildOptions = {}): LibxlDomainConfigJson {
  validateDomainSpec(spec);
  if (opts.domid !== undefined && !(Number.isInteger(opts.domid) && opts.domid >= 1 && opts.domid < 0x7ff0))
    throw new HypervisorError(`domid must be 1..32751, got ${JSON.stringify(opts.domid)}`, "InvalidArgument");
  const maxVcpus = spec.maxVcpus ?? spec.vcpus;
  const b_info: LibxlDomainConfigJson["b_info"] = {
    max_vcpus: maxVcpus,
    avail_vcpus: Array.from({ length: spec.vcpus }, (_, i) => i),
    max_memkb: (spec.maxMemoryMiB ?? spec.memoryMiB) * 1024,
    target_memkb: spec.memoryMiB * 1024,
    kernel: spec.kernelPath,
    cmdline: spec.cmdline,
  };
  if (spec.initrdPath !== undefined) b_info.ramdisk = spec.initrdPath;
  // The keyed union u is written "type.<key>"; its presence is what sets b_info.type.
  b_info[spec.guestType === "pv" ? "type.pv" : "type.pvh"] = {};
  if (spec.guestType === "pvh")
    b_info.shadow_memkb = pvhPagingPoolKiB(maxVcpus, spec.maxMemoryMiB ?? spec.memoryMiB);
  return {
    // libxl does not make up a uuid (xl does): without one every domain would be all zeros.
    c_info: {
      type: spec.guestType,
      name: spec.name,
      uuid: (spec.uuid ?? randomUUID()).toLowerCase(),
      ...(opts.domid !== undefined ? { domid: opts.domid } : {}),
    },
    b_info,
    nics: (opts.vifsByCaller ? [] : spec.vifs).map((vif, devid) => ({
      devid,
      backend_domid: 0 as const,
      nictype: "vif" as const,
      bridge: vif.bridge,
      mac: vif.mac.toLowerCase(),
      ...(vif.ip !== undefined ? { ip: vif.ip } : {}),
    })),
  };
}

export function domainConfigJSON(spec: DomainSpec, opts: LibxlBuildOptions = {}): string {
  return JSON.stringify(domainConfig(spec, opts));
}
