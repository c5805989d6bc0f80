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

export const migrationStatusSchema = s.object({
  phase: s.enum(MIGRATION_PHASES),
  sourceNode: s.string(),
  targetNode: s.string(),
  targetPod: s.string(),
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
