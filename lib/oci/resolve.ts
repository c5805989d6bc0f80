// From a reference to one verified image manifest: follows an image index to linux/amd64 (or its
// first image), checks every digest the reference or the index names. Also `inspectImage`, which
// reads manifest and config from a registry without fetching layers.
import { parseImageAnnotations, type UnikernelImageConfig } from "../../api/image-format.js";
import { readLimited, verifyDigest } from "./digest.js";
import {
  INDEX_MEDIA_TYPES,
  manifestMediaType,
  parseImageConfigBlob,
  parseIndex,
  parseJsonDocument,
  parseManifest,
  pickPlatform,
  type Descriptor,
  type ImageManifest,
} from "./media-types.js";
import { formatReference, parseReference, type ImageReference } from "./reference.js";
import { RegistryClient } from "./registry-client.js";
import { DEFAULT_PULL_LIMITS, OciError, type PullLimits, type RegistryOptions } from "./types.js";

export interface ResolvedManifest {
  manifest: ImageManifest;
  manifestBytes: Buffer;
  manifestDigest: string;
}

export async function resolveManifest(
  client: RegistryClient,
  ref: ImageReference,
  limits: Pick<PullLimits, "maxManifestBytes">,
): Promise<ResolvedManifest> {
  const first = await client.getManifest(
    ref.repository,
    ref.digest ?? ref.tag ?? "latest",
    limits.maxManifestBytes,
  );
  if (ref.digest !== undefined) verifyDigest(`manifest ${formatReference(ref)}`, first.bytes, ref.digest);
  const doc = parseJsonDocument("manifest", first.bytes);
  const type = manifestMediaType(first.contentType, doc);
  if (!INDEX_MEDIA_TYPES.includes(type))
    return { manifest: parseManifest(doc, type), manifestBytes: first.bytes, manifestDigest: first.digest };
  const chosen = pickPlatform(parseIndex(doc, type));
  if (chosen.size > limits.maxManifestBytes)
    throw new OciError("TooLarge", `manifest ${chosen.digest} is ${chosen.size} bytes, over the limit`);
  const child = await client.getManifest(ref.repository, chosen.digest, limits.maxManifestBytes);
  verifyDigest(`manifest ${chosen.digest} from the index`, child.bytes, chosen.digest);
  const childDoc = parseJsonDocument("manifest", child.bytes);
  const childType = manifestMediaType(child.contentType, childDoc);
  if (INDEX_MEDIA_TYPES.includes(childType))
    throw new OciError("UnsupportedMediaType", "an image index nested in an image index is not supported");
  return {
    manifest: parseManifest(childDoc, childType),
    manifestBytes: child.bytes,
    manifestDigest: child.digest,
  };
}

export interface ImageInspection {
  ref: string;
  digest: string;
  mediaType: string;
  /** Manifest + config + compressed layers. */
  sizeBytes: number;
  config: UnikernelImageConfig;
  layers: Descriptor[];
  annotations: Record<string, string>;
}

/** Reads an image's manifest and config from its registry (verified) and parses its unikernel config. */
export async function inspectImage(ref: string, opts: RegistryOptions = {}): Promise<ImageInspection> {
  const parsed = parseReference(ref);
  const client = new RegistryClient(parsed.registry, opts);
  const { manifest, manifestBytes, manifestDigest } = await resolveManifest(
    client,
    parsed,
    DEFAULT_PULL_LIMITS,
  );
  const configBytes = await readLimited(
    await client.getBlob(parsed.repository, manifest.config.digest),
    DEFAULT_PULL_LIMITS.maxConfigBytes,
    "image config",
  );
  verifyDigest("image config", configBytes, manifest.config.digest);
  const blob = parseImageConfigBlob(configBytes);
  const config = parseImageAnnotations({
    manifest: manifest.annotations ?? {},
    layers: manifest.layers.map((l) => l.annotations),
    labels: blob.config?.Labels ?? {},
    cmd: blob.config?.Cmd ?? [],
    architecture: blob.architecture ?? "",
    os: blob.os ?? "",
  });
  return {
    ref: formatReference(parsed),
    digest: manifestDigest,
    mediaType: manifest.mediaType,
    sizeBytes: manifestBytes.length + manifest.config.size + manifest.layers.reduce((n, l) => n + l.size, 0),
    config,
    layers: manifest.layers,
    annotations: manifest.annotations ?? {},
  };
}
