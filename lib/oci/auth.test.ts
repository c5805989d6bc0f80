// Auth against real registries: TLS with our CA + htpasswd basic auth, and Bearer tokens (registry
// in token mode + a token service that signs ES256 JWTs the registry verifies: the flow Docker Hub,
// ghcr.io and Harbor use).
import anyTest, { type TestFn } from "ava";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startRegistry, type TestRegistry } from "../../e2e/harness/registry.js";
import { httpRequest, readText } from "./http.js";
import { buildUnikernelImage, ImageStore, OciError, pushImage } from "./index.js";
import { fakeKernel, refusedLeavingNothing, snapshotTree } from "./testing.js";

const test = anyTest as TestFn<{ registry: TestRegistry; secure: TestRegistry }>;

test.before(async (t) => {
  const [registry, secure] = await Promise.all([
    startRegistry({ tokenAuth: true }),
    startRegistry({ tls: true }),
  ]);
  t.context = { registry, secure };
});
test.after.always(async (t) => {
  await Promise.all([t.context.registry?.stop(), t.context.secure?.stop()]);
});

async function newStore(t: { teardown: (fn: () => Promise<void>) => void }): Promise<ImageStore> {
  const root = await mkdtemp(join(tmpdir(), "sf-store-auth-test-"));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const store = new ImageStore(root);
  await store.list();
  return store;
}

test("push and pull with Bearer tokens from the registry's token service", async (t) => {
  const { registry } = t.context;
  const user = registry.user!;
  const kernel = randomBytes(20_000);
  const ref = `${registry.host}/token/hello:v1`;
  const issuedBefore = registry.tokenServer!.issued;
  const pushed = await pushImage(buildUnikernelImage({ kernel }), ref, { plainHttp: true, auth: user });
  const store = await newStore(t);
  const record = await store.pull(ref, { plainHttp: true, auth: user });
  t.is(record.digest, pushed.digest);
  t.deepEqual(await readFile(record.kernelPath), kernel);
  t.true(registry.tokenServer!.issued > issuedBefore, "tokens were issued by the token service");
});

test.serial("a token obtained elsewhere works as CRI's registryToken", async (t) => {
  const { registry } = t.context;
  const user = registry.user!;
  const ref = `${registry.host}/token/preauth:v1`;
  await pushImage(buildUnikernelImage({ kernel: randomBytes(1000) }), ref, { plainHttp: true, auth: user });
  const url = new URL(registry.tokenServer!.realm);
  url.searchParams.set("service", registry.tokenServer!.service);
  url.searchParams.set("scope", "repository:token/preauth:pull");
  const res = await httpRequest({
    method: "GET",
    url,
    headers: {
      Authorization: `Basic ${Buffer.from(`${user.username}:${user.password}`).toString("base64")}`,
    },
    tls: { rejectUnauthorized: true },
  });
  const token = (JSON.parse(await readText(res.body)) as { token: string }).token;
  const issued = registry.tokenServer!.issued;
  const store = await newStore(t);
  const record = await store.pull(ref, { plainHttp: true, auth: { registryToken: token } });
  t.is((await readFile(record.kernelPath)).length, 1000);
  // Serial, so no other test asks the token service for anything meanwhile.
  t.is(registry.tokenServer!.issued, issued, "the given token was used as is");
});

test("wrong credentials are refused by the token service, clearly, leaving nothing", async (t) => {
  const { registry } = t.context;
  const ref = `${registry.host}/token/denied:v1`;
  await pushImage(buildUnikernelImage({ kernel: randomBytes(1000) }), ref, {
    plainHttp: true,
    auth: registry.user!,
  });
  const store = await newStore(t);
  const before = await snapshotTree(store.root);
  const err = await t.throwsAsync(
    store.pull(ref, { plainHttp: true, auth: { username: "superfluid", password: "wrong" } }),
    { instanceOf: OciError },
  );
  t.is(err?.code, "Unauthorized");
  t.regex(
    err?.message ?? "",
    /token service http:\/\/127\.0\.0\.1:\d+ refused user "superfluid" for repository:token\/denied:pull \(HTTP 401\)/,
  );
  const anon = await t.throwsAsync(store.pull(ref, { plainHttp: true }), { instanceOf: OciError });
  t.regex(anon?.message ?? "", /refused anonymous/);
  t.deepEqual(await snapshotTree(store.root), before);
});

test("TLS + basic auth: the right password pulls; a wrong one, none, or an unknown CA is refused clearly", async (t) => {
  const { secure } = t.context;
  const user = secure.user!;
  const ref = `${secure.host}/private/hello:v1`;
  const auth = { username: user.username, password: user.password };
  await pushImage(buildUnikernelImage({ kernel: fakeKernel(4096) }), ref, { caFile: secure.caFile!, auth });

  const store = await newStore(t);
  await refusedLeavingNothing(
    t,
    store,
    ref,
    { caFile: secure.caFile!, auth: { username: user.username, password: "wrong" } },
    {
      code: "Unauthorized",
      message: /refused user "superfluid" \(HTTP 401: wrong username or password\?\)/,
    },
  );
  await refusedLeavingNothing(
    t,
    store,
    ref,
    { caFile: secure.caFile! },
    { code: "Unauthorized", message: /requires a username and password and none were given/ },
  );
  await refusedLeavingNothing(t, store, ref, { auth }, { code: "Network", message: /certificate/ });
  // CRI's AuthConfig.auth form: base64("user:password").
  const record = await store.pull(ref, {
    caFile: secure.caFile!,
    auth: { auth: Buffer.from(`${user.username}:${user.password}`).toString("base64") },
  });
  t.is((await readFile(record.kernelPath)).length, 4096);
  // Skipping verification (tests only) reaches it without the CA.
  const again = await store.pull(ref, { insecureSkipTLSVerify: true, auth });
  t.is(again.digest, record.digest);
});
