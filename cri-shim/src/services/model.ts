// What the shim remembers about sandboxes and containers, split per the store's rule: metadata is
// fixed at creation, status is what changes. Everything here is plain JSON (it is persisted).
import type { SandboxConfig } from "../../../api/annotations.js";
import type { DomainInfo, GuestType } from "../hypervisor/types.js";
import type { PodSandboxMetadata, StringMap, Int64, ContainerMetadata, ImageSpec } from "../proto.js";
import type { Store } from "../store/store.js";

export interface SandboxMeta {
  id: string;
  metadata: PodSandboxMetadata;
  /** name/namespace/uid/attempt, unique among live sandboxes (the kubelet's reservation key). */
  nameKey: string;
  labels: StringMap;
  annotations: StringMap;
  runtimeHandler: string;
  hostname: string;
  logDirectory: string;
  createdAt: Int64;
  config: SandboxConfig;
  /** The Xen domain name of this sandbox's unikernel: `sf-` + the first 12 hex digits of the id. */
  domainName: string;
  /** Memory held back for this sandbox's domain at RunPodSandbox (MiB). */
  reservedMiB: number;
}

export interface SandboxNetwork {
  ip: string;
  prefixLength: number;
  gateway: string;
  bridge: string;
  mac: string;
}

export interface SandboxStatus {
  /** "creating" only between the first write and the end of RunPodSandbox: recovery removes such sandboxes. */
  state: "creating" | "ready" | "notready";
  network?: SandboxNetwork;
  /**
   * A migration's target sandbox whose domain has been received: it is an ordinary pod from then on,
   * so a container the kubelet re-creates here (the guest exited) boots from its image instead of
   * waiting for another stream.
   */
  received?: { migration: string; at: string };
}

/** The vif a guest really uses: MAC, address and the gateway it booted with. */
export interface GuestNetwork {
  mac: string;
  ip: string;
  gateway?: string;
}

export interface ContainerMeta {
  id: string;
  sandboxId: string;
  metadata: ContainerMetadata;
  image: ImageSpec;
  imageRef: string;
  imageId: string;
  labels: StringMap;
  annotations: StringMap;
  /** Absolute path of the CRI log file (sandbox log_directory + container log_path), "" for none. */
  logPath: string;
  createdAt: Int64;
  domainName: string;
  kernelPath: string;
  initrdPath?: string;
  cmdline: string;
  guestType: GuestType;
}

export interface ContainerStatusRecord {
  /** "creating" until the domain is built; recovery destroys the domain of such containers. */
  state: "creating" | "created" | "running" | "exited";
  domid?: number;
  startedAt: Int64;
  finishedAt: Int64;
  exitCode: number;
  reason: string;
  message: string;
  memoryMiB: number;
  vcpus: number;
  /**
   * Set by the node agent while the domain is saved to disk (runPolicy Suspended): the container
   * stays "running" for the CRI (the pod is kept), domid is unset, and the exit monitor and recovery
   * leave it alone. Cleared when the domain is restored under a new domid. sha256: the checkpoint's
   * digest, checked before a restore (libxl does not verify the stream's memory pages).
   */
  suspended?: { checkpoint: string; since: string; sha256?: string };
  /**
   * A migration's target pod (sandbox annotation superfluid.dev/migration-target): CreateContainer
   * built no domain, the node agent receives one from the source node. The container is "created"
   * then "running" without a domid until the stream ends; the exit monitor and recovery leave it alone.
   * Cleared (and domid set) once the received domain runs here.
   */
  incoming?: {
    migration: string;
    /** The restored copy, PAUSED, recorded before the target says "restored": recovery keeps it and the
     *  node agent unpauses or destroys it from the migration's recorded commit (never on its own). */
    domid?: number;
  };
  /**
   * Set on the source before a migration's send suspends the domain, cleared when it resumes (abort)
   * or is marked migratedAway: after a restart the node agent settles such a domain from the
   * migration's recorded commit instead of resuming it blindly.
   */
  outgoing?: { migration: string; since: string };
  /** Bumped by every lifecycle transition (domain-lifecycle.ts): which write a record is. */
  version?: number;
  /**
   * Set on the source after a successful send: the domain runs on another node now. The container stays
   * "running" without a domain until the operator deletes the pod (the kubelet must not restart it:
   * a second domain would appear here); its StopContainer touches no domain.
   */
  migratedAway?: { migration: string; at: string };
  /**
   * The vif the guest really uses when it differs from the sandbox's (a domain received by migration
   * keeps the source's MAC and the IP it booted with): a later save/restore rebuilds with these.
   */
  guestNetwork?: GuestNetwork;
}

/** True for records that have no domain on purpose: suspended to disk, not received yet, or moved away. */
export function isDomainless(s: ContainerStatusRecord): boolean {
  return s.suspended !== undefined || s.incoming !== undefined || s.migratedAway !== undefined;
}

export type SandboxStore = Store<SandboxMeta, SandboxStatus>;
export type ContainerStore = Store<ContainerMeta, ContainerStatusRecord>;

/** A domain that a save or a migration's send suspended and nobody resumed or destroyed: not an exit. */
export function isLeftSuspended(d: Pick<DomainInfo, "state" | "shutdownReason">): boolean {
  return d.state === "shutdown" && d.shutdownReason === "suspend";
}
