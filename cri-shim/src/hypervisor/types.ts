// The hypervisor interface the CRI services and the node agent use. One file per backend lives
// beside it (xen-libxl.ts: koffi bindings to libxenlight/libxenstore/libxenstat in dom0).
// The CRI lifecycle maps onto it as follows:
//   RunPodSandbox   -> network and a memory reservation (no domain yet: the image may not be pulled)
//   CreateContainer -> createPaused(): the domain is built with kernel + cmdline, left paused
//   StartContainer  -> unpause(): the cheapest possible step, so start latency is just scheduling
//   StopContainer   -> shutdown("poweroff"), then destroy() after the grace period

export type GuestType = "pv" | "pvh";

export interface VifSpec {
  /** dom0 bridge the vif joins. */
  bridge: string;
  mac: string;
  /** The guest's IP, for the hotplug script's anti-spoofing and for logging. */
  ip?: string;
  /**
   * The default gateway the guest was told at boot. Not libxl's: it travels with the domain's spec in
   * a migration, so the target knows the guest's network from structured fields and never reads it
   * back out of the kernel command line (which holds the tenant's words too).
   */
  gateway?: string;
}

export interface DomainSpec {
  /** Unique Xen domain name; the shim uses `sf-<sandbox id prefix>`. */
  name: string;
  /** Xen's handle for the domain; a random one when absent. */
  uuid?: string;
  kernelPath: string;
  initrdPath?: string;
  cmdline: string;
  memoryMiB: number;
  /** Ceiling for setMemory() growth (Xen's maxmem); defaults to memoryMiB. */
  maxMemoryMiB?: number;
  vcpus: number;
  /** Ceiling for setVcpus() (vcpus beyond `vcpus` start offline); defaults to vcpus. */
  maxVcpus?: number;
  guestType: GuestType;
  vifs: VifSpec[];
}

export type DomainState = "running" | "blocked" | "paused" | "shutdown" | "crashed" | "dying";
export type ShutdownReason = "poweroff" | "reboot" | "suspend" | "crash" | "watchdog" | "soft_reset";

export interface DomainInfo {
  domid: number;
  name: string;
  uuid: string;
  state: DomainState;
  /** Set when state is "shutdown" or "crashed". */
  shutdownReason?: ShutdownReason;
  memoryKiB: number;
  maxMemoryKiB: number;
  vcpus: number;
  /** The most vcpus setVcpus() can bring online (Xen's max_vcpus). */
  maxVcpus?: number;
  cpuTimeNs: bigint;
}

/** Usage counters of one domain (libxenstat), for the CRI's stats calls. */
export interface DomainStats {
  domid: number;
  /** When the snapshot was taken (ms since the epoch). */
  timestampMs: number;
  cpuTimeNs: bigint;
  memoryBytes: number;
  maxMemoryBytes: number;
  vcpus: number;
  /** One per vif, counted from dom0's side of the vif (rx = what the guest sent). */
  networks: {
    devid: number;
    rxBytes: number;
    rxPackets: number;
    rxErrors: number;
    rxDrops: number;
    txBytes: number;
    txPackets: number;
    txErrors: number;
    txDrops: number;
  }[];
}

export interface HostInfo {
  totalMemoryKiB: number;
  freeMemoryKiB: number;
  cpus: number;
  xenVersion: string;
}

export interface RestoreOptions {
  paused?: boolean;
  /** Called once, when the domain exists with its devices and waits only for the stream (a
   *  migration target tells its source to stop the guest then); a backend that cannot tell calls
   *  it at once. Not called when the restore fails first. */
  onPrepared?: () => void;
}

export interface Hypervisor {
  readonly name: string;
  host(): Promise<HostInfo>;
  list(): Promise<DomainInfo[]>;
  /** Undefined when no such domain exists. */
  info(domid: number): Promise<DomainInfo | undefined>;
  findByName(name: string): Promise<DomainInfo | undefined>;
  /** Builds the domain with its kernel loaded and leaves it paused. Returns its id. */
  createPaused(spec: DomainSpec): Promise<number>;
  /**
   * After a restart: takes over a domain an earlier process of the shim built, finishing what that
   * process had in flight for it (the lean backend's vif attach, which unpause() then waits for).
   * `vifs` are the domain's, in devid order. Nothing to do for a backend that keeps no such state.
   */
  adopt(domid: number, vifs: VifSpec[]): Promise<void>;
  unpause(domid: number): Promise<void>;
  pause(domid: number): Promise<void>;
  /** Asks the guest (XenStore control/shutdown); does not wait. */
  shutdown(domid: number, reason: "poweroff" | "reboot"): Promise<void>;
  destroy(domid: number): Promise<void>;
  setMemory(domid: number, memoryMiB: number): Promise<void>;
  setVcpus(domid: number, vcpus: number): Promise<void>;
  /** Suspends the domain and writes its state to `fd` (a file or a socket); the domain is gone after. */
  save(domid: number, fd: number, opts?: { live?: boolean }): Promise<void>;
  /** Restores a domain from `fd`; `paused` leaves it paused. Returns the new domain id. */
  restore(spec: DomainSpec, fd: number, opts?: RestoreOptions): Promise<number>;
  /** Live migration's source half: writes the domain's state to `fd` (with live, libxl's pre-copy
   *  while the guest runs, then the final suspended round) and leaves the domain SUSPENDED, not
   *  destroyed, so resumeSuspended() can bring it back if the target fails. */
  migrateOut(domid: number, fd: number, opts: { live: boolean }): Promise<void>;
  /** Resumes a domain that migrateOut() left suspended (libxl_domain_resume, suspend_cancel=1: the
   *  guest continues as the same domain). A domain that is not suspended is left as it is. */
  resumeSuspended(domid: number): Promise<void>;
  /** Usage counters; undefined when no such domain exists. Optional: not every backend has them. */
  stats?(domid: number): Promise<DomainStats | undefined>;
  /**
   * Calls `onEvent` whenever a domain may have shut down, crashed or gone (what the exit monitor
   * would otherwise poll for); `onEnd` when events stop coming (then only polling is left).
   * Resolves to a function that stops the watch. Optional: a backend without it is polled.
   */
  watchDomainEvents?(onEvent: () => void, onEnd: (why: string) => void): Promise<() => void>;
  /** The pty of the domain's console, for reading its output. */
  consolePath(domid: number): Promise<string>;
  close(): Promise<void>;
}

export class HypervisorError extends Error {
  constructor(
    message: string,
    readonly code: "NotFound" | "OutOfMemory" | "InvalidArgument" | "Failed" = "Failed",
  ) {
    super(message);
    this.name = "HypervisorError";
  }
}
