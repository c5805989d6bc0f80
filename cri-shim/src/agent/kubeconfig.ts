// The node agent's kubeconfig as @kubernetes/client-node loads it, plus client-go's `tokenFile`,
// which client-node ignores (it knows only its own `token-file`, read once and not made relative to
// the file). The kubeconfig the chart's node-credentials DaemonSet writes for a shim under systemd
// (tools/node-agent-credentials.ts) names its token that way, relative to its own directory, and
// the kubelet rotates that token: without this the agent would talk to the apiserver anonymously.
// A `tokenFile` becomes client-node's file token source (what its in-cluster config uses), which
// reads the file again once a minute.
import { KubeConfig } from "@kubernetes/client-node";
import { readFileSync } from "node:fs";
import { dirname, isAbsolute, join } from "node:path";
import { parse } from "yaml";

interface UserEntry {
  name?: unknown;
  user?: { tokenFile?: unknown; token?: unknown };
}

/** Loads `path`; users with a client-go `tokenFile` (and no inline token) read it through client-node's file auth. */
export function loadAgentKubeconfig(path: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(path);
  const doc = parse(readFileSync(path, "utf8")) as { users?: UserEntry[] } | null;
  const tokenFiles = new Map<string, string>();
  for (const u of doc?.users ?? [])
    if (typeof u.name === "string" && typeof u.user?.tokenFile === "string" && u.user.token === undefined)
      tokenFiles.set(
        u.name,
        isAbsolute(u.user.tokenFile) ? u.user.tokenFile : join(dirname(path), u.user.tokenFile),
      );
  if (tokenFiles.size === 0) return kc;
  kc.loadFromOptions({
    clusters: kc.clusters,
    contexts: kc.contexts,
    currentContext: kc.currentContext,
    users: kc.users.map((u) => {
      const file = tokenFiles.get(u.name);
      return file ? { ...u, authProvider: { name: "tokenFile", config: { tokenFile: file } } } : u;
    }),
  });
  return kc;
}
