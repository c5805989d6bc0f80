// Pulling images written in other shapes than ours, from a real registry: urunc's dialect in Docker
// v2 schema 2 media types, an image index with several platforms, and images made by independent
// tools (umoci + skopeo).
import anyTest, { type TestFn } from "ava";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import { ImageFormatError, URUNC_ANNOTATIONS } from "../../api/image-format.js";
import { startRegistry, type TestRegistry } from "../../e2e/harness/registry.js";
import { buildUnikernelImage, MEDIA_TYPES, pushImage, RegistryClient } from "./index.js";
import { writeTar } from "./tar.js";
import { fakeKernel, newStore, pushRawImage, snapshotTree } from "./testing.js";

const run = promisify(execFile);

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

/** Runs the umoci/skopeo steps that make and push an image, failing with their stderr. */
async function sh(cmd: string, args: string[]): Promise<void> {
  await run(cmd, args).catch((err: { stderr?: string }) => {
    throw new Error(`${cmd} ${args.join(" ")}: ${err.stderr ?? String(err)}`);
  });
}

/** An image made and pushed by umoci + skopeo (independent OCI tooling), with `files` in its layer. */
async function pushWithUmoci(
  host: string,
  work: string,
  name: string,
  files: Record<string, Buffer>,
  labels: Record<string, string>,
): Promise<string> {
  const layout = join(work, `${name}-layout`);
  const bundle = join(work, `${name}-bundle`);
  await sh("umoci", ["init", "--layout", layout]);
  await sh("umoci", ["new", "--image", `${layout}:latest`]);
  await sh("umoci", ["unpack", "--image", `${layout}:latest`, bundle]);
  for (const [path, data] of Object.entries(files)) {
    await mkdir(dirname(join(bundle, "rootfs", path)), { recursive: true });
    await writeFile(join(bundle, "rootfs", path), data);
  }
  await sh("umoci", ["repack", "--image", `${layout}:latest`, bundle]);
  const labelArgs = Object.entries(labels).flatMap(([k, v]) => ["--config.label", `${k}=${v}`]);
  if (labelArgs.length) await sh("umoci", ["config", "--image", `${layout}:latest`, ...labelArgs]);
  const ref = `${host}/umoci/${name}:latest`;
  await sh("skopeo", [
    "copy",
    "--quiet",
    "--dest-tls-verify=false",
    `oci:${layout}:latest`,
    `docker://${ref}`,
  ]);
  return ref;
}

test("images made by umoci and pushed by skopeo: a urunc one pulls; a Linux container image is refused", async (t) => {
  const work = await mkdtemp(join(tmpdir(), "sf-umoci-test-"));
  t.teardown(() => rm(work, { recursive: true, force: true }));
  const kernel = fakeKernel(12_000);
  const uruncRef = await pushWithUmoci(
    t.context.plain.host,
    work,
    "urunc",
    { "unikernel/app.xen": kernel },
    {
      [URUNC_ANNOTATIONS.binary]: "/unikernel/app.xen",
      [URUNC_ANNOTATIONS.hypervisor]: "xen",
      [URUNC_ANNOTATIONS.unikernelType]: "rumprun",
      [URUNC_ANNOTATIONS.cmdline]: "app --port 80",
    },
  );
  const store = await newStore(t);
  const record = await store.pull(uruncRef, { plainHttp: true });
  t.like(record.config, { dialect: "urunc", kernelPath: "unikernel/app.xen", cmdline: "app --port 80" });
  t.deepEqual(await readFile(record.kernelPath), kernel);

  const linuxRef = await pushWithUmoci(
    t.context.plain.host,
    work,
    "busybox",
    { "bin/busybox": await readFile("/bin/busybox") },
    {},
  );
  const before = await snapshotTree(store.root);
  const err = await t.throwsAsync(store.pull(linuxRef, { plainHttp: true }), {
    instanceOf: ImageFormatError,
  });
  t.regex(
    err?.message ?? "",
    /not a unikernel image: none of superfluid\.dev\/unikernel\.kernel, com\.urunc\.unikernel\.binary or org\.unikraft\.kernel\.image is set/,
  );
  t.deepEqual(await snapshotTree(store.root), before, "nothing left on disk");
});

test("a KraftKit-shaped image (kernel and initrd in separate annotated layers, args in Cmd) pulls", async (t) => {
  const client = new RegistryClient(t.context.plain.host, { plainHttp: true });
  const kernel = fakeKernel(6000);
  const initrd = fakeKernel(3000);
  await pushRawImage(client, "unikraft/nginx", "xen", {
    layers: [
      {
        bytes: writeTar([{ path: "unikraft/bin/kernel", data: kernel }]),
        mediaType: MEDIA_TYPES.ociLayerTar,
        annotations: {
          "org.unikraft.kernel.image": "/unikraft/bin/kernel",
          "org.unikraft.kernel.plat": "xen",
          "org.unikraft.kernel.arch": "x86_64",
        },
      },
      {
        bytes: writeTar([{ path: "unikraft/bin/initrd", data: initrd }]),
        mediaType: MEDIA_TYPES.ociLayerTar,
        annotations: { "org.unikraft.kernel.initrd": "/unikraft/bin/initrd" },
      },
    ],
    config: {
      architecture: "amd64",
      os: "linux",
      config: { Cmd: ["/usr/bin/nginx", "-c", "/etc/nginx.conf"] },
      rootfs: { type: "layers", diff_ids: [] },
    },
  });
  const store = await newStore(t);
  const record = await store.pull(`${t.context.plain.host}/unikraft/nginx:xen`, { plainHttp: true });
  t.like(record.config, {
    dialect: "unikraft",
    kernelPath: "unikraft/bin/kernel",
    initrdPath: "unikraft/bin/initrd",
    cmdline: "/usr/bin/nginx -c /etc/nginx.conf",
  });
  t.deepEqual(await readFile(record.kernelPath), kernel);
  t.deepEqual(await readFile(record.initrdPath!), initrd);
});
