// The public shapes of lib/oci: what the CRI shim's ImageService and the tools see.
import type { UnikernelImageConfig } from "../../api/image-format.js";

/** CRI's AuthConfig (runtime.v1.AuthConfig): username+password, or `auth` (base64 "user:pass"), or a bearer token. */
export interface RegistryAuth {
  username?: string;
  password?: string;
  /** base64("username:password"), as in ~/.docker/config.json and CRI's AuthConfig.auth. */
  auth?: string;
  /** A bearer token sent as is (CRI's AuthConfig.registry_token). */
  registryToken?: string;
}

/** How to reach a registry. */
export interface RegistryOptions {
  auth?: RegistryAuth;
  /** PEM file of the CA that signed the registry's certificate (added to Node's default roots). */
  caFile?: string;
  /** Accept any certificate. For tests only; logged as a warning. */
  insecureSkipTLSVerify?: boolean;
  /** Talk plain HTTP instead of HTTPS (a loopback registry without TLS). */
  plainHttp?: boolean;
}

/** Limits that bound what a pull may cost; every one is enforced while bytes arrive, not after. */
export interface PullLimits {
  /** Largest manifest or index accepted. Default 4 MiB. */
  maxManifestBytes: number;
  /** Largest image config accepted. Default 1 MiB. */
  maxConfigBytes: number;
  /** Largest single (compressed) layer accepted. Default 512 MiB. */
  maxLayerBytes: number;
  /** Largest total of unpacked file bytes across all layers. Default 1 GiB. */
  maxUnpackedBytes: number;
  /** Most entries across all layers. Default 10000. */
  maxEntries: number;
  /** Most layers. Default 8 (a unikernel image has one; KraftKit's have up to three). */
  maxLayers: number;
}

export const DEFAULT_PULL_LIMITS: PullLimits = {
  maxManifestBytes: 4 << 20,
  maxConfigBytes: 1 << 20,
  maxLayerBytes: 512 << 20,
  maxUnpackedBytes: 1 << 30,
  maxEntries: 10_000,
  maxLayers: 8,
};

export interface PullOptions extends RegistryOptions {
  /** Overrides of DEFAULT_PULL_LIMITS (the store's own limits apply otherwise). */
  limits?: Partial<PullLimits>;
}

/** One pulled image in the store. */
export interface ImageRecord {
  /** The image id: the digest of its config blob ("sha256:..."), as CRI and containerd use it. */
  id: string;
  /** The digest of its manifest ("sha256:..."): what `repo@digest` references name. */
  digest: string;
  /** Normalised tag references that point at it, e.g. "127.0.0.1:5000/hello:latest". */
  refs: string[];
  /** "repo@sha256:..." for every repository it was pulled from. */
  repoDigests: string[];
  /** Manifest + config + compressed layers, in bytes: what CRI reports as the image size. */
  sizeBytes: number;
  config: UnikernelImageConfig;
  /** Absolute path of the unpacked kernel, ready for DomainSpec.kernelPath. */
  kernelPath: string;
  initrdPath?: string;
  /** ISO time of the pull that created the record. */
  pulledAt: string;
}

/** CRI's ImageFsInfo for the store's file system. */
export interface ImageFsInfo {
  /** The store root. */
  mountpoint: string;
  usedBytes: number;
  inodesUsed: number;
}

/** Classifies failures so the shim can map them to gRPC codes. */
export type OciErrorCode =
  | "InvalidReference"
  | "Unauthorized"
  | "NotFound"
  | "DigestMismatch"
  | "UnsupportedMediaType"
  | "TooLarge"
  | "UnsafeLayer"
  | "InvalidImage"
  | "Registry"
  | "Network";

export class OciError extends Error {
  constructor(
    readonly code: OciErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "OciError";
  }
}
