// What the node agent's two migration roles (migration-receive.ts, migration-send.ts) share: the
// agent's configuration and how a failure becomes a condition's reason and message.
import type { KubeClient } from "../../../lib/kube/client.js";
import type { KubeCredentials } from "../../../lib/kube/kubeconfig.js";
import { MigrationError } from "../migration/index.js";
import type { CriRuntime } from "../runtime.js";
import type { DomainOps } from "./domain-ops.js";

export interface MigrationAgentConfig {
  kubeConfig: KubeCredentials;
  client: KubeClient;
  nodeName: string;
  runtime: CriRuntime;
  ops: DomainOps;
  /** Where the target listens; default: the first InternalIP of this node's Node object. */
  nodeAddress?: string;
  /** How often transferredBytes is written while streaming (ms). */
  progressIntervalMs?: number;
  /** Inactivity timeout of the stream, both sides (ms); the stream module's default when unset. */
  streamTimeoutMs?: number;
  /** How often the migration's record is read while a handover waits on it (ms). */
  handoverPollMs?: number;
}

/** The target's view of its agent: the configuration and this node's address (looked up once). */
export interface RoleContext {
  config: MigrationAgentConfig;
  nodeAddress(): Promise<string>;
}

export const reasonOf = (err: unknown): string => (err instanceof MigrationError ? err.reason : "Failed");

export const messageOf = (err: unknown): string =>
  (err instanceof Error ? err.message : String(err)).slice(0, 1000);

/** The certificate's common name: role, migration and node, as one DNS-like label (for logs; peers pin the fingerprint). */
export const identityName = (role: string, migration: string, node: string): string =>
  `${role}.${migration}.${node}`.slice(0, 63).replace(/[^A-Za-z0-9]+$/, "");
