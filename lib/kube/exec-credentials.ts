// A kubeconfig user's exec credential plugin (client.authentication.k8s.io: v1, v1beta1), as
// client-go runs it: the command with its args and env plus KUBERNETES_EXEC_INFO, never a shell;
// its stdout an ExecCredential whose status carries a token or a client certificate and key. The
// answer is kept until its expirationTimestamp (a minute early), or for good when it has none.
import { execFile } from "node:child_process";
import type { RequestOptions } from "node:https";
import { isAbsolute, join } from "node:path";

export interface ExecConfig {
  apiVersion?: string;
  command?: string;
  args?: string[];
  env?: { name: string; value: string }[] | null;
  provideClusterInfo?: boolean;
  installHint?: string;
}

interface ExecCredential {
  apiVersion?: string;
  kind?: string;
  status?: {
    token?: string;
    clientCertificateData?: string;
    clientKeyData?: string;
    expirationTimestamp?: string;
  };
}

const EARLY_MS = 60_000;
const TIMEOUT_MS = 60_000;

/** base: the kubeconfig's directory (a relative command with a slash is resolved against it). */
export function execCredentials(
  exec: ExecConfig,
  base: string,
  server: string,
  run: (cmd: string, args: string[], env: NodeJS.ProcessEnv) => Promise<string> = runPlugin,
): { apply(opts: RequestOptions): Promise<void> } {
  const apiVersion = exec.apiVersion ?? "client.authentication.k8s.io/v1";
  if (!/^client\.authentication\.k8s\.io\/v1(beta1)?$/.test(apiVersion))
    throw new Error(`exec plugin apiVersion ${apiVersion} is not supported (v1 or v1beta1)`);
  if (typeof exec.command !== "string" || !exec.command) throw new Error("exec plugin has no command");
  const command =
    exec.command.includes("/") && !isAbsolute(exec.command) ? join(base, exec.command) : exec.command;
  const args = Array.isArray(exec.args) ? exec.args.map(String) : [];
  const info = {
    apiVersion,
    kind: "ExecCredential",
    spec: { interactive: false, ...(exec.provideClusterInfo ? { cluster: { server } } : {}) },
  };
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    ...Object.fromEntries((exec.env ?? []).map((e) => [e.name, e.value])),
    KUBERNETES_EXEC_INFO: JSON.stringify(info),
  };
  let cached: { status: NonNullable<ExecCredential["status"]>; until: number } | undefined;
  let running: Promise<NonNullable<ExecCredential["status"]>> | undefined;

  const fetchStatus = async () => {
    let out: string;
    try {
      out = await run(command, args, env);
    } catch (err) {
      const hint = exec.installHint ? `\n${exec.installHint}` : "";
      throw new Error(
        `exec plugin ${command} failed: ${err instanceof Error ? err.message : String(err)}${hint}`,
      );
    }
    let cred: ExecCredential;
    try {
      cred = JSON.parse(out) as ExecCredential;
    } catch {
      throw new Error(`exec plugin ${command} did not print an ExecCredential (not JSON)`);
    }
    const s = cred.status;
    if (cred.kind !== "ExecCredential" || !s || (!s.token && !(s.clientCertificateData && s.clientKeyData)))
      throw new Error(
        `exec plugin ${command} printed no credential (an ExecCredential with status.token or status.clientCertificateData and clientKeyData)`,
      );
    const expires = s.expirationTimestamp ? Date.parse(s.expirationTimestamp) : NaN;
    cached = { status: s, until: Number.isFinite(expires) ? expires - EARLY_MS : Infinity };
    return s;
  };

  return {
    async apply(opts) {
      const s =
        cached && Date.now() < cached.until
          ? cached.status
          : await (running ??= fetchStatus().finally(() => (running = undefined)));
      if (s.token) opts.headers = { ...opts.headers, Authorization: `Bearer ${s.token}` };
      if (s.clientCertificateData && s.clientKeyData) {
        opts.cert = s.clientCertificateData;
        opts.key = s.clientKeyData;
      }
    },
  };
}

function runPlugin(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(cmd, args, { env, timeout: TIMEOUT_MS, maxBuffer: 1 << 20 }, (err, stdout, stderr) =>
      err
        ? reject(new Error(`${err.message}${stderr ? `: ${stderr.trim().slice(0, 500)}` : ""}`))
        : resolve(stdout),
    ),
  );
}
