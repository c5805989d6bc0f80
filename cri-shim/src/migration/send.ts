// Source side of a migration (see docs/migration-stream.md).
import type { DomainSpec, Hypervisor } from "../hypervisor/types.js";
import { MigrationError } from "./errors.js";
import type { MigrationIdentity } from "./identity.js";

export interface SendResult { bytes: number; totalMs: number; /** source domain suspended -> target says running, on the source's clock */ downtimeMs: number; switchedAt: Date }

export interface SendOptions {
  hv: Hypervisor; domid: number; spec: DomainSpec; endpoint: string /* host:port */;
  identity: MigrationIdentity; targetFingerprint: string; live: boolean;
  timeoutMs?: number /* inactivity timeout, default 30 s */; onProgress?: (bytes: number) => void;
}

/** Source side. Sends `spec` (the source domain's DomainSpec) first, then libxl's live (or, live=false,
 *  stop-and-copy) stream over mutual TLS pinned to targetFingerprint. Protocol after the stream, as xl's:
 *  target "restored (paused)" -> source "go" (point of no return: the source domain is destroyed) ->
 *  target unpauses -> "running". Any failure before "go": the source domain is resumed and MigrationError
 *  (sourceResumed: true) is thrown. */
export async function sendDomain(opts: SendOptions): Promise<SendResult> {
  void opts;
  throw new MigrationError("SourceFailed", "sendDomain: being implemented (signature committed first)", { sourceResumed: true });
}
