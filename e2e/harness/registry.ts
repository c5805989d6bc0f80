// A real OCI registry for tests: Debian's docker-registry (distribution 2.8) on 127.0.0.1 with a
// free port, plain HTTP or TLS (a CA made here with openssl) + htpasswd basic auth. stop() leaves no
// process and no temp dir behind.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { stringify } from "yaml";
import { httpRequest, tlsSettings } from "../../lib/oci/http.js";
import { selfSignedCertificate } from "../../lib/x509.js";
import { startTokenServer, type TokenServer } from "./token-server.js";

const run = promisify(execFile);
export const REGISTRY_BINARY = process.env.SUPERFLUID_REGISTRY_BIN ?? "/usr/bin/docker-registry";

export interface RegistryStartOptions {
  /** Serve TLS with a fresh CA and require basic auth for `user`. */
  tls?: boolean;
  user?: { username: string; password: string };
  /** Bearer-token auth (a token service started here) instead of htpasswd basic auth. */
  tokenAuth?: boolean;
}

export interface TestRegistry {
  /** host:port, the registry part of image references. */
  host: string;
  port: number;
  /** http://... or https://... */
  url: string;
  tls: boolean;
  /** PEM of the CA that signed the registry's certificate (TLS variant). */
  caFile?: string;
  user?: { username: string; password: string };
  /** The docker-registry process. */
  pid: number;
  /** The temp dir holding config, certificates and storage; removed by stop(). */
  dir: string;
  /** The token service, when started with tokenAuth. */
  tokenServer?: TokenServer;
  /** The registry's storage root: blobs live under docker/registry/v2/blobs/sha256/<2>/<64>/data. */
  storageDir: string;
  /** Where a blob's bytes sit in storage (for tamper tests). */
  blobDataPath(digest: string): string;
  stop(): Promise<void>;
}

const DIR_PREFIX = "sf-registry-";
const OWNER_FILE = "owner.pid";

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
  // A zombie answers kill(0) but is dead.
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));
  } catch {
    return false; // gone since kill(0)
  }
}

/** Removes temp dirs of harness registries whose owning test process died without stop(). */
async function sweepStaleDirs(): Promise<void> {
  for (const name of await readdir(tmpdir()).catch(() => [] as string[])) {
    if (!name.startsWith(DIR_PREFIX)) continue;
    const owner = Number(await readFile(join(tmpdir(), name, OWNER_FILE), "utf8").catch(() => "NaN"));
    if (Number.isInteger(owner) && owner > 0 && !processAlive(owner))
      await rm(join(tmpdir(), name), { recursive: true, force: true });
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === "object" && addr ? resolve(addr.port) : reject(new Error("no port"))));
    });
  });
}

async function makeCertificates(dir: string): Promise<{ caFile: string; certFile: string; keyFile: string }> {
  const caKey = join(dir, "ca.key");
  const caFile = join(dir, "ca.pem");
  const keyFile = join(dir, "server.key");
  const csr = join(dir, "server.csr");
  const certFile = join(dir, "server.pem");
  const ext = join(dir, "server.ext");
  await selfSignedCertificate({
    keyPath: caKey,
    certPath: caFile,
    subject: "/CN=superfluid test CA",
    days: 2,
  });
  await run("openssl", [
    "req",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    keyFile,
    "-out",
    csr,
    "-subj",
    "/CN=127.0.0.1",
  ]);
  await writeFile(
    ext,
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
  );
  await run("openssl", [
    "x509",
    "-req",
    "-in",
    csr,
    "-CA",
    caFile,
    "-CAkey",
    caKey,
    "-CAcreateserial",
    "-out",
    certFile,
    "-days",
    "2",
    "-extfile",
    ext,
  ]);
  return { caFile, certFile, keyFile };
}

