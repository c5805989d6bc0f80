// `node dist/tools/node-agent-credentials.js`: the node agent's credentials for a shim that runs
// from systemd (docs/node-install.md). The shim is the kubelet's CRI front, so it cannot be a pod and
// gets no service-account token from the kubelet. This program runs in the chart's node DaemonSet
// pod instead, where the kubelet mounts the node agent's ServiceAccount token (bound to the pod and
// so to its node: the node-agent admission policy reads that node claim) and rotates it. It copies
// the token, the cluster CA and a kubeconfig naming them to the host, and keeps the token current:
//   <root>/var/lib/superfluid/agent/kubeconfig   server, CA and tokenFile, relative to this dir
//   <root>/var/lib/superfluid/agent/ca.crt
//   <root>/var/lib/superfluid/agent/token        0600, replaced atomically when the pod's changes
// The shim reads the kubeconfig with `--kubeconfig` (lib/kube/kubeconfig.ts, as the operator does) and
// re-reads the token file with its other credentials every 10 s.
// On disk rather than in /run: after a reboot the shim starts before any pod can run, and it should
// find its last credentials (the agent retries until the refreshed token arrives).
import { existsSync, mkdirSync, readFileSync, realpathSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

export const AGENT_CREDENTIALS_DIR = "var/lib/superfluid/agent";
const SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

export interface CredentialSource {
  /** The pod's service-account directory (token, ca.crt). */
  from: string;
  /** The apiserver URL the host reaches. */
  server: string;
}

/** The kubeconfig the shim reads: every path relative to its own directory. */
export function agentKubeconfig(server: string): string {
  return `# written by superfluid node-agent-credentials; the token file is kept current by the node DaemonSet
apiVersion: v1
kind: Config
current-context: node-agent
clusters:
- name: cluster
  cluster:
    server: ${JSON.stringify(server)}
    certificate-authority: ca.crt
users:
- name: node-agent
  user:
    tokenFile: token
contexts:
- name: node-agent
  context: { cluster: cluster, user: node-agent }
`;
}

/** Writes `text` to `path` through a temp file and a rename, so a reader never sees half of it. */
function replace(path: string, text: string, mode: number): boolean {
  if (existsSync(path) && readFileSync(path, "utf8") === text) return false;
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, text, { mode });
  renameSync(tmp, path);
  return true;
}

/** One pass: the files under `root` match the pod's. Returns which files changed. */
export function syncCredentials(root: string, src: CredentialSource): string[] {
  const token = readFileSync(join(src.from, "token"), "utf8").trim();
  if (!token) throw new Error(`${join(src.from, "token")} is empty`);
  if (!/^https:\/\/\S+$/.test(src.server)) throw new Error(`server ${src.server}: want an https:// URL`);
  const dir = join(root, AGENT_CREDENTIALS_DIR);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const changed: string[] = [];
  if (replace(join(dir, "ca.crt"), readFileSync(join(src.from, "ca.crt"), "utf8"), 0o644))
    changed.push("ca.crt");
  // No newline: as the kubelet writes it (client-node sends the file as it is, a newline included).
  if (replace(join(dir, "token"), token, 0o600)) changed.push("token");
  if (replace(join(dir, "kubeconfig"), agentKubeconfig(src.server), 0o600)) changed.push("kubeconfig");
  return changed;
}

/** The in-cluster apiserver address, as the pod sees it (kube-proxy makes it reachable from the host too). */
export function inClusterServer(env: NodeJS.ProcessEnv = process.env): string {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port) throw new Error("KUBERNETES_SERVICE_HOST/PORT are not set: pass --server");
  return `https://${host.includes(":") ? `[${host}]` : host}:${port}`;
}

const USAGE = `Usage: node dist/tools/node-agent-credentials.js [--root DIR] [--from DIR] [--server URL]
       [--interval SECONDS] [--once]
  --root DIR       the host's root as mounted in the pod (default /host)
  --from DIR       the service-account directory (default ${SA_DIR})
  --server URL     the apiserver (default: the in-cluster service address)
  --interval S     how often to compare and copy (default 30)
  --once           one pass, then exit`;

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      root: { type: "string", default: "/host" },
      from: { type: "string", default: SA_DIR },
      server: { type: "string" },
      interval: { type: "string", default: "30" },
      once: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const interval = Number(values.interval);
  if (!Number.isFinite(interval) || interval < 1)
    throw new Error(`--interval ${values.interval}: want seconds ≥ 1`);
  const src = { from: values.from, server: values.server ?? inClusterServer() };
  const pass = (): void => {
    const changed = syncCredentials(values.root, src);
    if (changed.length) console.log(JSON.stringify({ message: "node agent credentials updated", changed }));
  };
  pass();
  if (values.once) return 0;
  for (;;) {
    await new Promise((r) => setTimeout(r, interval * 1000));
    try {
      pass();
    } catch (err) {
      // The kubelet swaps the projected token's directory atomically; a failed pass is retried.
      console.error(JSON.stringify({ message: "credentials pass failed", error: String(err) }));
    }
  }
}

if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(err instanceof Error ? err.message : String(err));
      process.exit(2);
    },
  );
}
