// TEST DOUBLE, for pure unit tests only: an ImageBackend over a directory of fake kernels. The real
// one is lib/oci's ImageStore (pulls from a registry); the Xen-node tests use that.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createHash } from "node:crypto";
import type { ImageBackend, ImageFormat, ImageInfo } from "../services/image-backend.js";

export class DirImagesDouble implements ImageBackend {
  private readonly images = new Map<string, ImageInfo>();
  /** References pull() accepts (a registry would have them). */
  readonly available = new Set<string>();

  constructor(private readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }

  /** The references in `available` are the unikernels; any other is taken for a Linux image. */
  async format(ref: string): Promise<ImageFormat> {
    return this.available.has(ref) ? "unikernel" : "linux";
  }

  async pull(ref: string): Promise<ImageInfo> {
    if (!this.available.has(ref))
      throw Object.assign(new Error(`${ref}: manifest unknown`), { name: "OciError", code: "NotFound" });
    const id = `sha256:${createHash("sha256").update(ref).digest("hex")}`;
    const kernelPath = join(this.dir, `${id.slice(7, 19)}.kernel`);
    writeFileSync(kernelPath, `kernel of ${ref}`);
    const info: ImageInfo = {
      id,
      refs: [ref],
      repoDigests: [`${ref.split(":")[0]}@${id}`],
      sizeBytes: 1234,
      kernelPath,
      config: { guestType: "pv", cmdline: "console=hvc0", memoryMiB: 8 },
    };
    this.images.set(id, info);
    return info;
  }
  async get(refOrId: string): Promise<ImageInfo | undefined> {
    return [...this.images.values()].find(
      (i) =>
        i.id === refOrId ||
        i.refs.includes(refOrId) ||
        (refOrId.length >= 4 && i.id.slice(7).startsWith(refOrId)),
    );
  }
  async list(): Promise<ImageInfo[]> {
    return [...this.images.values()];
  }
  async remove(refOrId: string): Promise<void> {
    const i = await this.get(refOrId);
    if (i) this.images.delete(i.id);
  }
  async fsInfo(): Promise<{ mountpoint: string; usedBytes: number; inodesUsed: number }> {
    return { mountpoint: this.dir, usedBytes: 1234 * this.images.size, inodesUsed: this.images.size };
  }
}
