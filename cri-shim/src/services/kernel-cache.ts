// The kernel cache: each image's kernel (and initrd) copied to tmpfs before a domain build reads it,
// one directory per image id. It lives in memory, so it is collected with its images: a directory
// stays while its image is in the store or a container record still names a file in it (a suspended
// or migrated domain is rebuilt from that copy), and goes otherwise.
import { copyFile, mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { join, relative, sep } from "node:path";
import { logger } from "../../../lib/log.js";
import type { RuntimeContext } from "./context.js";
import type { ImageInfo } from "./image-backend.js";

const log = logger("kernel-cache");

/** The cache directory of one image. */
export function kernelCacheDirOf(cacheDir: string, imageId: string): string {
  return join(cacheDir, imageId.replace(/^sha256:/, ""));
}

/** The cached copy of an image's kernel or initrd, made once (atomically) and then reused. */
async function cachedKernel(
  cacheDir: string,
  imageId: string,
  source: string,
  name: "kernel" | "initrd",
): Promise<string> {
  const dir = kernelCacheDirOf(cacheDir, imageId);
  const target = join(dir, name);
  if (
    await stat(target).then(
      () => true,
      () => false,
    )
  )
    return target;
  await mkdir(dir, { recursive: true });
  const tmp = `${target}.tmp-${randomBytes(4).toString("hex")}`;
  await copyFile(source, tmp);
  await rename(tmp, target);
  return target;
}

/** An image's kernel and initrd as the domain builder reads them: their copies in the cache. */
export async function cachedImageKernels(
  cacheDir: string,
  image: Pick<ImageInfo, "id" | "kernelPath" | "initrdPath">,
): Promise<{ kernelPath: string; initrdPath: string | undefined }> {
  const kernelPath = await cachedKernel(cacheDir, image.id, image.kernelPath, "kernel");
  const initrdPath = image.initrdPath
    ? await cachedKernel(cacheDir, image.id, image.initrdPath, "initrd")
    : undefined;
  return { kernelPath, initrdPath };
}

/** Removes the cache directories no image and no container needs; returns their names. */
export async function collectKernelCache(rt: RuntimeContext): Promise<string[]> {
  const cacheDir = rt.options.kernelCacheDir;
  const keep = new Set<string>();
  for (const img of await rt.images.list()) keep.add(img.id.replace(/^sha256:/, ""));
  for (const c of rt.containers.list())
    for (const p of [c.meta.kernelPath, c.meta.initrdPath]) {
      const rel = p ? relative(cacheDir, p) : "";
      if (rel && !rel.startsWith("..")) keep.add(rel.split(sep)[0]!);
    }
  const entries = await readdir(cacheDir).catch(() => [] as string[]);
  const removed: string[] = [];
  for (const e of entries) {
    if (keep.has(e)) continue;
    await rm(join(cacheDir, e), { recursive: true, force: true });
    removed.push(e);
  }
  if (removed.length) log.info("kernel cache collected", { removed: removed.length });
  return removed;
}
