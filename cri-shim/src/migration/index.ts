// Live migration's data path: libxl's save stream from one node's dom0 to another's, over mutual
// TLS with per-migration pinned certificates. The node agent drives it (docs/migration-stream.md).
export { createIdentity, type MigrationIdentity } from "./identity.js";
export { MigrationError } from "./errors.js";
export { sendDomain, type SendResult } from "./send.js";
export { receiveDomain, type IncomingMigration } from "./receive.js";
