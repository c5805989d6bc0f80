// The target side's contract (receive.ts implements it): what a receive gives back, and the hooks
// through which the node agent records the commit point.
import type { DomainSpec, Hypervisor } from "../hypervisor/types.js";
import type { MigrationIdentity } from "./identity.js";

export interface ReceivedDomain {
  domid: number;
  bytes: number;
  /** stream end -> domain unpaused here (the target's share of the downtime) */ restoreMs: number;
  /** ms from the stream's end here: restore done, "restored" recorded and said, the commit (or
   *  "go") seen, the domain unpaused. */
  timeline: { restored: number; said: number; committed: number; unpaused: number };
  sourceSpec: DomainSpec;
}

export interface IncomingMigration {
  readonly port: number;
  /** Resolves once the domain runs here (unpaused); rejects with MigrationError. The listener is closed either way. */
  readonly result: Promise<ReceivedDomain>;
  /** Stops listening / aborts the stream and destroys any half-restored domain. */
  cancel(reason: string): Promise<void>;
}

/** The durable commit point, as the target sees it (the node agent records it in the migration's status). */
export interface TargetHandover {
  /** Records that the paused copy exists (TargetRestored=True, with its domid) before the source hears
   *  "restored". A failure here aborts the receive (the source never hears "restored", so cannot commit). */
  restored(domid: number): Promise<void>;
  /** The recorded decision; waits while it is open. Consulted when the connection fails before "go". */
  decision(): Promise<"commit" | "abort">;
}

export interface ReceiveOptions {
  hv: Hypervisor;
  host: string;
  identity: MigrationIdentity;
  sourceFingerprint: () => Promise<string | undefined>;
  targetSpec: (sourceSpec: DomainSpec) => DomainSpec | Promise<DomainSpec>;
  timeoutMs?: number;
  onProgress?: (bytes: number) => void;
  /** Give up when no source connected within this long (default 10 min). */
  acceptTimeoutMs?: number;
  /** The commit point in the API. Without it "go" is the commit, and a failure before it destroys the copy. */
  handover?: TargetHandover;
  /** Called right after the restored domain is unpaused (and "running" said): tells the network
   *  where the guest is now (network/announce.ts). Must not throw. */
  onUnpaused?: (domid: number, spec: DomainSpec) => void;
}
