// ImageService's backend on a node: lib/oci's content-addressed ImageStore. Which registries are
// reached over plain HTTP (loopback ones by default, as containerd does for localhost) or with an
// extra CA is node configuration, decided here per pull from the reference's registry host.
import {
  ImageFormatError,
  ImageStore,
  inspectImage,
  parseReference,
  type ImageRecord,
  type RegistryOptions,
} from "../../../lib/oci/index.js";
import type { ImageBackend, ImageFormat, ImageInfo, PullAuth } from "./image-backend.js";

export interface OciImagesOptions {
  /** Registry hosts (with or without port) reached over plain HTTP. */
  plainHttpRegistries: string[];
  /** PEM CA bundle added for TLS registries. */
  caFile?: string;
}

function toInfo(r: ImageRecord): ImageInfo {
  return {
    id: r.id,
    refs: r.refs,
    repoDigests: r.repoDigests,
    sizeBytes: r.sizeBytes,
    kernelPath: r.kernelPath,
    initrdPath: r.initrdPath,
    config: r.config,
  };
}

export class OciImages implements ImageBackend {
  constructor(
    readonly store: ImageStore,
    private readonly opts: OciImagesOptions,
  ) {}

  private registryOptions(ref: string): RegistryOptions {
    const registry = parseReference(ref).registry;
    const host = registry.replace(/:\d+$/, "");
    const plainHttp = this.opts.plainHttpRegistries.some((r) => r === registry || r === host);
    return { plainHttp, ...(this.opts.caFile ? { caFile: this.opts.caFile } : {}) };
  }

  async pull(ref: string, auth?: PullAuth): Promise<ImageInfo> {
    return toInfo(await this.store.pull(ref, { ...this.registryOptions(ref), ...(auth ? { auth } : {}) }));
  }

  async format(ref: string, auth?: PullAuth): Promise<ImageFormat> {
    try {
      await inspectImage(ref, { ...this.registryOptions(ref), ...(auth ? { auth } : {}) });
      return "unikernel";
    } catch (err) {
      // No key at fault: no unikernel key at all, or a platform we do not run (an arm64, a windows image).
      if (err instanceof ImageFormatError) return err.key === "" ? "linux" : "unikernel";
      throw err;
    }
  }

  async get(refOrId: string): Promise<ImageInfo | undefined> {
    const r = await this.store
      .get(refOrId)
      .catch((err: Error) => (err.name === "OciError" ? undefined : Promise.reject(err)));
    return r ? toInfo(r) : undefined;
  }

  async list(): Promise<ImageInfo[]> {
    return (await this.store.list()).map(toInfo);
  }

  async remove(refOrId: string): Promise<void> {
    await this.store.remove(refOrId);
  }

  fsInfo(): Promise<{ mountpoint: string; usedBytes: number; inodesUsed: number }> {
    return this.store.fsInfo();
  }
}
