// A runnable (Linux container) OCI image from lists of files, built in memory and reproducibly: each
// layer is a deterministic tar (entries sorted, parents first, mtime 0, uid/gid 0: see writeTar),
// gzipped without a timestamp; the config has no "created" date and no history. The same inputs
// give the same layer, config and manifest digests, on every build.
import { posix } from "node:path";
import { gzipSync } from "node:zlib";
import { sha256Digest } from "./digest.js";
import { MEDIA_TYPES, type Descriptor } from "./media-types.js";
import { writeTar, type TarWriteEntry } from "./tar.js";

export interface ContainerConfig {
  entrypoint: string[];
  cmd?: string[];
  env?: string[];
  workingDir?: string;
  /** "uid:gid"; the runtime's default (root) when absent. */
  user?: string;
  /** "8080/tcp" */
  exposedPorts?: string[];
  labels?: Record<string, string>;
}

export interface BuiltLayer {
  digest: string;
  /** Compressed bytes (what a pull transfers). */
  size: number;
  diffId: string;
  /** Bytes of file content in the layer. */
  contentBytes: number;
  paths: string[];
}

export interface BuiltContainerImage {
  manifest: Buffer;
  manifestDigest: string;
  /** Every blob by digest: config and layers. */
  blobs: Map<string, Buffer>;
  configDigest: string;
  layers: BuiltLayer[];
}

function clean(path: string): string {
  const p = posix.normalize(path).replace(/^\/+/, "").replace(/\/+$/, "");
  if (p === "" || p === "." || p.split("/").includes(".."))
    throw new Error(`image file path ${JSON.stringify(path)} is not a path inside the image`);
  return p;
}

/**
 * The layer's entries in a canonical order: every parent directory present (0755 unless listed),
 * sorted by path so a parent precedes its children, directories written with a trailing slash.
 * Two entries for one path are refused: the caller's lists decide, not their order.
 */
export function canonicalEntries(entries: TarWriteEntry[]): TarWriteEntry[] {
  const byPath = new Map<string, TarWriteEntry>();
  for (const e of entries) {
    const path = clean(e.path);
    if (byPath.has(path)) throw new Error(`image layer lists ${path} twice`);
    byPath.set(path, { ...e, path });
  }
  for (const path of [...byPath.keys()])
    for (let dir = posix.dirname(path); dir !== "."; dir = posix.dirname(dir))
      if (!byPath.has(dir)) byPath.set(dir, { path: dir, type: "directory", mode: 0o755 });
  const key = (p: string) => p.split("/");
  return [...byPath.values()]
    .sort((a, b) => {
      const [x, y] = [key(a.path), key(b.path)];
      for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i]! < y[i]! ? -1 : 1;
      return x.length - y.length;
    })
    .map((e) => (e.type === "directory" ? { ...e, path: `${e.path}/` } : e));
}

function descriptor(mediaType: string, bytes: Buffer): Descriptor {
  return { mediaType, digest: sha256Digest(bytes), size: bytes.length };
}

export interface Layer extends BuiltLayer {
  blob: Buffer;
}

/** One gzipped layer; build a layer shared by several images once and pass it to each. */
export function buildLayer(entries: TarWriteEntry[]): Layer {
  const canonical = canonicalEntries(entries);
  const tar = writeTar(canonical);
  // zlib writes no timestamp or file name in the gzip header: the same tar gives the same bytes.
  const blob = gzipSync(tar, { level: 6 });
  return {
    blob,
    digest: sha256Digest(blob),
    size: blob.length,
    diffId: sha256Digest(tar),
    contentBytes: canonical.reduce((n, e) => n + (e.data?.length ?? 0), 0),
    paths: canonical.map((e) => e.path),
  };
}

export function buildContainerImage(
  layers: Layer[],
  config: ContainerConfig,
  annotations: Record<string, string> = {},
): BuiltContainerImage {
  const blobs = new Map<string, Buffer>(layers.map((l) => [l.digest, l.blob]));
  const configBlob = Buffer.from(
    JSON.stringify({
      architecture: "amd64",
      os: "linux",
      config: {
        Entrypoint: config.entrypoint,
        ...(config.cmd ? { Cmd: config.cmd } : {}),
        ...(config.env ? { Env: config.env } : {}),
        ...(config.workingDir ? { WorkingDir: config.workingDir } : {}),
        ...(config.user ? { User: config.user } : {}),
        ...(config.exposedPorts
          ? { ExposedPorts: Object.fromEntries(config.exposedPorts.map((p) => [p, {}])) }
          : {}),
        ...(config.labels ? { Labels: config.labels } : {}),
      },
      rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffId) },
    }),
  );
  const configDigest = sha256Digest(configBlob);
  blobs.set(configDigest, configBlob);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociManifest,
      config: descriptor(MEDIA_TYPES.ociConfig, configBlob),
      layers: layers.map((l) => ({ mediaType: MEDIA_TYPES.ociLayerGzip, digest: l.digest, size: l.size })),
      ...(Object.keys(annotations).length > 0 ? { annotations } : {}),
    }),
  );
  return {
    manifest,
    manifestDigest: sha256Digest(manifest),
    blobs,
    configDigest,
    layers: layers.map(({ digest, size, diffId, contentBytes, paths }) => ({
      digest,
      size,
      diffId,
      contentBytes,
      paths,
    })),
  };
}

/** What a pull transfers: manifest, config and compressed layers. */
export function imageSizeBytes(image: Pick<BuiltContainerImage, "manifest" | "blobs">): number {
  return [...image.blobs.values()].reduce((n, b) => n + b.length, image.manifest.length);
}
