// One node agent's slice of a UnikernelVMMigration's status, written by server-side apply with the
// agent's own field manager (nodeAgentFieldManager(node)) and force. An apply removes the fields its
// manager stops sending, so each write carries everything this role owns: the slice is kept here,
// seeded from the object and updated write by write (api/v1alpha1/migration.ts: who writes what).
import { logger } from "../../../lib/log.js";
import type { KubeClient } from "../../../lib/kube/client.js";
import { paths } from "../../../lib/kube/client.js";
import {
  API_VERSION,
  type Condition,
  type ConditionInput,
  MIGRATION_CONDITIONS,
  MIGRATION_KIND,
  MIGRATION_PLURAL,
  type MigrationStatus,
  nodeAgentFieldManager,
  setCondition,
  type UnikernelVMMigration,
} from "../../../api/index.js";

const log = logger("node-agent-migration");

export type MigrationRole = "source" | "target";

/** The status fields and condition types each role owns (the rest belongs to the operator or the peer). */
export const ROLE_FIELDS = {
  source: {
    fields: ["sourceCertificateSHA256", "transferredBytes", "switchTime", "downtimeMilliseconds"],
    conditions: [MIGRATION_CONDITIONS.transferred, MIGRATION_CONDITIONS.committed],
  },
  target: {
    fields: ["targetEndpoint", "targetCertificateSHA256"],
    conditions: [
      MIGRATION_CONDITIONS.targetReady,
      MIGRATION_CONDITIONS.targetRunning,
      MIGRATION_CONDITIONS.targetRestored,
    ],
  },
} as const satisfies Record<
  MigrationRole,
  { fields: readonly (keyof MigrationStatus)[]; conditions: readonly string[] }
>;

export type RoleFields = Partial<
  Pick<
    MigrationStatus,
    | "sourceCertificateSHA256"
    | "transferredBytes"
    | "switchTime"
    | "downtimeMilliseconds"
    | "targetEndpoint"
    | "targetCertificateSHA256"
  >
>;

export const conditionOf = (m: UnikernelVMMigration, type: string): Condition | undefined =>
  m.status?.conditions?.find((c) => c.type === type);

export class MigrationStatusWriter {
  private fields: Record<string, unknown> = {};
  private conditions: Condition[] = [];

  constructor(
    private readonly client: KubeClient,
    private readonly node: string,
    private readonly role: MigrationRole,
    private readonly migration: UnikernelVMMigration,
  ) {
    this.reseed(migration);
  }

  /** Takes this role's slice from the object as the server has it (after a write whose answer was lost). */
  reseed(migration: UnikernelVMMigration): void {
    const owned = ROLE_FIELDS[this.role];
    const status = (migration.status ?? {}) as Record<string, unknown>;
    this.fields = {};
    for (const f of owned.fields) if (status[f] !== undefined) this.fields[f] = status[f];
    this.conditions = (migration.status?.conditions ?? []).filter((c) =>
      (owned.conditions as readonly string[]).includes(c.type),
    );
  }

  /** Applies this role's whole slice with `fields` and `condition` changed. */
  async apply(
    fields: RoleFields,
    condition?: Omit<ConditionInput, "observedGeneration">,
    /** A precondition: the write fails (409) when the object changed since this resourceVersion. */
    ifResourceVersion?: string,
  ): Promise<void> {
    const owned = ROLE_FIELDS[this.role];
    // Kept only once the write succeeded: a failed write must not ride along with the next one.
    const nextFields = { ...this.fields };
    let nextConditions = this.conditions;
    for (const [k, v] of Object.entries(fields)) {
      if (!(owned.fields as readonly string[]).includes(k))
        throw new Error(`${this.role} agent does not own status.${k}`);
      if (v !== undefined) nextFields[k] = v;
    }
    if (condition) {
      if (!(owned.conditions as readonly string[]).includes(condition.type))
        throw new Error(`${this.role} agent does not own condition ${condition.type}`);
      const generation = this.migration.metadata.generation;
      nextConditions = setCondition(this.conditions, {
        ...condition,
        ...(generation !== undefined ? { observedGeneration: generation } : {}),
      });
    }
    const { name, namespace } = this.migration.metadata;
    await this.client.apply(
      paths.customObject(MIGRATION_PLURAL, namespace!, name!),
      {
        apiVersion: API_VERSION,
        kind: MIGRATION_KIND,
        metadata: { name, namespace, ...(ifResourceVersion ? { resourceVersion: ifResourceVersion } : {}) },
        status: { ...nextFields, conditions: nextConditions },
      },
      nodeAgentFieldManager(this.node),
      "status",
    );
    this.fields = nextFields;
    this.conditions = nextConditions;
    if (condition)
      log.info("migration status written", {
        migration: `${namespace}/${name}`,
        role: this.role,
        condition: `${condition.type}=${condition.status}/${condition.reason}`,
      });
  }
}
