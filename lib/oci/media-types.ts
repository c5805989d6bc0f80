// OCI and Docker v2 schema 2 media types, and validation of manifests and indexes as they arrive:
// anything not a known shape is refused before a single layer byte is fetched.
import { OciError } from "./types.js";
import { DIGEST_PATTERN } from "./reference.js";

export const MEDIA_TYPES = {
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociIndex: "application/vnd.oci.image.index.v1+json",
  ociConfig: "application/vnd.oci.image.config.v1+json",
  ociLayerTar: "application/vnd.oci.image.layer.v1.tar",
  ociLayerGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerManifestList: "application/vnd.docker.distribution.manifest.list.v2+json",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
  dockerLayerGzip: "application/vnd.docker.image.rootfs.diff.tar.gzip",
} as const;

export const MANIFEST_MEDIA_TYPES: readonly string[] = [MEDIA_TYPES.ociManifest, MEDIA_TYPES.dockerManifest];
export const INDEX_MEDIA_TYPES: readonly string[] = [MEDIA_TYPES.ociIndex, MEDIA_TYPES.dockerManifestList];
export const CONFIG_MEDIA_TYPES: readonly string[] = [MEDIA_TYPES.ociConfig, MEDIA_TYPES.dockerConfig];
export const LAYER_MEDIA_TYPES: readonly string[] = [
  MEDIA_TYPES.ociLayerTar,
  MEDIA_TYPES.ociLayerGzip,
  MEDIA_TYPES.dockerLayerGzip,
];
/** The Accept header of a manifest request. */
export const MANIFEST_ACCEPT = [...MANIFEST_MEDIA_TYPES, ...INDEX_MEDIA_TYPES].join(", ");

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: { architecture?: string; os?: string; variant?: string };
}

export interface ImageManifest {
  schemaVersion: 2;
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

export interface ImageIndex {
  schemaVersion: 2;
  mediaType: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

export interface ImageConfigBlob {
  architecture?: string;
  os?: string;
  config?: { Labels?: Record<string, string>; Cmd?: string[]; Entrypoint?: string[]; Env?: string[] };
  rootfs?: { type: string; diff_ids: string[] };
}

function invalid(what: string, why: string): never {
  throw new OciError("InvalidImage", `${what}: ${why}`);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function stringMap(what: string, v: unknown): Record<string, string> | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isRecord(v) || !Object.values(v).every((x) => typeof x === "string"))
    invalid(what, "annotations must map strings to strings");
  return v as Record<string, string>;
}

export function parseJsonDocument(what: string, bytes: Buffer): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(bytes.toString("utf8"));
  } catch {
    invalid(what, "is not valid JSON");
  }
  if (!isRecord(v)) invalid(what, "is not a JSON object");
  return v;
}

function parseDescriptor(what: string, v: unknown): Descriptor {
  if (!isRecord(v)) invalid(what, "descriptor is not an object");
  const { mediaType, digest, size } = v;
  if (typeof mediaType !== "string") invalid(what, "descriptor has no mediaType");
  if (typeof digest !== "string" || !DIGEST_PATTERN.test(digest))
    invalid(what, `descriptor digest ${JSON.stringify(digest)} is not sha256:<64 hex>`);
  if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0)
    invalid(what, "descriptor size must be a non-negative integer");
  const d: Descriptor = { mediaType, digest, size };
  const annotations = stringMap(what, v.annotations);
  if (annotations) d.annotations = annotations;
  if (isRecord(v.platform)) {
    const p = v.platform;
    d.platform = {};
    if (typeof p.architecture === "string") d.platform.architecture = p.architecture;
    if (typeof p.os === "string") d.platform.os = p.os;
    if (typeof p.variant === "string") d.platform.variant = p.variant;
  }
  return d;
}

/**
 * The media type of a manifest document: the body's mediaType field when present (it must then
 * agree with the Content-Type the registry sent), else the Content-Type.
 */
