// Packing a kernel (and initrd) into a unikernel OCI image, writing it as an OCI layout, reading a
// layout back, and pushing an image to a registry. Images are built in memory: kernels are small,
// and a deterministic build (fixed mtimes, owners, gzip header) gives the same digest every time.
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import {
  imageAnnotationsFor,
  parseImageAnnotations,
  type UnikernelImageConfig,
} from "../../api/image-format.js";
import type { GuestType } from "../../api/v1alpha1/unikernelvm.js";
import { digestHex, sha256Digest, verifyDigest } from "./digest.js";
import { MEDIA_TYPES, parseJsonDocument, parseManifest, type Descriptor } from "./media-types.js";
import { parseReference } from "./reference.js";
import { RegistryClient } from "./registry-client.js";
import { writeTar } from "./tar.js";
import { OciError, type RegistryOptions } from "./types.js";

export const KERNEL_PATH_IN_LAYER = "unikernel/kernel";
export const INITRD_PATH_IN_LAYER = "unikernel/initrd";

export interface BuildOptions {
  kernel: Buffer;
  initrd?: Buffer;
  cmdline?: string;
  memoryMiB?: number;
  guestType?: GuestType;
}

export interface BuiltImage {
  manifest: Buffer;
  manifestDigest: string;
  /** Every blob by digest: config and layers. */
  blobs: Map<string, Buffer>;
  config: UnikernelImageConfig;
}

function descriptor(mediaType: string, bytes: Buffer): Descriptor {
  return { mediaType, digest: sha256Digest(bytes), size: bytes.length };
}

export function buildUnikernelImage(opts: BuildOptions): BuiltImage {
  const annotations = imageAnnotationsFor({
    kernelPath: KERNEL_PATH_IN_LAYER,
    guestType: opts.guestType ?? "pv",
    cmdline: opts.cmdline ?? "",
    ...(opts.initrd ? { initrdPath: INITRD_PATH_IN_LAYER } : {}),
    ...(opts.memoryMiB !== undefined ? { memoryMiB: opts.memoryMiB } : {}),
  });
  // Parse what we are about to write: a build never produces an image a pull would refuse.
  const config = parseImageAnnotations({ manifest: annotations });
  const tar = writeTar([
    { path: "unikernel/", type: "directory" },
    { path: KERNEL_PATH_IN_LAYER, data: opts.kernel, mode: 0o644 },
    ...(opts.initrd ? [{ path: INITRD_PATH_IN_LAYER, data: opts.initrd, mode: 0o644 }] : []),
  ]);
  const layer = gzipSync(tar, { level: 9 });
  const configBlob = Buffer.from(
    JSON.stringify({
      architecture: "amd64",
      os: "linux",
      config: { Labels: annotations },
      rootfs: { type: "layers", diff_ids: [sha256Digest(tar)] },
    }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociManifest,
      config: descriptor(MEDIA_TYPES.ociConfig, configBlob),
      layers: [descriptor(MEDIA_TYPES.ociLayerGzip, layer)],
      annotations,
    }),
  );
  const blobs = new Map([
    [sha256Digest(configBlob), configBlob],
    [sha256Digest(layer), layer],
  ]);
  return { manifest, manifestDigest: sha256Digest(manifest), blobs, config };
}

/** Writes an OCI image layout (oci-layout, index.json, blobs/sha256/*); `refName` tags it inside. */
export async function writeOciLayout(dir: string, image: BuiltImage, refName: string): Promise<void> {
  const blobDir = join(dir, "blobs", "sha256");
  await mkdir(blobDir, { recursive: true });
  for (const [digest, bytes] of [...image.blobs, [image.manifestDigest, image.manifest] as const])
    await writeFile(join(blobDir, digestHex(digest)), bytes);
  await writeFile(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  const index = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.ociIndex,
    manifests: [
      {
        ...descriptor(MEDIA_TYPES.ociManifest, image.manifest),
        annotations: { "org.opencontainers.image.ref.name": refName },
      },
    ],
  };
  const tmp = join(dir, `index.json.${process.pid}.tmp`);
  await writeFile(tmp, JSON.stringify(index));
  await rename(tmp, join(dir, "index.json")).catch(async (err) => {
    await rm(tmp, { force: true });
    throw err;
  });
}

/** Reads the first (or the `refName`d) image of an OCI layout, verifying every blob's digest. */
export async function readOciLayout(dir: string, refName?: string): Promise<BuiltImage> {
  const index = parseJsonDocument("OCI layout index.json", await readFile(join(dir, "index.json")));
  const entries = Array.isArray(index.manifests)
    ? (index.manifests as Array<{ digest?: string; annotations?: Record<string, string> }>)
    : [];
  const entry =
    refName === undefined
      ? entries[0]
      : entries.find((m) => m.annotations?.["org.opencontainers.image.ref.name"] === refName);
  if (entry?.digest === undefined)
    throw new OciError("NotFound", `OCI layout ${dir} has no image${refName ? ` named ${refName}` : ""}`);
  const blob = async (digest: string) => {
    const bytes = await readFile(join(dir, "blobs", "sha256", digestHex(digest)));
    verifyDigest(`blob ${digest} in ${dir}`, bytes, digest);
    return bytes;
  };
  const manifestBytes = await blob(entry.digest);
  const doc = parseJsonDocument("manifest", manifestBytes);
  const manifest = parseManifest(
    doc,
    typeof doc.mediaType === "string" ? doc.mediaType : MEDIA_TYPES.ociManifest,
  );
  const blobs = new Map<string, Buffer>();
  for (const d of [manifest.config, ...manifest.layers]) blobs.set(d.digest, await blob(d.digest));
  const config = parseImageAnnotations({
    manifest: manifest.annotations ?? {},
    layers: manifest.layers.map((l) => l.annotations),
  });
  return { manifest: manifestBytes, manifestDigest: entry.digest, blobs, config };
}

/** Pushes every blob (skipping those the registry has), then the manifest under the reference's tag. */
export async function pushImage(
  image: Pick<BuiltImage, "manifest" | "blobs">,
  ref: string,
  opts: RegistryOptions = {},
): Promise<{ digest: string; sizeBytes: number }> {
  const parsed = parseReference(ref);
  if (parsed.tag === undefined) throw new OciError("InvalidReference", `push needs a tag: ${ref}`);
  const client = new RegistryClient(parsed.registry, opts);
  let sizeBytes = image.manifest.length;
  for (const [digest, bytes] of image.blobs) {
    await client.pushBlob(parsed.repository, digest, bytes.length, () => bytes);
    sizeBytes += bytes.length;
  }
  const mediaType =
    (JSON.parse(image.manifest.toString("utf8")) as { mediaType?: string }).mediaType ??
    MEDIA_TYPES.ociManifest;
  const digest = await client.putManifest(parsed.repository, parsed.tag, image.manifest, mediaType);
  return { digest, sizeBytes };
}
