// A throwaway PKI for a test control plane: a CA, the apiserver's serving certificate, client
// certificates, and the service-account signing key. Made with openssl, in the harness's temp dir.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { runOrThrow } from "../../lib/process.js";

export interface Pki {
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  adminCert: string;
  adminKey: string;
  serviceAccountKey: string;
  serviceAccountPub: string;
}

function openssl(dir: string, args: string[]): void {
  runOrThrow("openssl", args, { cwd: dir });
}

/** Issues a certificate signed by the CA in `dir`. */
export function issueCertificate(
  dir: string,
  name: string,
  subject: string,
  opts: { serverNames?: string[]; ips?: string[]; client?: boolean },
): { cert: string; key: string } {
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const cert = join(dir, `${name}.crt`);
  const ext = join(dir, `${name}.ext`);
  const san = [...(opts.serverNames ?? []).map((d) => `DNS:${d}`), ...(opts.ips ?? []).map((i) => `IP:${i}`)];
  writeFileSync(
    ext,
    [
      "basicConstraints=CA:FALSE",
      "keyUsage=critical,digitalSignature,keyEncipherment",
      `extendedKeyUsage=${opts.client ? "clientAuth" : "serverAuth,clientAuth"}`,
      ...(san.length ? [`subjectAltName=${san.join(",")}`] : []),
    ].join("\n"),
  );
  openssl(dir, [
    "req",
    "-new",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    key,
    "-out",
    csr,
    "-subj",
    subject,
  ]);
  openssl(dir, [
    "x509",
    "-req",
    "-in",
    csr,
    "-CA",
    "ca.crt",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-days",
    "2",
    "-out",
    cert,
    "-extfile",
    ext,
  ]);
  return { cert, key };
}

export function makePki(dir: string, extraServerNames: string[] = [], extraIps: string[] = []): Pki {
  openssl(dir, [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    "ca.key",
    "-out",
    "ca.crt",
    "-days",
    "2",
    "-subj",
    "/CN=superfluid-test-ca",
  ]);
  const server = issueCertificate(dir, "apiserver", "/CN=kube-apiserver", {
    serverNames: [
      "localhost",
      "kubernetes",
      "kubernetes.default",
      "kubernetes.default.svc",
      "kubernetes.default.svc.cluster.local",
      ...extraServerNames,
    ],
    ips: ["127.0.0.1", "10.96.0.1", ...extraIps],
  });
  const admin = issueCertificate(dir, "admin", "/O=system:masters/CN=superfluid-admin", { client: true });
  openssl(dir, ["genrsa", "-out", "sa.key", "2048"]);
  openssl(dir, ["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"]);
  return {
    caCert: join(dir, "ca.crt"),
    caKey: join(dir, "ca.key"),
    serverCert: server.cert,
    serverKey: server.key,
    adminCert: admin.cert,
    adminKey: admin.key,
    serviceAccountKey: join(dir, "sa.key"),
    serviceAccountPub: join(dir, "sa.pub"),
  };
}
