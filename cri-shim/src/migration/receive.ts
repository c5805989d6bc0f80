// Target side of a migration (see docs/migration-stream.md).
import type { DomainSpec, Hypervisor } from "../hypervisor/types.js";
import { MigrationError } from "./errors.js";
import type { MigrationIdentity } from "./identity.js";

export interface IncomingMigration {
  readonly port: number;
  /** Resolves once the domain runs here (unpaused); rejects with MigrationError. The listener is closed either way. */
  readonly result: Promise<{ domid: number; bytes: number; restoreMs: number; sourceSpec: DomainSpec }>;
  /** Stops listening / aborts the stream and destroys any half-restored domain. */
  cancel(reason: string): Promise<void>;
}

export interface ReceiveOptions {
  hv: Hypervisor; host: string; identity: MigrationIdentity;
  sourceFingerprint: () => Promise<string | undefined>;
  targetSpec: (sourceSpec: DomainSpec) => DomainSpec | Promise<DomainSpec>;
  timeoutMs?: number; onProgress?: (bytes: number) => void;
}

/** Target side: listens on host:0 for ONE mutual-TLS connection whose client certificate's fingerprint
 *  equals `await sourceFingerprint()` (asked when the connection arrives, so it can be read from the
 *  API then). `targetSpec(sourceSpec)` gives the DomainSpec to restore with (same MAC, this node's
 *  bridge, a new name if wanted). */
export async function receiveDomain(opts: ReceiveOptions): Promise<IncomingMigration> {
  void opts;
  throw new MigrationError("RestoreFailed", "receiveDomain: being implemented (signature committed first)");
}
