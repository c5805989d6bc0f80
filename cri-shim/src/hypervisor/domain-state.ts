// Pure mappings from libxl's view of a domain to ours, and the domid guards; table-tested.
import { ERROR_DOMAIN_NOTFOUND, ERROR_INVAL, ERROR_NOMEM, ERROR_NOTFOUND } from "./libxl-ffi.js";
import type { Dominfo } from "./libxl-structs.js";
import { type DomainState, HypervisorError, type ShutdownReason } from "./types.js";

const SHUTDOWN_REASONS: Record<number, ShutdownReason> = {
  0: "poweroff",
  1: "reboot",
  2: "suspend",
  3: "crash",
  4: "watchdog",
  5: "soft_reset",
};

export function stateOf(d: Dominfo): { state: DomainState; shutdownReason?: ShutdownReason } {
  if (d.dying) return { state: "dying" };
  if (d.shutdown) {
    const reason = SHUTDOWN_REASONS[d.shutdown_reason];
    return {
      state: reason === "crash" ? "crashed" : "shutdown",
      ...(reason ? { shutdownReason: reason } : {}),
    };
  }
  if (d.paused) return { state: "paused" };
  if (d.blocked) return { state: "blocked" };
  return { state: "running" };
}

const HEX = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, "0"));

/** 16 bytes as 8-4-4-4-12 hex (run for every domain of every list: a table, not 16 closures). */
export function formatUuid(bytes: number[]): string {
  let s = "";
  for (let i = 0; i < 16; i++) {
    if (i === 4 || i === 6 || i === 8 || i === 10) s += "-";
    s += HEX[(bytes[i] ?? 0) & 0xff];
  }
  return s;
}

export function checkDomid(domid: number): void {
  if (!Number.isInteger(domid) || domid < 0 || domid >= 0x7ff0)
    throw new HypervisorError(`not a domain id: ${JSON.stringify(domid)}`, "InvalidArgument");
}

/** Guards the calls that would take dom0 (and the shim with it) down. */
export function checkGuestDomid(domid: number, op: string): void {
  checkDomid(domid);
  if (domid === 0) throw new HypervisorError(`refusing to ${op} domain 0`, "InvalidArgument");
}

/** The HypervisorError code for a libxl return code (ERROR_FAIL needs a look at the domain). */
export function errorCodeFor(rc: number): HypervisorError["code"] {
  if (rc === ERROR_DOMAIN_NOTFOUND || rc === ERROR_NOTFOUND) return "NotFound";
  if (rc === ERROR_NOMEM) return "OutOfMemory";
  if (rc === ERROR_INVAL) return "InvalidArgument";
  return "Failed";
}
