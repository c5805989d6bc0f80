// Credentials for the REST client without loading @kubernetes/client-node, which alone costs a
// process ~70 MB of RSS (its generated models) and a bundle 14 MB (the operator's image carries one
// bundled file): a kubeconfig's current context with certificates, a token, basic auth or an exec
// credential plugin (exec-credentials.ts), or the in-cluster service account. The legacy
// auth-provider users (removed from kubectl in 1.26 in favour of exec plugins) get a clear error.
import { existsSync, readFileSync } from "node:fs";
import type { RequestOptions } from "node:https";
import { homedir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { type ExecConfig, execCredentials } from "./exec-credentials.js";

/** What KubeClient needs of a kubeconfig; client-node's KubeConfig has the same two methods. */
export interface KubeCredentials {
  getCurrentCluster(): { server: string } | null;
  applyToHTTPSOptions(opts: RequestOptions): Promise<void>;
}

export interface LoadedCredentials extends KubeCredentials {
  /** The current context's namespace, or the service account's. */
  namespace?: string;
}

interface Named<T> {
  name: string;
  [k: string]: unknown;
  cluster?: T;
  user?: T;
  context?: T;
}
interface KubeconfigFile {
  "current-context"?: string;
  clusters?: Named<Record<string, string | boolean | undefined>>[];
  users?: Named<Record<string, unknown>>[];
  contexts?: Named<{ cluster?: string; user?: string; namespace?: string }>[];
}

const SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

const fromData = (data: unknown, file: unknown, base: string): Buffer | undefined =>
  typeof data === "string"
    ? Buffer.from(data, "base64")
    : typeof file === "string"
      ? readFileSync(file.startsWith("/") ? file : join(base, file))
      : undefined;

/** Parses a kubeconfig file's current context. Throws with a clear message on what it cannot use. */
export async function loadKubeconfigFile(path: string): Promise<LoadedCredentials> {
  const doc = parse(readFileSync(path, "utf8")) as KubeconfigFile;
  const base = join(path, "..");
  const ctxName = doc["current-context"];
  const ctx = doc.contexts?.find((c) => c.name === ctxName)?.context;
  if (!ctx) throw new Error(`${path}: no current context`);
  const cluster = doc.clusters?.find((c) => c.name === ctx.cluster)?.cluster;
  if (!cluster || typeof cluster.server !== "string")
    throw new Error(`${path}: context ${ctxName} has no cluster server`);
  const user = doc.users?.find((u) => u.name === ctx.user)?.user ?? {};
  if (user["auth-provider"])
    throw new Error(
      `${path}: user ${ctx.user} uses an auth-provider, which is not supported (kubectl dropped them in 1.26): use an exec credential plugin, a token or a client certificate`,
    );
  const exec = user.exec ? execCredentials(user.exec as ExecConfig, base, cluster.server) : undefined;
  const ca = fromData(cluster["certificate-authority-data"], cluster["certificate-authority"], base);
  const cert = fromData(user["client-certificate-data"], user["client-certificate"], base);
  const key = fromData(user["client-key-data"], user["client-key"], base);
  // As client-go: a relative tokenFile is relative to the kubeconfig's directory.
  const tokenFile =
    typeof user.tokenFile === "string"
      ? user.tokenFile.startsWith("/")
        ? user.tokenFile
        : join(base, user.tokenFile)
      : undefined;
  const token = typeof user.token === "string" ? user.token : undefined;
  const basic =
    typeof user.username === "string" && typeof user.password === "string"
      ? `${user.username}:${user.password}`
      : undefined;
  const server = cluster.server;
  return {
    ...(ctx.namespace ? { namespace: ctx.namespace } : {}),
    getCurrentCluster: () => ({ server }),
    async applyToHTTPSOptions(opts) {
      if (ca) opts.ca = ca;
      if (cert) opts.cert = cert;
      if (key) opts.key = key;
      if (cluster["insecure-skip-tls-verify"] === true) opts.rejectUnauthorized = false;
      if (typeof cluster["tls-server-name"] === "string") opts.servername = cluster["tls-server-name"];
      const bearer = tokenFile ? readFileSync(tokenFile, "utf8").trim() : token;
      if (bearer) opts.headers = { ...opts.headers, Authorization: `Bearer ${bearer}` };
      if (basic) opts.auth = basic;
      if (exec) await exec.apply(opts);
    },
  };
}

/** The pod's service account: the token is re-read on every call (it rotates). */
export function inClusterCredentials(dir = SA_DIR): LoadedCredentials {
  const host = process.env.KUBERNETES_SERVICE_HOST;
  const port = process.env.KUBERNETES_SERVICE_PORT;
  if (!host || !port)
    throw new Error(
      "not in a cluster: KUBERNETES_SERVICE_HOST/PORT are not set, and no kubeconfig was given",
    );
  const server = `https://${host.includes(":") ? `[${host}]` : host}:${port}`;
  const ca = readFileSync(join(dir, "ca.crt"));
  const nsFile = join(dir, "namespace");
  return {
    ...(existsSync(nsFile) ? { namespace: readFileSync(nsFile, "utf8").trim() } : {}),
    getCurrentCluster: () => ({ server }),
    async applyToHTTPSOptions(opts) {
      opts.ca = ca;
      const token = readFileSync(join(dir, "token"), "utf8").trim();
      opts.headers = { ...opts.headers, Authorization: `Bearer ${token}` };
    },
  };
}

/** --kubeconfig, else $KUBECONFIG (its first file), else in-cluster, else ~/.kube/config. */
export function loadCredentials(path?: string): Promise<LoadedCredentials> {
  const explicit = path || process.env.KUBECONFIG?.split(":").find(Boolean);
  if (explicit) return loadKubeconfigFile(explicit);
  if (process.env.KUBERNETES_SERVICE_HOST) return Promise.resolve(inClusterCredentials());
  const home = join(homedir(), ".kube", "config");
  if (existsSync(home)) return loadKubeconfigFile(home);
  return Promise.reject(new Error("no kubeconfig: pass --kubeconfig, set KUBECONFIG, or run in a cluster"));
}
