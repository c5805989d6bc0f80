// How a container's CRI view is derived from its record and its domain: the CRI state, and the exit
// code and reason a domain's end gives. Pure functions, shared by the CRI calls, the exit monitor and
// recovery.
import type { DomainInfo, ShutdownReason } from "../hypervisor/types.js";
import type { ContainerState } from "../proto.js";
import type { ContainerStatusRecord } from "./model.js";

export function criContainerState(s: ContainerStatusRecord): ContainerState {
  return (
    {
      creating: "CONTAINER_UNKNOWN",
      created: "CONTAINER_CREATED",
      running: "CONTAINER_RUNNING",
      exited: "CONTAINER_EXITED",
    } as const
  )[s.state];
}

/** Exit code and reason from how the domain ended: poweroff is success, a crash is not. */
export function exitFromShutdown(
  reason: ShutdownReason | undefined,
  state: DomainInfo["state"] | "gone",
): { exitCode: number; reason: string; message: string } {
  if (state === "gone")
    return { exitCode: 255, reason: "DomainLost", message: "the Xen domain disappeared outside the shim" };
  if (state === "crashed" || reason === "crash")
    return { exitCode: 139, reason: "Crashed", message: "the guest crashed" };
  if (reason === "watchdog")
    return { exitCode: 137, reason: "Watchdog", message: "the guest's watchdog fired" };
  if (reason === "reboot")
    return {
      exitCode: 0,
      reason: "Rebooted",
      message: "the guest asked for a reboot; the pod's restart policy decides",
    };
  return { exitCode: 0, reason: "Completed", message: "the guest powered off" };
}
