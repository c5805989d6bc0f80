// The cluster-wide objects the e2e cluster takes from the Helm chart rather than writing its own:
// the RuntimeClass `superfluid` (placement onto tainted Xen nodes) and the RBAC of the operator and
// of the shim's node agent. The operator and the shims run outside the chart here (on the host, in
// dom0), but with the chart's RuntimeClass and the node agent's own least-privilege identity, so a
// missing permission or a placement rule the chart gets wrong shows up in the e2e tests.
// They carry Helm's ownership marks for the release `superfluid`, so a later `helm install` of the
// whole chart (helm-release.ts) adopts them instead of refusing to touch objects it did not make.
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { k8sBinary, REPO_ROOT } from "../../lib/paths.js";
import { runAsync } from "../../lib/process.js";
import type { ControlPlane } from "../harness/control-plane.js";

export const CHART_DIR = join(REPO_ROOT, "charts", "superfluid");
export const RELEASE = "superfluid";
export const CHART_NAMESPACE = "superfluid-system";
/** The shim DaemonSet's ServiceAccount (the chart's `superfluid.shim.name`), bound to the node-agent ClusterRole. */
export const NODE_AGENT_SERVICE_ACCOUNT = `${RELEASE}-cri-shim`;
/** The user name the apiserver gives that ServiceAccount's tokens (for `kubectl auth can-i --as`). */
export const NODE_AGENT_USER = `system:serviceaccount:${CHART_NAMESPACE}:${NODE_AGENT_SERVICE_ACCOUNT}`;
const TEMPLATES = ["templates/serviceaccounts.yaml", "templates/rbac.yaml", "templates/runtimeclass.yaml"];
/**
 * Lifetime of the node agent's token. A demo may be left running for a day; the apiserver's default
 * (1 h) would lock the agent out mid-demo. The control plane sets no maximum.
 */
const TOKEN_DURATION = "48h";

/** Renders the chart's ServiceAccounts, RBAC and RuntimeClass and applies them. */
export async function installChartObjects(cp: ControlPlane): Promise<void> {
  const rendered = await runAsync(
    k8sBinary("helm"),
    [
      "template",
      RELEASE,
      CHART_DIR,
      "--namespace",
      CHART_NAMESPACE,
      ...TEMPLATES.flatMap((t) => ["--show-only", t]),
    ],
    { timeoutMs: 60_000 },
  );
  if (rendered.code !== 0) throw new Error(`helm template ${CHART_DIR}: ${rendered.stderr.trim()}`);
  const namespace = `apiVersion: v1\nkind: Namespace\nmetadata: { name: ${CHART_NAMESPACE} }\n---\n`;
  const applied = await cp.kubectl(["apply", "-f", "-"], {
    input: namespace + withHelmOwnership(rendered.stdout),
  });
  if (applied.code !== 0)
    throw new Error(`applying the chart's RBAC and RuntimeClass: ${applied.stderr.trim()}`);
}

/** A bearer token of the node agent's ServiceAccount (TokenRequest API, as a projected token would be). */
export async function nodeAgentToken(cp: ControlPlane): Promise<string> {
  const r = await cp.kubectl([
    "create",
    "token",
    NODE_AGENT_SERVICE_ACCOUNT,
    "-n",
    CHART_NAMESPACE,
    `--duration=${TOKEN_DURATION}`,
  ]);
  if (r.code !== 0) throw new Error(`a token for ${NODE_AGENT_USER}: ${r.stderr.trim()}`);
  return r.stdout.trim();
}

/** The annotations by which Helm recognises an object as its release's (and adopts it on install). */
export function withHelmOwnership(manifests: string): string {
  return parseAllDocuments(manifests)
    .map((d) => d.toJS() as { metadata?: { annotations?: Record<string, string> } } | null)
    .filter((o): o is { metadata: { annotations?: Record<string, string> } } => !!o?.metadata)
    .map((o) => {
      o.metadata.annotations = {
        ...o.metadata.annotations,
        "meta.helm.sh/release-name": RELEASE,
        "meta.helm.sh/release-namespace": CHART_NAMESPACE,
      };
      return JSON.stringify(o);
    })
    .join("\n---\n");
}
