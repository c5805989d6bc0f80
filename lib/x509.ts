// One way to make a self-signed P-256 certificate with openssl, for the test CAs and the registry's
// token signer (e2e/harness) and the per-migration identities (cri-shim/src/migration).
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

/** Writes a fresh P-256 key to `keyPath` and a certificate for it, signed by itself, to `certPath`. */
export async function selfSignedCertificate(opts: {
  keyPath: string;
  certPath: string;
  /** openssl's -subj form, e.g. "/CN=superfluid test CA". */
  subject: string;
  days: number;
}): Promise<void> {
  await execFileAsync("openssl", [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-days",
    String(opts.days),
    "-subj",
    opts.subject,
    "-keyout",
    opts.keyPath,
    "-out",
    opts.certPath,
  ]);
}
