// The one error type of the migration stream. Its `reason` becomes a condition reason in the API,
// and `sourceResumed` tells the source agent whether the VM still runs on the source node.

/** Reasons a migration fails, CamelCase for Kubernetes condition reasons. */
export type MigrationFailureReason =
  | "TargetUnreachable"
  | "PeerRejected"
  | "StreamFailed"
  | "StreamTimeout"
  | "RestoreFailed"
  | "TargetOutOfMemory"
  | "SourceFailed"
  | "LiveMigrationUnsupported"
  | "ProtocolError"
  | "Cancelled"
  | "InvalidArgument"
  /** The recorded handover says abort (Committed=False, or the migration ended without a commit). */
  | "Aborted"
  /** Recording the commit failed and the record could not be read back: the source stays suspended. */
  | "CommitUnknown"
  /** After the commit, the target could not unpause its copy: it is kept paused. */
  | "UnpauseFailed";

export class MigrationError extends Error {
  /** CamelCase, for a condition reason: TargetUnreachable, PeerRejected, StreamFailed, StreamTimeout,
   *  RestoreFailed, TargetOutOfMemory, Cancelled, ... */
  readonly reason: string;
  /** Source side: true when the source domain was resumed and runs on (before the point of no return). */
  readonly sourceResumed: boolean;

  constructor(
    reason: MigrationFailureReason | string,
    message: string,
    opts: { sourceResumed?: boolean; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "MigrationError";
    this.reason = reason;
    this.sourceResumed = opts.sourceResumed ?? false;
  }

  /** The same failure, re-labelled with what happened to the source domain afterwards. */
  withSourceResumed(sourceResumed: boolean): MigrationError {
    if (sourceResumed === this.sourceResumed) return this;
    return new MigrationError(this.reason, this.message, { sourceResumed, cause: this.cause });
  }
}
