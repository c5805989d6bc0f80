// The store's bookkeeping against a real registry: tags move and are removed one at a time, and a
// failed pull never takes blobs that another image still uses.
import anyTest, { type TestFn } from "ava";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { startRegistry, type TestRegistry } from "../../e2e/harness/registry.js";
import { buildUnikernelImage, ImageStore, pushImage, RegistryClient } from "./index.js";
import { writeTar } from "./tar.js";
import { ourAnnotations, pushRawImage } from "./testing.js";

const test = anyTest as TestFn<{ registry: TestRegistry }>;
test.before(async (t) => {
  t.context = { registry: await startRegistry() };
});
test.after.always(async (t) => {
  await t.context.registry?.stop();
});

async function newStore(t: { teardown: (fn: () => Promise<void>) => void }): Promise<ImageStore> {
  const root = await mkdtemp(join(tmpdir(), "sf-store-gc-test-"));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  return new ImageStore(root);
}

const blobCount = async (store: ImageStore) => (await readdir(join(store.root, "blobs", "sha256"))).length;

test("two tags of one image: removing one untags, removing the last collects everything; tags move", async (t) => {
  const host = t.context.registry.host;
  const image = buildUnikernelImage({ kernel: randomBytes(5000) });
  await pushImage(image, `${host}/gc/a:one`, { plainHttp: true });
  await pushImage(image, `${host}/gc/a:two`, { plainHttp: true });
  const store = await newStore(t);
  await store.pull(`${host}/gc/a:one`, { plainHttp: true });
  const record = await store.pull(`${host}/gc/a:two`, { plainHttp: true });
  t.deepEqual(record.refs, [`${host}/gc/a:one`, `${host}/gc/a:two`]);
  t.is(await blobCount(store), 3, "manifest, config and layer, stored once");

  t.true(await store.remove(`${host}/gc/a:one`));
  t.deepEqual((await store.get(record.id))?.refs, [`${host}/gc/a:two`]);
  t.is(await blobCount(store), 3);

  // The tag moves to a new image; the old one stays reachable by digest.
  const newer = buildUnikernelImage({ kernel: randomBytes(5000) });
  await pushImage(newer, `${host}/gc/a:two`, { plainHttp: true });
  const moved = await store.pull(`${host}/gc/a:two`, { plainHttp: true });
  t.is(moved.digest, newer.manifestDigest);
  t.deepEqual((await store.get(image.manifestDigest))?.refs, []);

  t.true(await store.remove(image.manifestDigest));
  t.true(await store.remove(`${host}/gc/a:two`));
  t.deepEqual(await store.list(), []);
  t.is(await blobCount(store), 0);
  t.deepEqual(await readdir(join(store.root, "unpacked")), []);
});

test("a failed pull that shares a layer with a stored image leaves that image whole", async (t) => {
  const host = t.context.registry.host;
  const kernel = randomBytes(8000);
  const good = buildUnikernelImage({ kernel });
  await pushImage(good, `${host}/gc/good:v1`, { plainHttp: true });
  const store = await newStore(t);
  const record = await store.pull(`${host}/gc/good:v1`, { plainHttp: true });
  const blobsBefore = (await readdir(join(store.root, "blobs", "sha256"))).sort();

  // Same layer blob, but the annotations name a kernel the layer does not hold.
  const layer = [...good.blobs.values()].find((b) => b.length > 1000)!;
  await pushRawImage(new RegistryClient(host, { plainHttp: true }), "gc/bad", "v1", {
    layers: [{ bytes: layer }],
    annotations: ourAnnotations("boot/missing"),
  });
  await t.throwsAsync(store.pull(`${host}/gc/bad:v1`, { plainHttp: true }), {
    message: /names "boot\/missing", which is not in the image's layers/,
  });

  t.deepEqual(
    (await readdir(join(store.root, "blobs", "sha256"))).sort(),
    blobsBefore,
    "only the failed pull's own blobs went",
  );
  t.deepEqual(await readFile(record.kernelPath), kernel);
  t.is((await store.list()).length, 1);
});

test("failing pulls running alongside a good one do not collect what it is writing", async (t) => {
  const host = t.context.registry.host;
  const client = new RegistryClient(host, { plainHttp: true });
  await pushRawImage(client, "gc/evil", "v1", {
    layers: [{ bytes: gzipSync(writeTar([{ path: "../evil", data: Buffer.from("x") }])) }],
    annotations: ourAnnotations(),
  });
  for (let round = 0; round < 3; round++) {
    const kernel = randomBytes(512 * 1024);
    const ref = `${host}/gc/busy:r${round}`;
    await pushImage(buildUnikernelImage({ kernel }), ref, { plainHttp: true });
    const store = await newStore(t);
    const failing = Array.from({ length: 6 }, (_, i) =>
      new Promise((r) => setTimeout(r, i * 15)).then(() =>
        store.pull(`${host}/gc/evil:v1`, { plainHttp: true }),
      ),
    );
    const [good, ...bad] = await Promise.allSettled([store.pull(ref, { plainHttp: true }), ...failing]);
    t.is(good?.status, "fulfilled");
    t.true(bad.every((r) => r.status === "rejected"));
    const record = await store.get(ref);
    t.deepEqual(await readFile(record!.kernelPath), kernel, `round ${round}: the good image is whole`);
  }
});
