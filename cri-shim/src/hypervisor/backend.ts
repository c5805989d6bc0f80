// Which Xen backend a process on the node uses, in one place: the shim (--hypervisor, or
// SUPERFLUID_HYPERVISOR) and the dom0 tools beside it (migration cli) default to the same one.
// Imports nothing, so main.ts can read it before the logger loads.
export type HypervisorKind = "lean" | "libxl";

/** The domain builder when neither --hypervisor nor SUPERFLUID_HYPERVISOR says. */
export const DEFAULT_HYPERVISOR: HypervisorKind = "lean";
