// The node agent's credentials for a shim under systemd, against the real apiserver: a token from
// the TokenRequest API (what the kubelet projects into the node DaemonSet's pod) is copied under a
// temp root with the CA and a kubeconfig; that kubeconfig authenticates as the ServiceAccount; a
// rotated token reaches an already loaded client without reloading it (within its 10 s credential
// refresh); bad input is refused.
import test from "ava";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { useCluster } from "../e2e/harness/ava.js";
import { KubeClient } from "../lib/kube/client.js";
import { loadKubeconfigFile } from "../lib/kube/kubeconfig.js";
import { waitFor } from "../lib/net.js";
import { AGENT_CREDENTIALS_DIR, syncCredentials } from "./node-agent-credentials.js";

const cluster = useCluster(test, "agent-creds");
const dir = mkdtempSync(join(tmpdir(), "sf-agent-creds-"));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

async function tokenFor(sa: string): Promise<string> {
  const c = cluster();
  const created = await c.kubectl(["create", "serviceaccount", sa]);
  if (created.code !== 0 && !/already exists/.test(created.stderr)) throw new Error(created.stderr);
  const r = await c.kubectl(["create", "token", sa, "--duration=10m"]);
  if (r.code !== 0) throw new Error(r.stderr);
  return r.stdout.trim();
}

async function whoami(client: KubeClient): Promise<string | undefined> {
  const review = await client.request<{ status?: { userInfo?: { username?: string } } }>({
    method: "POST",
    path: "/apis/authentication.k8s.io/v1/selfsubjectreviews",
    body: { apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" },
  });
  return review.status?.userInfo?.username;
}

test.serial(
  "the host copy authenticates as the ServiceAccount and follows the pod's token as it rotates",
  async (t) => {
    const c = cluster();
    const from = join(dir, "sa");
    const root = join(dir, "host");
    mkdirSync(from, { recursive: true });
    writeFileSync(join(from, "ca.crt"), readFileSync(c.cp.pki.caCert));
    writeFileSync(join(from, "token"), await tokenFor("agent-one"));

    t.deepEqual(syncCredentials(root, { from, server: c.cp.server }).sort(), [
      "ca.crt",
      "kubeconfig",
      "token",
    ]);
    const agentDir = join(root, AGENT_CREDENTIALS_DIR);
    t.is(statSync(join(agentDir, "token")).mode & 0o777, 0o600);
    t.is(statSync(join(agentDir, "kubeconfig")).mode & 0o777, 0o600);
    const creds = await loadKubeconfigFile(join(agentDir, "kubeconfig"));
    const client = new KubeClient(creds);
    try {
      t.is(await whoami(client), `system:serviceaccount:${c.namespace}:agent-one`);
      // Nothing changed: nothing is rewritten.
      t.deepEqual(syncCredentials(root, { from, server: c.cp.server }), []);

      // The kubelet rotates the projected token: only the token file changes, and the client that
      // loaded the kubeconfig before uses the new one on its next request.
      writeFileSync(join(from, "token"), await tokenFor("agent-two"));
      t.deepEqual(syncCredentials(root, { from, server: c.cp.server }), ["token"]);
      // (The client re-reads its credentials every 10 s, not per request.)
      const rotated = await waitFor(
        "the rotated token in use",
        async () => ((await whoami(client))?.endsWith(":agent-two") ? true : undefined),
        30_000,
        500,
      );
      t.true(rotated);
    } finally {
      client.close();
    }
  },
);

test.serial(
  "the shim's node agent authenticates with the written kubeconfig (client-go's tokenFile)",
  async (t) => {
    const c = cluster();
    const path = join(dir, "host", AGENT_CREDENTIALS_DIR, "kubeconfig");
    // The written kubeconfig names its token as client-go does (tokenFile, relative to it), which
    // client-node's own loader skips: the agent loads it with the project's loader, as this does.
    t.regex(readFileSync(path, "utf8"), /tokenFile: token\b/);
    const client = new KubeClient(await loadKubeconfigFile(path));
    try {
      t.is(await whoami(client), `system:serviceaccount:${c.namespace}:agent-two`);
    } finally {
      client.close();
    }
  },
);

test.serial("bad input is refused and leaves the last good credentials in place", (t) => {
  const from = join(dir, "bad");
  const root = join(dir, "host");
  mkdirSync(from, { recursive: true });
  writeFileSync(join(from, "ca.crt"), "CA");
  writeFileSync(join(from, "token"), "");
  const before = readFileSync(join(root, AGENT_CREDENTIALS_DIR, "token"), "utf8");
  t.throws(() => syncCredentials(root, { from, server: "https://127.0.0.1:1" }), { message: /is empty/ });
  writeFileSync(join(from, "token"), "x");
  t.throws(() => syncCredentials(root, { from, server: "http://127.0.0.1:1" }), { message: /https/ });
  t.is(readFileSync(join(root, AGENT_CREDENTIALS_DIR, "token"), "utf8"), before);
});
