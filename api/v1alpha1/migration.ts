// The UnikernelVMMigration API: a request to move a running VM to another node.
import { type Infer, required, s, withRules } from "../schema-builder.js";
import { conditionsSchema, DNS_LABEL, DNS_SUBDOMAIN, type ObjectMeta, API_VERSION } from "./common.js";

export const MIGRATION_KIND = "UnikernelVMMigration";
export const MIGRATION_PLURAL = "unikernelvmmigrations";
export const MIGRATION_MODES = ["live", "cold"] as const;
export type MigrationMode = (typeof MIGRATION_MODES)[number];
export const MIGRATION_PHASES = [
  "Pending",
  "Scheduling",
  "TargetPreparing",
  "Transferring",
  "Switching",
  "Succeeded",
  "Failed",
] as const;
export type MigrationPhase = (typeof MIGRATION_PHASES)[number];

export const migrationSpecSchema = withRules(
  s.object({
    vmName: required(s.string({ minLength: 1, maxLength: 63, pattern: DNS_LABEL })),
    targetNode: s.string({ maxLength: 253, pattern: DNS_SUBDOMAIN }),
    mode: s.enum(MIGRATION_MODES, { default: "live" }),
  }),
  { rule: "self == oldSelf", message: "a migration's spec is immutable; create a new UnikernelVMMigration" },
);
export type MigrationSpec = Infer<typeof migrationSpecSchema>;

// Who writes what in a migration's status. Every writer uses server-side apply of the status
// subresource with its own field manager and force, and applies ONLY its own fields and its own
// condition types (conditions are a list-map keyed by type, so entries of different managers merge):
//   operator (FIELD_MANAGER): phase, sourceNode, targetNode, sourcePod, targetPod, startTime,
//     completionTime, totalMilliseconds, message, observedGeneration, condition Succeeded.
//   target node agent (nodeAgentFieldManager(target)): targetEndpoint, targetCertificateSHA256,
//     conditions TargetReady, TargetRestored and TargetRunning.
//   source node agent (nodeAgentFieldManager(source)): sourceCertificateSHA256, transferredBytes,
//     switchTime, downtimeMilliseconds, conditions Committed and Transferred.
// The handover's ONE durable commit point is condition Committed (docs/migration-stream.md): the source
// writes True only in phase Transferring, after the target recorded TargetRestored=True, with the
// object's resourceVersion as a precondition (so it can never land beside the operator's Failed); or
// False before it resumes. Every actor decides from it after a restart, never from a socket message.
// The stream runs over mutual TLS between the two agents with a fresh key pair each per migration;
// only the certificates' SHA-256 fingerprints travel through the API, so no secret is ever stored.
export const MIGRATION_CONDITIONS = {
  /** Operator: Unknown while in flight, True when done, False with the reason when failed. */
  succeeded: "Succeeded",
  /** Target agent: True when it listens at targetEndpoint; False with a reason when it cannot receive. */
  targetReady: "TargetReady",
  /** Source agent: Unknown while streaming; True once the target confirmed its domain runs (the source
   *  domain is destroyed then); False with a reason when the stream failed and the source domain was resumed. */
  transferred: "Transferred",
  /** Target agent: True once the restored domain was unpaused; False with a reason when the restore failed
   *  (before the commit) or the unpause keeps failing (after it: the domain is kept paused there). */
  targetRunning: "TargetRunning",
  /** Target agent: True once the stream is restored into a PAUSED domain on the target (recorded before
   *  the source hears "restored"): the target holds a full copy, the source its suspended one. */
  targetRestored: "TargetRestored",
  /** Source agent: the commit point. True: the target's copy is the VM (it runs, the source destroys its
   *  suspended copy once TargetRunning=True); False: aborted (the source resumes, the target destroys). */
  committed: "Committed",
} as const;

/** The field manager of one node's agent: one per node, so two agents' entries never collide. */
export function nodeAgentFieldManager(node: string): string {
  return `superfluid-node-agent-${node}`.slice(0, 128);
}

export const migrationStatusSchema = s.object({
  phase: s.enum(MIGRATION_PHASES),
  sourceNode: s.string(),
  targetNode: s.string(),
  sourcePod: s.string(),
  targetPod: s.string(),
  /** host:port where the target agent accepts the stream (one connection, mutual TLS). */
  targetEndpoint: s.string({ maxLength: 300 }),
  /** Lower-case hex SHA-256 of the DER certificate each agent presents; the peer pins it. */
  targetCertificateSHA256: s.string({ pattern: "^[0-9a-f]{64}$" }),
  sourceCertificateSHA256: s.string({ pattern: "^[0-9a-f]{64}$" }),
  startTime: s.string({ format: "date-time" }),
  switchTime: s.string({ format: "date-time" }),
  completionTime: s.string({ format: "date-time" }),
  downtimeMilliseconds: s.integer({ minimum: 0 }),
  totalMilliseconds: s.integer({ minimum: 0 }),
  transferredBytes: s.integer({ minimum: 0 }),
  message: s.string(),
  observedGeneration: s.integer({ minimum: 0 }),
  conditions: conditionsSchema,
});
export type MigrationStatus = Infer<typeof migrationStatusSchema>;

export interface UnikernelVMMigration {
  apiVersion: typeof API_VERSION;
  kind: typeof MIGRATION_KIND;
  metadata: ObjectMeta;
  spec: MigrationSpec;
  status?: MigrationStatus;
}
