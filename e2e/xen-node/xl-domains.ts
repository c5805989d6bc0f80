// Guest domains as `xl list -v` in a dom0 shows them, without Domain-0 and without the lean backend's
// pre-built shells (nameless domains whose Xen handle starts with the bytes "sf-shell"): a test that
// counts guests must not count the pool the shim keeps ready.
import { SHELL_UUID_PREFIX } from "../../cri-shim/src/hypervisor/xen-lean/sfxen-names.js";

export interface XlDomain {
  name: string;
  id: number;
  uuid: string;
}

/** The command whose output guestDomainsFromXl() reads. */
export const XL_LIST_VERBOSE = "xl list -v";

/** Parses `xl list -v` (Name ID Mem VCPUs State Time(s) UUID ...): every guest but the shells. */
export function guestDomainsFromXl(stdout: string): XlDomain[] {
  return stdout
    .split("\n")
    .slice(1)
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length >= 7 && f[0] !== "Domain-0")
    .map((f) => ({ name: f[0]!, id: Number(f[1]), uuid: f[6]! }))
    .filter((d) => !d.uuid.startsWith(SHELL_UUID_PREFIX));
}