export function manifestMediaType(contentType: string | undefined, doc: Record<string, unknown>): string {
  const header = contentType?.split(";")[0]?.trim();
  const body = typeof doc.mediaType === "string" ? doc.mediaType : undefined;
  if (
    body !== undefined &&
    header !== undefined &&
    header !== "" &&
    header !== body &&
    header !== "application/json" &&
    header !== "application/octet-stream"
  )
    throw new OciError(
      "UnsupportedMediaType",
      `manifest says mediaType ${body} but the registry served it as ${header}`,
    );
  const type = body ?? header;
  if (type === undefined || (!MANIFEST_MEDIA_TYPES.includes(type) && !INDEX_MEDIA_TYPES.includes(type)))
    throw new OciError(
      "UnsupportedMediaType",
      `unsupported manifest media type ${JSON.stringify(type ?? "(none)")}; accepted: ${MANIFEST_ACCEPT}`,
    );
  return type;
}

export function parseIndex(doc: Record<string, unknown>, mediaType: string): ImageIndex {
  if (doc.schemaVersion !== 2) invalid("image index", "schemaVersion must be 2");
  if (!Array.isArray(doc.manifests) || doc.manifests.length === 0)
    invalid("image index", "lists no manifests");
  const index: ImageIndex = {
    schemaVersion: 2,
    mediaType,
    manifests: doc.manifests.map((m) => parseDescriptor("image index", m)),
  };
  const annotations = stringMap("image index", doc.annotations);
  if (annotations) index.annotations = annotations;
  return index;
}

/** linux/amd64 if the index has it, else the first entry (unikernel indexes often name odd platforms). */
export function pickPlatform(index: ImageIndex): Descriptor {
  const manifests = index.manifests.filter((m) => MANIFEST_MEDIA_TYPES.includes(m.mediaType));
  if (manifests.length === 0)
    throw new OciError(
      "UnsupportedMediaType",
      "image index holds no image manifest of a supported media type",
    );
  return (
    manifests.find((m) => m.platform?.os === "linux" && m.platform.architecture === "amd64") ?? manifests[0]!
  );
}

export function parseManifest(doc: Record<string, unknown>, mediaType: string): ImageManifest {
  if (doc.schemaVersion !== 2) invalid("image manifest", "schemaVersion must be 2");
  const config = parseDescriptor("image manifest config", doc.config);
  if (!CONFIG_MEDIA_TYPES.includes(config.mediaType))
    throw new OciError(
      "UnsupportedMediaType",
      `config media type ${JSON.stringify(config.mediaType)} is not an image config; accepted: ${CONFIG_MEDIA_TYPES.join(", ")}`,
    );
  if (!Array.isArray(doc.layers) || doc.layers.length === 0) invalid("image manifest", "has no layers");
  const layers = doc.layers.map((l) => parseDescriptor("image manifest layer", l));
  for (const l of layers)
    if (!LAYER_MEDIA_TYPES.includes(l.mediaType))
      throw new OciError(
        "UnsupportedMediaType",
        `layer ${l.digest} has media type ${JSON.stringify(l.mediaType)}; accepted: ${LAYER_MEDIA_TYPES.join(", ")}`,
      );
  const manifest: ImageManifest = { schemaVersion: 2, mediaType, config, layers };
  const annotations = stringMap("image manifest", doc.annotations);
  if (annotations) manifest.annotations = annotations;
  return manifest;
}

export function parseImageConfigBlob(bytes: Buffer): ImageConfigBlob {
  const doc = parseJsonDocument("image config", bytes);
  const out: ImageConfigBlob = {};
  if (typeof doc.architecture === "string") out.architecture = doc.architecture;
  if (typeof doc.os === "string") out.os = doc.os;
  if (isRecord(doc.config)) {
    const c = doc.config;
    out.config = {};
    const labels = stringMap("image config Labels", c.Labels);
    if (labels) out.config.Labels = labels;
    if (Array.isArray(c.Cmd) && c.Cmd.every((x) => typeof x === "string")) out.config.Cmd = c.Cmd as string[];
    if (Array.isArray(c.Entrypoint) && c.Entrypoint.every((x) => typeof x === "string"))
      out.config.Entrypoint = c.Entrypoint as string[];
  }
  return out;
}
