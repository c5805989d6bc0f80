// The e2e cluster's chart objects against a real kube-apiserver (a private one: ClusterRoles and the
// RuntimeClass are cluster-scoped): the RuntimeClass places pods on tainted Xen nodes, and the node
// agent's token authenticates as the shim's ServiceAccount with the node-agent role and nothing more.
import test from "ava";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { k8sBinary } from "../../lib/paths.js";
import { runAsync } from "../../lib/process.js";
import { type ControlPlane, startControlPlane } from "../harness/control-plane.js";
import { installChartObjects, NODE_AGENT_USER, nodeAgentToken } from "./chart-objects.js";
import { XEN_TAINT } from "./kubelet.js";

let cp: ControlPlane | undefined;
test.after.always(async () => {
  await cp?.stop();
});

test("the chart's RuntimeClass and the node agent's least-privilege token", async (t) => {
  t.timeout(5 * 60_000);
  cp = await startControlPlane();
  await installChartObjects(cp);
  // Idempotent: a second bring-up against the same apiserver does not fail.
  await installChartObjects(cp);

  const rc = JSON.parse((await cp.kubectl(["get", "runtimeclass", "superfluid", "-o", "json"])).stdout) as {
    handler: string;
    scheduling: { nodeSelector: Record<string, string>; tolerations: Array<Record<string, string>> };
  };
  t.is(rc.handler, "superfluid");
  t.deepEqual(rc.scheduling.nodeSelector, { [XEN_TAINT.key]: "true" });
  t.deepEqual(rc.scheduling.tolerations, [
    { key: XEN_TAINT.key, operator: "Equal", value: XEN_TAINT.value, effect: XEN_TAINT.effect },
  ]);

  // The token, used as the agent uses it: a kubeconfig with nothing but the bearer token.
  const token = await nodeAgentToken(cp);
  const kubeconfig = join(cp.dir, "node-agent.kubeconfig");
  writeFileSync(
    kubeconfig,
    stringify({
      apiVersion: "v1",
      kind: "Config",
      clusters: [{ name: "c", cluster: { server: cp.server, "certificate-authority": cp.pki.caCert } }],
      users: [{ name: "agent", user: { token } }],
      contexts: [{ name: "c", context: { cluster: "c", user: "agent" } }],
      "current-context": "c",
    }),
    { mode: 0o600 },
  );
  const asAgent = (args: string[]) =>
    runAsync(k8sBinary("kubectl"), ["--kubeconfig", kubeconfig, ...args], { timeoutMs: 60_000 });
  const whoami = await asAgent(["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]);
  t.is(whoami.stdout.trim(), NODE_AGENT_USER, whoami.stderr);
  const listed = await asAgent(["get", "unikernelvms", "-A"]);
  t.is(listed.code, 0, listed.stderr);
  const refused = await asAgent(["delete", "pods", "--all", "-n", "default"]);
  t.not(refused.code, 0);
  t.regex(refused.stderr, /forbidden/);

  const can = async (verb: string, resource: string, ...more: string[]) =>
    (await asAgent(["auth", "can-i", verb, resource, ...more, "-n", "default"])).stdout.trim();
  t.is(await can("patch", "unikernelvms.superfluid.dev", "--subresource=status"), "yes");
  t.is(await can("patch", "pods"), "no", "the agent reports on the VM, never on the pod");
  t.is(await can("patch", "unikernelvms.superfluid.dev"), "no");
  t.is(await can("create", "pods"), "no");
  t.is(await can("get", "secrets"), "no");
});
