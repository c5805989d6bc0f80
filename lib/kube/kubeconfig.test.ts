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
