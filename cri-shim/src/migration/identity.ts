// Per-migration TLS identities: a fresh P-256 key and a self-signed certificate for ONE migration.
// Only the certificate's SHA-256 fingerprint is published (in the migration's status); the peer pins
// it, so there is no CA and no secret ever leaves the process that made it.
import { X509Certificate } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { selfSignedCertificate } from "../../../lib/x509.js";
import { MigrationError } from "./errors.js";

/** A fresh key pair + self-signed certificate for ONE migration; only `fingerprint` is published. */
export interface MigrationIdentity {
  certPem: string;
  keyPem: string;
  /** lower-case hex SHA-256 of the DER cert */ fingerprint: string;
}

const FINGERPRINT = /^[0-9a-f]{64}$/;

/** Lower-case hex SHA-256 of a certificate's DER encoding (what openssl x509 -fingerprint -sha256 shows, without colons). */
export function certificateFingerprint(cert: string | Buffer | X509Certificate): string {
  const x509 = cert instanceof X509Certificate ? cert : new X509Certificate(cert);
  return x509.fingerprint256.replaceAll(":", "").toLowerCase();
}

/** Checks a pinned fingerprint's form (a typo must not look like "the peer is wrong"). */
export function normalizeFingerprint(fingerprint: string, what: string): string {
  const normalized = typeof fingerprint === "string" ? fingerprint.replaceAll(":", "").toLowerCase() : "";
  if (!FINGERPRINT.test(normalized))
    throw new MigrationError(
      "InvalidArgument",
      `${what} must be a SHA-256 fingerprint (64 hex digits), got ${JSON.stringify(fingerprint)}`,
    );
  return normalized;
}

export async function createIdentity(commonName: string): Promise<MigrationIdentity> {
  if (typeof commonName !== "string" || !/^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$/.test(commonName))
    throw new MigrationError(
      "InvalidArgument",
      `identity common name must be a DNS-like label, got ${JSON.stringify(commonName)}`,
    );
  // The key is only on disk for the instant openssl needs it, in a 0700 dir we delete right after.
  const dir = await mkdtemp(join(tmpdir(), "sf-migration-id-"));
  try {
    const keyPath = join(dir, "key.pem");
    const certPath = join(dir, "cert.pem");
    await selfSignedCertificate({ keyPath, certPath, subject: `/CN=${commonName}`, days: 1 });
    const [certPem, keyPem] = await Promise.all([readFile(certPath, "utf8"), readFile(keyPath, "utf8")]);
    return { certPem, keyPem, fingerprint: certificateFingerprint(certPem) };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
