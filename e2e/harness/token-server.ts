// A Docker-style token service for the test registry's Bearer auth: checks Basic credentials and
// issues ES256 JWTs carrying the requested access, signed by a key whose self-signed certificate
// the registry trusts (auth.token.rootcertbundle). Loopback only, ephemeral port.
import { createPrivateKey, randomBytes, sign, X509Certificate } from "node:crypto";
import { createServer, type Server } from "node:http";
import { readFile } from "node:fs/promises";

export interface TokenServer {
  realm: string;
  service: string;
  issuer: string;
  /** Requests the service answered, for tests that assert the flow happened. */
  issued: number;
  close(): Promise<void>;
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString("base64url");

/** `keyFile`/`certFile`: PEM of the signing key and its self-signed certificate. */
export async function startTokenServer(opts: {
  keyFile: string;
  certFile: string;
  user: { username: string; password: string };
}): Promise<TokenServer> {
  const key = createPrivateKey(await readFile(opts.keyFile));
  const certDer = new X509Certificate(await readFile(opts.certFile)).raw;
  const service = "superfluid-test-registry";
  const issuer = "superfluid-test-token-issuer";
  const expected = `Basic ${Buffer.from(`${opts.user.username}:${opts.user.password}`).toString("base64")}`;
  const state = { issued: 0 };
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    if (url.pathname !== "/token" || req.headers.authorization !== expected) {
      res.writeHead(401, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ errors: [{ code: "UNAUTHORIZED", message: "bad credentials" }] }));
      return;
    }
    const access = url.searchParams.getAll("scope").flatMap((scope) => {
      const [type, name, actions] = scope.split(":");
      return type && name && actions ? [{ type, name, actions: actions.split(",") }] : [];
    });
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: "JWT", alg: "ES256", x5c: [certDer.toString("base64")] };
    const claims = {
      iss: issuer,
      sub: opts.user.username,
      aud: service,
      exp: now + 300,
      nbf: now - 60,
      iat: now,
      jti: randomBytes(8).toString("hex"),
      access,
    };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    // JWS ES256 wants r||s, not DER.
    const signature = sign("sha256", Buffer.from(input), { key, dsaEncoding: "ieee-p1363" });
    state.issued++;
    res.writeHead(200, { "Content-Type": "application/json" });
    res.end(JSON.stringify({ token: `${input}.${b64url(signature)}`, expires_in: 300 }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return {
    realm: `http://127.0.0.1:${port}/token`,
    service,
    issuer,
    get issued() {
      return state.issued;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
