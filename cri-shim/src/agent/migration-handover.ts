// The handover's record store over the API: the UnikernelVMMigration's status, read fresh from the
// apiserver (never the informer's cache: a decision needs the latest record) and written by this
// node's role writer (server-side apply under the node agent's field manager), with the object's
// resourceVersion as the precondition where the handover asks for one.
import {
  findCondition,
  MIGRATION_CONDITIONS,
  MIGRATION_PLURAL,
  type UnikernelVMMigration,
} from "../../../api/index.js";
import { isNotFound, type KubeClient, paths } from "../../../lib/kube/client.js";
import type { HandoverCondition, HandoverStore } from "../migration/handover-actors.js";
import type { RecordedHandover, Recorded } from "../migration/handover.js";
import type { MigrationStatusWriter } from "./migration-status.js";

const TYPES: Record<HandoverCondition, string> = {
  Committed: MIGRATION_CONDITIONS.committed,
  TargetRestored: MIGRATION_CONDITIONS.targetRestored,
  TargetRunning: MIGRATION_CONDITIONS.targetRunning,
};

const recorded = (m: UnikernelVMMigration, type: string): Recorded => {
  const s = findCondition(m.status?.conditions, type)?.status;
  return s === "True" || s === "False" ? s : undefined;
};

/** What a migration object records about its handover (pure). */
export function recordedHandover(m: UnikernelVMMigration | undefined): RecordedHandover {
  if (!m) return { exists: false, committed: undefined, targetRestored: undefined, targetRunning: undefined };
  return {
    exists: !m.metadata.deletionTimestamp || recorded(m, MIGRATION_CONDITIONS.committed) !== undefined,
    ...(m.status?.phase ? { phase: m.status.phase } : {}),
    committed: recorded(m, MIGRATION_CONDITIONS.committed),
    targetRestored: recorded(m, MIGRATION_CONDITIONS.targetRestored),
    targetRunning: recorded(m, MIGRATION_CONDITIONS.targetRunning),
  };
}

export function apiHandoverStore(
  client: KubeClient,
  writer: MigrationStatusWriter,
  m: UnikernelVMMigration,
): HandoverStore {
  const path = paths.customObject(MIGRATION_PLURAL, m.metadata.namespace!, m.metadata.name!);
  return {
    async read() {
      const fresh = await client
        .request<UnikernelVMMigration>({ method: "GET", path })
        .catch((err: unknown) => {
          if (isNotFound(err)) return undefined;
          throw err;
        });
      if (fresh && fresh.metadata.uid !== m.metadata.uid)
        return { ...recordedHandover(undefined), version: "" }; // a new object under the old name
      if (fresh) writer.reseed(fresh);
      return { ...recordedHandover(fresh), version: fresh?.metadata.resourceVersion ?? "" };
    },
    async write(type, status, reason, message, ifVersion) {
      await writer.apply({}, { type: TYPES[type], status, reason, message }, ifVersion);
    },
  };
}
