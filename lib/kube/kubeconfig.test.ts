import test from "ava";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type { RequestOptions } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inClusterCredentials, loadKubeconfigFile } from "./kubeconfig.js";

const dir = mkdtempSync(join(tmpdir(), "sf-kc-"));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));
const b64 = (s: string) => Buffer.from(s).toString("base64");

test("a kubeconfig's current context: server, CA, client certificate, token, namespace", async (t) => {
  writeFileSync(join(dir, "ca.pem"), "CA");
  const path = join(dir, "config");
  writeFileSync(
    path,
    `apiVersion: v1
kind: Config
current-context: b
contexts:
- name: a
  context: { cluster: other, user: other }
- name: b
  context: { cluster: c1, user: u1, namespace: apps }
clusters:
- name: other
  cluster: { server: https://wrong:1 }
- name: c1
  cluster: { server: "https://127.0.0.1:6443", certificate-authority: ca.pem, tls-server-name: kubernetes }
users:
- name: u1
  user: { client-certificate-data: ${b64("CERT")}, client-key-data: ${b64("KEY")}, token: t0k }
`,
  );
  const kc = await loadKubeconfigFile(path);
  t.deepEqual(kc.getCurrentCluster(), { server: "https://127.0.0.1:6443" });
  t.is(kc.namespace, "apps");
  const opts: RequestOptions = {};
  await kc.applyToHTTPSOptions(opts);
  t.is(String(opts.ca), "CA");
  t.is(String(opts.cert), "CERT");
  t.is(String(opts.key), "KEY");
  t.is(opts.servername, "kubernetes");
  t.is((opts.headers as Record<string, string>).Authorization, "Bearer t0k");
});

test("a kubeconfig without a current context is refused clearly", async (t) => {
  const path = join(dir, "empty");
  writeFileSync(path, "apiVersion: v1\nkind: Config\n");
  await t.throwsAsync(loadKubeconfigFile(path), { message: /no current context/ });
});

test("in-cluster: the service account's token is re-read on every call (it rotates)", async (t) => {
  const sa = join(dir, "sa");
  rmSync(sa, { recursive: true, force: true });
  const { mkdirSync } = await import("node:fs");
  mkdirSync(sa);
  writeFileSync(join(sa, "ca.crt"), "CA");
  writeFileSync(join(sa, "token"), "one\n");
  writeFileSync(join(sa, "namespace"), "system");
  process.env.KUBERNETES_SERVICE_HOST = "10.96.0.1";
  process.env.KUBERNETES_SERVICE_PORT = "443";
  const kc = inClusterCredentials(sa);
  t.deepEqual(kc.getCurrentCluster(), { server: "https://10.96.0.1:443" });
  t.is(kc.namespace, "system");
  const first: RequestOptions = {};
  await kc.applyToHTTPSOptions(first);
  writeFileSync(join(sa, "token"), "two\n");
  const second: RequestOptions = {};
  await kc.applyToHTTPSOptions(second);
  t.is((first.headers as Record<string, string>).Authorization, "Bearer one");
  t.is((second.headers as Record<string, string>).Authorization, "Bearer two");
});

test("an exec credential plugin: run with its args, env and KUBERNETES_EXEC_INFO; its token kept until it expires", async (t) => {
  const plugin = join(dir, "bin", "plugin.sh");
  const { mkdirSync, chmodSync, readFileSync } = await import("node:fs");
  mkdirSync(join(dir, "bin"), { recursive: true });
  const runs = join(dir, "runs");
  writeFileSync(runs, "");
  // Prints a token that expires in 30 s: within the minute's margin, so every call runs it again.
  writeFileSync(
    plugin,
    `#!/bin/sh
echo "$1 $GREETING $KUBERNETES_EXEC_INFO" >> ${runs}
n=$(wc -l < ${runs})
exp=$(date -u -d @$(( $(date +%s) + \${EXPIRES_IN:-3600} )) +%Y-%m-%dT%H:%M:%SZ)
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"tok-%s","expirationTimestamp":"%s"}}' "$n" "$exp"
`,
  );
  chmodSync(plugin, 0o755);
  const config = (expiresIn: number) => `apiVersion: v1
kind: Config
current-context: x
contexts: [{ name: x, context: { cluster: c, user: u } }]
clusters: [{ name: c, cluster: { server: "https://127.0.0.1:6443" } }]
users:
- name: u
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: ./bin/plugin.sh
      args: [first]
      env: [{ name: GREETING, value: hello }, { name: EXPIRES_IN, value: "${expiresIn}" }]
      provideClusterInfo: true
`;
  const path = join(dir, "exec-config");
  writeFileSync(path, config(3600));
  const kc = await loadKubeconfigFile(path);
  const auth = async () => {
    const o: RequestOptions = {};
    await kc.applyToHTTPSOptions(o);
    return (o.headers as Record<string, string>).Authorization;
  };
  t.is(await auth(), "Bearer tok-1");
  t.is(await auth(), "Bearer tok-1", "an unexpired token is reused, not fetched per request");
  const [line] = readFileSync(runs, "utf8").trim().split("\n");
  const [arg, greeting, ...info] = line!.split(" ");
  t.is(arg, "first");
  t.is(greeting, "hello");
  t.like(JSON.parse(info.join(" ")), {
    kind: "ExecCredential",
    spec: { interactive: false, cluster: { server: "https://127.0.0.1:6443" } },
  });

  writeFileSync(path, config(30));
  const soon = await loadKubeconfigFile(path);
  const o: RequestOptions = {};
  await soon.applyToHTTPSOptions(o);
  await soon.applyToHTTPSOptions(o);
  t.is(
    (o.headers as Record<string, string>).Authorization,
    "Bearer tok-3",
    "a token about to expire is fetched again",
  );
});

test("an exec plugin that fails or prints no credential, and an auth-provider user, are refused clearly", async (t) => {
  const write = (name: string, user: string) => {
    const path = join(dir, name);
    writeFileSync(
      path,
      `apiVersion: v1
kind: Config
current-context: x
contexts: [{ name: x, context: { cluster: c, user: u } }]
clusters: [{ name: c, cluster: { server: "https://127.0.0.1:6443" } }]
users: [{ name: u, user: ${user} }]
`,
    );
    return path;
  };
  const apply = async (path: string) => (await loadKubeconfigFile(path)).applyToHTTPSOptions({});
  await t.throwsAsync(apply(write("fails", `{ exec: { command: /bin/false, installHint: "install it" } }`)), {
    message: /exec plugin \/bin\/false failed:[\s\S]*install it/,
  });
  await t.throwsAsync(apply(write("silent", `{ exec: { command: /bin/echo, args: ["{}"] } }`)), {
    message: /printed no credential/,
  });
  await t.throwsAsync(
    apply(write("old", `{ exec: { apiVersion: client.authentication.k8s.io/v1alpha1, command: x } }`)),
    {
      message: /v1alpha1 is not supported/,
    },
  );
  await t.throwsAsync(loadKubeconfigFile(write("provider", `{ auth-provider: { name: oidc } }`)), {
    message: /auth-provider, which is not supported/,
  });
});
