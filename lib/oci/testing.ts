// Test helpers: push hand-made (also deliberately broken) images straight to a registry, and
// snapshot a store's files to show a failed pull left nothing behind.
import type { ExecutionContext } from "ava";
import { createHash, randomBytes } from "node:crypto";
import { lstat, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { IMAGE_ANNOTATIONS, ImageFormatError } from "../../api/image-format.js";
import { sha256Digest } from "./digest.js";
import { MEDIA_TYPES } from "./media-types.js";
import { RegistryClient } from "./registry-client.js";
import { ImageStore, type ImageStoreOptions } from "./store.js";
import { writeTar, type TarWriteEntry } from "./tar.js";
import { OciError, type OciErrorCode } from "./types.js";

export interface RawLayer {
  bytes: Buffer;
  mediaType?: string;
  annotations?: Record<string, string>;
  /** A descriptor size that lies about the blob. */
  declaredSize?: number;
  /** A descriptor digest that lies about the blob (the blob is uploaded under its true digest). */
  declaredDigest?: string;
}

export interface RawImage {
  layers: RawLayer[];
  annotations?: Record<string, string>;
  config?: Record<string, unknown>;
  configMediaType?: string;
  manifestMediaType?: string;
}

/** Pushes blobs and a manifest exactly as described; returns the manifest digest. */
export async function pushRawImage(
  client: RegistryClient,
  repository: string,
  tag: string,
  image: RawImage,
): Promise<string> {
  const configBytes = Buffer.from(
    JSON.stringify(
      image.config ?? { architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [] } },
    ),
  );
  const configDigest = sha256Digest(configBytes);
  await client.pushBlob(repository, configDigest, configBytes.length, () => configBytes);
  const layers = [];
  for (const l of image.layers) {
    const digest = sha256Digest(l.bytes);
    await client.pushBlob(repository, digest, l.bytes.length, () => l.bytes);
    layers.push({
      mediaType: l.mediaType ?? MEDIA_TYPES.ociLayerGzip,
      digest: l.declaredDigest ?? digest,
      size: l.declaredSize ?? l.bytes.length,
      ...(l.annotations ? { annotations: l.annotations } : {}),
    });
  }
  const mediaType = image.manifestMediaType ?? MEDIA_TYPES.ociManifest;
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType,
      config: {
        mediaType: image.configMediaType ?? MEDIA_TYPES.ociConfig,
        digest: configDigest,
        size: configBytes.length,
      },
      layers,
      ...(image.annotations ? { annotations: image.annotations } : {}),
    }),
  );
  return client.putManifest(repository, tag, manifest, mediaType);
}

/** A gzipped layer of `entries`, and our annotations naming `kernel` in it. */
export function kernelLayer(entries: TarWriteEntry[]): Buffer {
  return gzipSync(writeTar(entries));
}

export function ourAnnotations(kernelPath = "unikernel/kernel"): Record<string, string> {
  return { [IMAGE_ANNOTATIONS.kernel]: kernelPath, [IMAGE_ANNOTATIONS.hypervisor]: "xen" };
}

/** Every path under `root` with its size (directories as -1), sorted: equal snapshots, equal trees. */
export async function snapshotTree(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const rel of (await readdir(root, { recursive: true })).map(String)) {
    const st = await lstat(join(root, rel));
    out.push(`${rel} ${st.isDirectory() ? -1 : st.size}`);
  }
  return out.sort();
}

/** A fake kernel: an ELF header and random bytes (incompressible, so sizes mean something). */
export function fakeKernel(bytes = 64 * 1024): Buffer {
  const k = randomBytes(bytes);
  Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]).copy(k);
  return k;
}

export const sha256 = (b: Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

export async function newStore(
  t: { teardown: (fn: () => Promise<void>) => void },
  opts?: ImageStoreOptions,
): Promise<ImageStore> {
  const root = await mkdtemp(join(tmpdir(), "sf-store-test-"));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const store = new ImageStore(root, opts);
  await store.list(); // creates the layout, so snapshots compare like with like
  return store;
}

/** Pulls expecting a refusal; asserts the error and that the store's files did not change. */
export async function refusedLeavingNothing(
  t: ExecutionContext<unknown>,
  store: ImageStore,
  ref: string,
  opts: Parameters<ImageStore["pull"]>[1],
  expect: { code?: OciErrorCode; message: RegExp; formatKey?: string },
): Promise<void> {
  const before = await snapshotTree(store.root);
  const err = await t.throwsAsync(store.pull(ref, opts));
  if (expect.code !== undefined) {
    t.true(err instanceof OciError, `an OciError, got ${String(err)}`);
    t.is((err as OciError).code, expect.code);
  }
  if (expect.formatKey !== undefined) {
    t.true(err instanceof ImageFormatError);
    t.is((err as ImageFormatError).key, expect.formatKey);
  }
  t.regex(err?.message ?? "", expect.message);
  t.deepEqual(await snapshotTree(store.root), before, "the failed pull left nothing on disk");
  t.is(await store.get(ref), undefined);
}
