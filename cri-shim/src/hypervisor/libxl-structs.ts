// The libxl structs we read or write ourselves, laid out for koffi (mirrors of _libxl_types.h,
// libxl.h and libxl_event.h in Xen 4.17), with the TypeScript shape of the fields we read. Only small,
// stable structs are laid out; their sizes and offsets are checked against the real headers by
// layout.test.ts (which compiles layout-probe.c with gcc). The functions that take them are bound in
// libxl-ffi.ts.
import koffi from "koffi";

export const DominfoType = koffi.struct("libxl_dominfo", {
  uuid: koffi.array("uint8", 16, "Array"),
  domid: "uint32",
  ssidref: "uint32",
  ssid_label: "void *",
  running: "bool",
  blocked: "bool",
  paused: "bool",
  shutdown: "bool",
  dying: "bool",
  never_stop: "bool",
  shutdown_reason: "int",
  outstanding_memkb: "uint64",
  current_memkb: "uint64",
  shared_memkb: "uint64",
  paged_memkb: "uint64",
  max_memkb: "uint64",
  cpu_time: "uint64",
  vcpu_max_id: "uint32",
  vcpu_online: "uint32",
  cpupool: "uint32",
  gpaddr_bits: "uint8",
  domain_type: "int",
});

export interface Dominfo {
  uuid: number[];
  domid: number;
  running: boolean;
  blocked: boolean;
  paused: boolean;
  shutdown: boolean;
  dying: boolean;
  shutdown_reason: number;
  current_memkb: number | bigint;
  max_memkb: number | bigint;
  cpu_time: number | bigint;
  vcpu_online: number;
  vcpu_max_id: number;
  domain_type: number;
}

const DOMINFO_SIZE = koffi.sizeof(DominfoType);
const at = (field: string) => koffi.offsetof(DominfoType, field);
const OFF = {
  uuid: at("uuid"),
  domid: at("domid"),
  running: at("running"),
  blocked: at("blocked"),
  paused: at("paused"),
  shutdown: at("shutdown"),
  dying: at("dying"),
  shutdownReason: at("shutdown_reason"),
  currentMemkb: at("current_memkb"),
  maxMemkb: at("max_memkb"),
  cpuTime: at("cpu_time"),
  vcpuMaxId: at("vcpu_max_id"),
  vcpuOnline: at("vcpu_online"),
  domainType: at("domain_type"),
};

/** The bytes n libxl_dominfo structs take (what libxl_list_domain returns). */
export function dominfoBytes(n: number): number {
  return n * DOMINFO_SIZE;
}

/**
 * n libxl_dominfo structs read straight from their memory (`koffi.view` of libxl_list_domain's
 * array), only the fields Dominfo has. koffi.decode builds every field of every struct (the uuid as
 * an array, each uint64 through its own conversion): the shim lists all domains on every create and
 * every few seconds, and at a few hundred VMs that decode was one of the larger costs of its event
 * loop in an emulated dom0.
 */
export function readDominfos(memory: ArrayBuffer, n: number): Dominfo[] {
  const v = new DataView(memory);
  const bytes = new Uint8Array(memory);
  const out: Dominfo[] = new Array<Dominfo>(n);
  for (let i = 0; i < n; i++) {
    const b = i * DOMINFO_SIZE;
    out[i] = {
      uuid: Array.from(bytes.subarray(b + OFF.uuid, b + OFF.uuid + 16)),
      domid: v.getUint32(b + OFF.domid, true),
      running: bytes[b + OFF.running] !== 0,
      blocked: bytes[b + OFF.blocked] !== 0,
      paused: bytes[b + OFF.paused] !== 0,
      shutdown: bytes[b + OFF.shutdown] !== 0,
      dying: bytes[b + OFF.dying] !== 0,
      shutdown_reason: v.getInt32(b + OFF.shutdownReason, true),
      current_memkb: Number(v.getBigUint64(b + OFF.currentMemkb, true)),
      max_memkb: Number(v.getBigUint64(b + OFF.maxMemkb, true)),
      cpu_time: v.getBigUint64(b + OFF.cpuTime, true),
      vcpu_max_id: v.getUint32(b + OFF.vcpuMaxId, true),
      vcpu_online: v.getUint32(b + OFF.vcpuOnline, true),
      domain_type: v.getInt32(b + OFF.domainType, true),
    };
  }
  return out;
}

export const PhysinfoType = koffi.struct("libxl_physinfo", {
  threads_per_core: "uint32",
  cores_per_socket: "uint32",
  max_cpu_id: "uint32",
  nr_cpus: "uint32",
  cpu_khz: "uint32",
  total_pages: "uint64",
  free_pages: "uint64",
  scrub_pages: "uint64",
  outstanding_pages: "uint64",
  sharing_freed_pages: "uint64",
  sharing_used_frames: "uint64",
  max_possible_mfn: "uint64",
  nr_nodes: "uint32",
  hw_cap: koffi.array("uint32", 8, "Array"),
  cap_hvm: "bool",
  cap_pv: "bool",
  cap_hvm_directio: "bool",
  cap_hap: "bool",
  cap_shadow: "bool",
  cap_iommu_hap_pt_share: "bool",
  cap_vmtrace: "bool",
  cap_vpmu: "bool",
  cap_gnttab_v1: "bool",
  cap_gnttab_v2: "bool",
});

export interface Physinfo {
  nr_cpus: number;
  total_pages: number | bigint;
  free_pages: number | bigint;
  cap_pv: boolean;
  cap_hvm: boolean;
}

export const VersionInfoType = koffi.struct("libxl_version_info", {
  xen_version_major: "int",
  xen_version_minor: "int",
  xen_version_extra: "const char *",
  compiler: "const char *",
  compile_by: "const char *",
  compile_domain: "const char *",
  compile_date: "const char *",
  capabilities: "const char *",
  changeset: "const char *",
  virt_start: "uint64",
  pagesize: "int",
  commandline: "const char *",
  build_id: "const char *",
});

export interface VersionInfo {
  xen_version_major: number;
  xen_version_minor: number;
  xen_version_extra: string | null;
}

export const BitmapType = koffi.struct("libxl_bitmap", { size: "uint32", map: "void *" });

export const RestoreParamsType = koffi.struct("libxl_domain_restore_params", {
  checkpointed_stream: "int",
  stream_version: "uint32",
  colo_proxy_script: "void *",
  userspace_colo_proxy: "int", // libxl_defbool is struct { int val; }
});

export const ChildprocHooksType = koffi.struct("libxl_childproc_hooks", {
  chldowner: "int",
  fork_replacement: "void *",
  reaped_callback: "void *",
});
