// lib/oci against a real registry (Debian's docker-registry on loopback): a round trip with digest
// verification cross-checked by skopeo, and every kind of bad image refused with a clear error and
// nothing left in the store. (Auth: auth.test.ts; other formats: pull-formats.test.ts.)
import anyTest, { type TestFn } from "ava";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import { startRegistry, type TestRegistry } from "../../e2e/harness/registry.js";
import { buildUnikernelImage, pushImage, RegistryClient } from "./index.js";
import { writeTar } from "./tar.js";
import {
  fakeKernel,
  kernelLayer,
  newStore,
  ourAnnotations,
  pushRawImage,
  refusedLeavingNothing,
  sha256,
  snapshotTree,
} from "./testing.js";

const run = promisify(execFile);
const test = anyTest as TestFn<{ plain: TestRegistry }>;

test.before(async (t) => {
  t.context = { plain: await startRegistry() };
});
test.after.always(async (t) => {
  await t.context.plain?.stop();
});

test("push -> pull round trip: digests verified, kernel bytes intact, skopeo sees what we pushed", async (t) => {
  const { plain } = t.context;
  const kernel = fakeKernel();
  const initrd = randomBytes(10_000);
  const image = buildUnikernelImage({
    kernel,
    initrd,
    cmdline: "console=hvc0 hello",
    memoryMiB: 8,
    guestType: "pv",
  });
  const ref = `${plain.host}/roundtrip/hello:v1`;
  const pushed = await pushImage(image, ref, { plainHttp: true });
  t.is(pushed.digest, image.manifestDigest);

  // Independent check: skopeo reads the registry and must find exactly our manifest.
  const raw = await run("skopeo", ["inspect", "--raw", "--tls-verify=false", `docker://${ref}`]);
  t.is(sha256(Buffer.from(raw.stdout)), pushed.digest);
  const info = JSON.parse(
    (await run("skopeo", ["inspect", "--tls-verify=false", `docker://${ref}`])).stdout,
  ) as { Digest: string; Labels: Record<string, string> };
  t.is(info.Digest, pushed.digest);
  t.is(info.Labels["superfluid.dev/unikernel.kernel"], "unikernel/kernel");

  const store = await newStore(t);
  const record = await store.pull(ref, { plainHttp: true });
  t.is(record.digest, pushed.digest);
  t.deepEqual(record.refs, [ref]);
  t.deepEqual(record.repoDigests, [`${plain.host}/roundtrip/hello@${pushed.digest}`]);
  t.deepEqual(await readFile(record.kernelPath), kernel);
  t.deepEqual(await readFile(record.initrdPath!), initrd);
  t.like(record.config, {
    dialect: "superfluid",
    guestType: "pv",
    cmdline: "console=hvc0 hello",
    memoryMiB: 8,
    hypervisor: "xen",
  });
  t.is(record.sizeBytes, pushed.sizeBytes);

  // Every stored blob is named by its content's digest.
  for (const digest of [record.digest, record.id])
    t.is(sha256(await readFile(join(store.root, "blobs", "sha256", digest.slice(7)))), digest);

  for (const key of [ref, record.digest, record.id, record.repoDigests[0]!])
    t.is((await store.get(key))?.digest, record.digest, `get(${key})`);
  const again = await store.pull(`${plain.host}/roundtrip/hello@${pushed.digest}`, { plainHttp: true });
  t.is(again.digest, record.digest);
  t.is((await store.list()).length, 1);
  t.true((await store.fsInfo()).usedBytes > kernel.length + initrd.length);

  t.true(await store.remove(ref));
  t.deepEqual(await store.list(), []);
  const left = (await snapshotTree(store.root)).filter((l) => /^(blobs\/sha256|unpacked|tmp)\//.test(l));
  t.deepEqual(left, [], "removing the last reference garbage-collects blobs and the unpacked kernel");
  t.false(await store.remove(ref));
});

test("a tampered blob in the registry's storage is refused by digest and leaves nothing", async (t) => {
  const { plain } = t.context;
  const ref = `${plain.host}/tamper/hello:v1`;
  const image = buildUnikernelImage({ kernel: fakeKernel() });
  await pushImage(image, ref, { plainHttp: true });
  const layerDigest = [...image.blobs.keys()].find((d) => image.blobs.get(d)!.length > 1000)!;
  const path = plain.blobDataPath(layerDigest);
  const bytes = await readFile(path);
  bytes.writeUInt8(bytes[bytes.length - 100]! ^ 0xff, bytes.length - 100); // same length, one byte flipped
  await writeFile(path, bytes);
  const store = await newStore(t);
  await refusedLeavingNothing(
    t,
    store,
    ref,
    { plainHttp: true },
    {
      code: "DigestMismatch",
      message: new RegExp(`layer ${layerDigest}: content digest sha256:[0-9a-f]{64} does not match`),
    },
  );
});

test("a tampered manifest in the registry's storage is refused against the registry's digest", async (t) => {
  const { plain } = t.context;
  const ref = `${plain.host}/tamper/manifest:v1`;
  const image = buildUnikernelImage({ kernel: fakeKernel(2000), cmdline: "abc" });
  await pushImage(image, ref, { plainHttp: true });
  const path = plain.blobDataPath(image.manifestDigest);
  const text = (await readFile(path, "utf8")).replace('"abc"', '"xyz"'); // still valid JSON, same length
  await writeFile(path, text);
  const store = await newStore(t);
  await refusedLeavingNothing(
    t,
    store,
    ref,
    { plainHttp: true },
    {
      code: "DigestMismatch",
      message: /does not match the registry's Docker-Content-Digest/,
    },
  );
  // By digest, the reference itself is what the content is checked against.
  await refusedLeavingNothing(
    t,
    store,
    `${plain.host}/tamper/manifest@${image.manifestDigest}`,
    { plainHttp: true },
    {
      code: "DigestMismatch",
      message: /does not match/,
    },
  );
});

test("a layer longer than its descriptor declares is refused while streaming", async (t) => {
  const client = new RegistryClient(t.context.plain.host, { plainHttp: true });
  const layer = kernelLayer([{ path: "unikernel/kernel", data: fakeKernel() }]);
  await pushRawImage(client, "liar", "v1", {
    layers: [{ bytes: layer, declaredSize: 1000 }],
    annotations: ourAnnotations(),
  });
  const store = await newStore(t);
  await refusedLeavingNothing(
    t,
    store,
    `${t.context.plain.host}/liar:v1`,
    { plainHttp: true },
    { code: "DigestMismatch", message: /longer than the 1000 bytes its descriptor declares/ },
  );
});

test("wrong media types are refused before any layer is fetched", async (t) => {
  const { plain } = t.context;
  const client = new RegistryClient(plain.host, { plainHttp: true });
  const layer = kernelLayer([{ path: "unikernel/kernel", data: fakeKernel(1024) }]);
  await pushRawImage(client, "mediatype", "zstd", {
    layers: [{ bytes: layer, mediaType: "application/vnd.oci.image.layer.v1.tar+zstd" }],
    annotations: ourAnnotations(),
  });
  await pushRawImage(client, "mediatype", "config", {
    layers: [{ bytes: layer }],
    configMediaType: "application/vnd.example.unknown+json",
    annotations: ourAnnotations(),
  });
  const store = await newStore(t);
  await refusedLeavingNothing(
    t,
    store,
    `${plain.host}/mediatype:zstd`,
    { plainHttp: true },
    {
      code: "UnsupportedMediaType",
      message: /has media type "application\/vnd\.oci\.image\.layer\.v1\.tar\+zstd"/,
    },
  );
  await refusedLeavingNothing(
    t,
    store,
    `${plain.host}/mediatype:config`,
    { plainHttp: true },
    {
      code: "UnsupportedMediaType",
      message: /config media type "application\/vnd\.example\.unknown\+json" is not an image config/,
    },
  );
});

test("a layer with path traversal is refused, nothing escapes and nothing is left", async (t) => {
  const client = new RegistryClient(t.context.plain.host, { plainHttp: true });
  const layer = kernelLayer([
    { path: "unikernel/kernel", data: fakeKernel(1024) },
    { path: "../../escaped-by-layer", data: Buffer.from("pwned") },
  ]);
  await pushRawImage(client, "traversal", "v1", {
    layers: [{ bytes: layer }],
    annotations: ourAnnotations(),
  });
  const store = await newStore(t);
  await refusedLeavingNothing(
    t,
    store,
    `${t.context.plain.host}/traversal:v1`,
    { plainHttp: true },
    {
      code: "UnsafeLayer",
      message: /"\.\.\/\.\.\/escaped-by-layer" contains '\.\.' \(path traversal\); refused/,
    },
  );
  await t.throwsAsync(readFile(join(store.root, "..", "escaped-by-layer")));
  await t.throwsAsync(readFile(join(store.root, "escaped-by-layer")));
});

test("oversized layers are refused: by descriptor before download, and by unpacked size (gzip bomb)", async (t) => {
  const { plain } = t.context;
  await pushImage(buildUnikernelImage({ kernel: fakeKernel(256 * 1024) }), `${plain.host}/big:v1`, {
    plainHttp: true,
  });
  const store = await newStore(t, { limits: { maxLayerBytes: 64 * 1024 } });
  await refusedLeavingNothing(
    t,
    store,
    `${plain.host}/big:v1`,
    { plainHttp: true },
    {
      code: "TooLarge",
      message: /layer sha256:[0-9a-f]{64} is \d+ bytes, over the 65536-byte limit; refused/,
    },
  );

  const client = new RegistryClient(plain.host, { plainHttp: true });
  const bomb = gzipSync(writeTar([{ path: "unikernel/kernel", data: Buffer.alloc(8 << 20) }]));
  await pushRawImage(client, "bomb", "v1", { layers: [{ bytes: bomb }], annotations: ourAnnotations() });
  const store2 = await newStore(t, { limits: { maxUnpackedBytes: 1 << 20 } });
  await refusedLeavingNothing(
    t,
    store2,
    `${plain.host}/bomb:v1`,
    { plainHttp: true },
    { code: "TooLarge", message: /unpacked content exceeds the 1048576-byte limit/ },
  );
});

test("a kernel path missing from the layer is refused naming the key", async (t) => {
  const client = new RegistryClient(t.context.plain.host, { plainHttp: true });
  const layer = kernelLayer([{ path: "boot/vmlinuz", data: fakeKernel(1024) }]);
  await pushRawImage(client, "nokernel", "v1", {
    layers: [{ bytes: layer }],
    annotations: ourAnnotations("unikernel/kernel"),
  });
  const store = await newStore(t);
  await refusedLeavingNothing(
    t,
    store,
    `${t.context.plain.host}/nokernel:v1`,
    { plainHttp: true },
    {
      formatKey: "superfluid.dev/unikernel.kernel",
      message:
        /superfluid\.dev\/unikernel\.kernel: names "unikernel\/kernel", which is not in the image's layers/,
    },
  );
});

test("bad references and unreachable registries fail fast with clear errors", async (t) => {
  const store = await newStore(t);
  await refusedLeavingNothing(
    t,
    store,
    "Not A Ref",
    {},
    { code: "InvalidReference", message: /image reference "Not A Ref"/ },
  );
  await refusedLeavingNothing(
    t,
    store,
    `${t.context.plain.host}/nothing-here:v1`,
    { plainHttp: true },
    { code: "NotFound", message: /not found/ },
  );
  // A closed port on loopback.
  await refusedLeavingNothing(
    t,
    store,
    "127.0.0.1:1/x:v1",
    { plainHttp: true },
    { code: "Network", message: /ECONNREFUSED/ },
  );
});
