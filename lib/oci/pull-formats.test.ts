// Pulling images written in other shapes than ours, from a real registry: urunc's dialect in Docker
// v2 schema 2 media types, and an image index with several platforms.
import anyTest, { type TestFn } from "ava";
import { readFile } from "node:fs/promises";
import { gzipSync } from "node:zlib";
import { URUNC_ANNOTATIONS } from "../../api/image-format.js";
import { startRegistry, type TestRegistry } from "../../e2e/harness/registry.js";
import { buildUnikernelImage, MEDIA_TYPES, pushImage, RegistryClient } from "./index.js";
import { writeTar } from "./tar.js";
import { fakeKernel, newStore, pushRawImage } from "./testing.js";

const test = anyTest as TestFn<{ plain: TestRegistry }>;

test.before(async (t) => {
  t.context = { plain: await startRegistry() };
});
test.after.always(async (t) => {
  await t.context.plain?.stop();
});

test("a urunc-format image (keys as config labels) pulls to the same kind of record", async (t) => {
  const client = new RegistryClient(t.context.plain.host, { plainHttp: true });
  const kernel = fakeKernel(2048);
  const labels = {
    [URUNC_ANNOTATIONS.binary]: "/unikernel/app.xen",
    [URUNC_ANNOTATIONS.hypervisor]: "xen",
    [URUNC_ANNOTATIONS.unikernelType]: "mirage",
    [URUNC_ANNOTATIONS.cmdline]: "--ipv4=10.0.0.2/24",
  };
  await pushRawImage(client, "urunc", "v1", {
    layers: [
      {
        bytes: gzipSync(writeTar([{ path: "unikernel/app.xen", data: kernel }])),
        mediaType: MEDIA_TYPES.dockerLayerGzip,
      },
    ],
    config: {
      architecture: "amd64",
      os: "linux",
      config: { Labels: labels },
      rootfs: { type: "layers", diff_ids: [] },
    },
    configMediaType: MEDIA_TYPES.dockerConfig,
    manifestMediaType: MEDIA_TYPES.dockerManifest,
  });
  const store = await newStore(t);
  const record = await store.pull(`${t.context.plain.host}/urunc:v1`, { plainHttp: true });
  t.like(record.config, {
    dialect: "urunc",
    framework: "mirage",
    kernelPath: "unikernel/app.xen",
    cmdline: "--ipv4=10.0.0.2/24",
    guestType: "pv",
  });
  t.deepEqual(await readFile(record.kernelPath), kernel);
});

test("an image index resolves to its linux/amd64 manifest; concurrent pulls share one image", async (t) => {
  const { plain } = t.context;
  const client = new RegistryClient(plain.host, { plainHttp: true });
  const amd = buildUnikernelImage({ kernel: fakeKernel(3000) });
  const arm = buildUnikernelImage({ kernel: fakeKernel(3001) });
  await pushImage(amd, `${plain.host}/multi:amd64`, { plainHttp: true });
  await pushImage(arm, `${plain.host}/multi:arm64`, { plainHttp: true });
  const entry = (img: typeof amd, architecture: string) => ({
    mediaType: MEDIA_TYPES.ociManifest,
    digest: img.manifestDigest,
    size: img.manifest.length,
    platform: { os: "linux", architecture },
  });
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociIndex,
      manifests: [entry(arm, "arm64"), entry(amd, "amd64")],
    }),
  );
  await client.putManifest("multi", "latest", index, MEDIA_TYPES.ociIndex);
  const store = await newStore(t);
  const [a, b] = await Promise.all([
    store.pull(`${plain.host}/multi`, { plainHttp: true }),
    store.pull(`${plain.host}/multi:latest`, { plainHttp: true }),
  ]);
  t.is(a.digest, amd.manifestDigest);
  t.is(b.digest, amd.manifestDigest);
  t.deepEqual(
    (await store.list()).map((r) => r.refs),
    [[`${plain.host}/multi:latest`]],
  );
});
