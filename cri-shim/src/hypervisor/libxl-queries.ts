// The read-only side of the Xen backend: the host's figures and the domains libxl lists, as
// functions over libxl's bindings and one ctx. XenLibxl answers the Hypervisor's queries with them
// and asks them for its own checks (does that name exist, is there memory, is this domid gone).
//
// libxlFailure is here too: it turns a failed call's rc into a HypervisorError with libxl's reason,
// and to tell an unknown domid from another failure it asks domainInfo.
import koffi from "koffi";
import {
  type CPointer,
  ERROR_DOMAIN_NOTFOUND,
  type LibxlBindings,
  cAlloc,
  cFree,
  decode,
  libxlErrorName,
  takeCString,
  toBigInt,
  toNumber,
} from "./libxl-ffi.js";
import type { LibxlLogCapture } from "./libxl-log.js";
import {
  type Dominfo,
  DominfoType,
  dominfoBytes,
  readDominfos,
  type Physinfo,
  PhysinfoType,
  type VersionInfo,
  VersionInfoType,
} from "./libxl-structs.js";
import { checkDomid, errorCodeFor, formatUuid, stateOf } from "./domain-state.js";
import { type DomainInfo, type HostInfo, HypervisorError } from "./types.js";
import type { DomainNameCache } from "./domain-names.js";

const PAGE_KIB = 4;

/** libxl's bindings, the ctx they run against, and its log (for the reason of a failed call). */
export interface Libxl {
  readonly lib: LibxlBindings;
  readonly ctx: CPointer;
  readonly libxlLog: LibxlLogCapture;
  /** Names already read from XenStore, by domid and uuid. */
  readonly names: DomainNameCache;
}

/** The error for a libxl call that returned `rc`, with what libxl logged since `mark`. */
export async function libxlFailure(
  x: Libxl,
  op: string,
  domid: number | undefined,
  rc: number,
  mark: number,
): Promise<HypervisorError> {
  const detail = x.libxlLog.since(mark).filter((l) => /error|critical/i.test(l));
  const what = `${op}${domid !== undefined ? ` (domain ${domid})` : ""} failed: ${libxlErrorName(rc)}${detail.length ? `: ${detail.join("; ")}` : ""}`;
  let code = errorCodeFor(rc);
  // libxl says ERROR_FAIL for an unknown domid in most calls (the hypercall's ESRCH is flattened).
  if (code === "Failed" && domid !== undefined && (await domainInfo(x, domid)) === undefined)
    code = "NotFound";
  return new HypervisorError(what, code);
}

export async function hostInfo(x: Libxl): Promise<HostInfo> {
  const buf = cAlloc(koffi.sizeof(PhysinfoType));
  try {
    x.lib.physinfoInit.sync(buf);
    const mark = x.libxlLog.mark();
    const rc = await x.lib.getPhysinfo.async(x.ctx, buf);
    if (rc !== 0) throw await libxlFailure(x, "get physinfo", undefined, rc, mark);
    const phys = decode<Physinfo>(buf, PhysinfoType);
    x.lib.physinfoDispose.sync(buf);
    const versionPtr = await x.lib.getVersionInfo.async(x.ctx);
    // libxl owns the version struct (cached in the ctx); only read it.
    const v = versionPtr === null ? undefined : decode<VersionInfo>(versionPtr, VersionInfoType);
    return {
      totalMemoryKiB: toNumber(phys.total_pages) * PAGE_KIB,
      freeMemoryKiB: toNumber(phys.free_pages) * PAGE_KIB,
      cpus: phys.nr_cpus,
      xenVersion: v ? `${v.xen_version_major}.${v.xen_version_minor}${v.xen_version_extra ?? ""}` : "unknown",
    };
  } finally {
    cFree(buf);
  }
}

function toDomainInfo(d: Dominfo, uuid: string, name: string): DomainInfo {
  return {
    domid: d.domid,
    name,
    uuid,
    ...stateOf(d),
    memoryKiB: toNumber(d.current_memkb),
    maxMemoryKiB: toNumber(d.max_memkb),
    vcpus: d.vcpu_online,
    maxVcpus: d.vcpu_max_id + 1,
    cpuTimeNs: toBigInt(d.cpu_time),
  };
}

/** Domain infos with their names: cached ones as they are, the others read from XenStore. */
async function named(x: Libxl, infos: Dominfo[]): Promise<DomainInfo[]> {
  const keyed = infos.map((d) => ({ domid: d.domid, uuid: formatUuid(d.uuid) }));
  const names = await x.names.names(keyed, async (domid) =>
    takeCString(x.lib, await x.lib.domidToName.async(x.ctx, domid)),
  );
  return infos.map((d, i) => toDomainInfo(d, keyed[i]!.uuid, names[i]!));
}

/**
 * A whole list's domains with their names (the cache keeps only names of domains in it). The lean
 * backend hands its own list (one hypercall: sfx_list_domains) to this.
 */
export function namedList(x: Libxl, infos: Dominfo[]): Promise<DomainInfo[]> {
  x.names.retain(infos.map((d) => d.domid));
  return named(x, infos);
}

/** Every domain, libxl's way (libxl_list_domain: one hypercall and one more per domain), named. */
export async function listDomains(x: Libxl): Promise<DomainInfo[]> {
  const countOut = cAlloc(4);
  try {
    const arr = await x.lib.listDomain.async(x.ctx, countOut);
    if (arr === null) throw new HypervisorError("libxl_list_domain failed");
    const n = decode<number>(countOut, "int");
    let infos: Dominfo[];
    try {
      infos = n > 0 ? readDominfos(koffi.view(arr, dominfoBytes(n)), n) : [];
    } finally {
      x.lib.dominfoListFree.sync(arr, n);
    }
    return await namedList(x, infos);
  } finally {
    cFree(countOut);
  }
}

/** The domain with this domid, or undefined when there is none. */
export async function domainInfo(x: Libxl, domid: number): Promise<DomainInfo | undefined> {
  checkDomid(domid);
  const buf = cAlloc(koffi.sizeof(DominfoType));
  try {
    x.lib.dominfoInit.sync(buf);
    const rc = await x.lib.domainInfo.async(x.ctx, buf, domid);
    if (rc === ERROR_DOMAIN_NOTFOUND) {
      x.names.forget(domid);
      return undefined;
    }
    if (rc !== 0) throw new HypervisorError(`domain info (domain ${domid}) failed: ${libxlErrorName(rc)}`);
    const d = decode<Dominfo>(buf, DominfoType);
    x.lib.dominfoDispose.sync(buf);
    return (await named(x, [d]))[0]!;
  } finally {
    cFree(buf);
  }
}

/**
 * The domain with this name, or undefined (also for a name no domain could have). From the list
 * with cached names: libxl_name_to_domid reads every domain's name from XenStore on each call, which
 * made every create slower by the number of VMs already running.
 */
export async function findDomainByName(x: Libxl, name: string): Promise<DomainInfo | undefined> {
  if (typeof name !== "string" || name.length === 0 || name.includes("\0")) return undefined;
  return (await listDomains(x)).find((d) => d.name === name);
}