async function waitReady(
  url: string,
  caFile: string | undefined,
  child: ChildProcess,
  logs: () => string,
): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited with ${child.exitCode}: ${logs()}`);
    try {
      const res = await httpRequest({
        method: "GET",
        url: new URL("/v2/", url),
        tls: tlsSettings(caFile, false),
        timeoutMs: 2000,
      });
      res.body.resume();
      if (res.status === 200 || res.status === 401) return;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline)
      throw new Error(`docker-registry did not answer on ${url} within 20 s: ${logs()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function startRegistry(opts: RegistryStartOptions = {}): Promise<TestRegistry> {
  await sweepStaleDirs();
  const dir = await mkdtemp(join(tmpdir(), DIR_PREFIX));
  await writeFile(join(dir, OWNER_FILE), String(process.pid));
  let child: ChildProcess | undefined;
  let tokenServer: TokenServer | undefined;
  const stop = async () => {
    await tokenServer?.close();
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child!.once("exit", r));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child?.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const storageDir = join(dir, "storage");
    const tls = opts.tls ?? false;
    const user =
      opts.user ?? (tls || opts.tokenAuth ? { username: "superfluid", password: "s3cret-test" } : undefined);
    const http: Record<string, unknown> = {
      secret: "superfluid-test-secret",
      headers: { "X-Content-Type-Options": ["nosniff"] },
    };
    let caFile: string | undefined;
    const config: Record<string, unknown> = {
      version: 0.1,
      log: { level: "warn", accesslog: { disabled: true } },
      storage: { filesystem: { rootdirectory: storageDir }, delete: { enabled: true } },
      http,
    };
    if (tls) {
      const certs = await makeCertificates(dir);
      caFile = certs.caFile;
      http.tls = { certificate: certs.certFile, key: certs.keyFile };
    }
    if (user && opts.tokenAuth) {
      const keyFile = join(dir, "token.key");
      const certFile = join(dir, "token.pem");
      await selfSignedCertificate({
        keyPath: keyFile,
        certPath: certFile,
        subject: "/CN=superfluid test token signer",
        days: 2,
      });
      tokenServer = await startTokenServer({ keyFile, certFile, user });
      config.auth = {
        token: {
          realm: tokenServer.realm,
          service: tokenServer.service,
          issuer: tokenServer.issuer,
          rootcertbundle: certFile,
        },
      };
    } else if (user) {
      const { stdout } = await run("htpasswd", ["-Bbn", user.username, user.password]);
      await writeFile(join(dir, "htpasswd"), stdout.trim() + "\n");
      config.auth = { htpasswd: { realm: "superfluid-test", path: join(dir, "htpasswd") } };
    }
    // A port taken between probe and bind makes the registry exit; try a few.
    for (let attempt = 0; ; attempt++) {
      const port = await freePort();
      http.addr = `127.0.0.1:${port}`;
      const configFile = join(dir, "config.yml");
      await writeFile(configFile, stringify(config));
      let output = "";
      // setpriv --pdeathsig: the registry dies with the test process even when that is killed
      // before it can call stop().
      child = spawn("setpriv", ["--pdeathsig", "SIGKILL", REGISTRY_BINARY, "serve", configFile], {
        stdio: ["ignore", "pipe", "pipe"],
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
      });
      child.stdout?.on("data", (d: Buffer) => (output = (output + d.toString()).slice(-4000)));
      child.stderr?.on("data", (d: Buffer) => (output = (output + d.toString()).slice(-4000)));
      const url = `${tls ? "https" : "http"}://127.0.0.1:${port}`;
      try {
        await waitReady(url, caFile, child, () => output);
      } catch (err) {
        if (attempt < 3 && /address already in use/.test(output)) continue;
        throw err;
      }
      const registry: TestRegistry = {
        host: `127.0.0.1:${port}`,
        port,
        url,
        tls,
        storageDir,
        pid: child.pid ?? -1,
        dir,
        blobDataPath: (digest: string) => {
          const hex = digest.replace(/^sha256:/, "");
          return join(
            storageDir,
            "docker",
            "registry",
            "v2",
            "blobs",
            "sha256",
            hex.slice(0, 2),
            hex,
            "data",
          );
        },
        stop,
      };
      if (caFile !== undefined) registry.caFile = caFile;
      if (user !== undefined) registry.user = user;
      if (tokenServer !== undefined) registry.tokenServer = tokenServer;
      return registry;
    }
  } catch (err) {
    await stop();
    throw err;
  }
}
