// Unpacks image layers into a directory without ever writing outside it: absolute paths, "..",
// paths through symlinks, links that point out, and device files are refused; sizes and entry
// counts are bounded while the bytes stream. The caller owns `root` and removes it on failure.
import { createReadStream, createWriteStream } from "node:fs";
import { link, lstat, mkdir, readdir, rm, symlink } from "node:fs/promises";
import { dirname, join, posix } from "node:path";
import { createGunzip } from "node:zlib";
import type { Readable } from "node:stream";
import { drained } from "./digest.js";
import { readTar, type TarHeader } from "./tar.js";
import { OciError, type PullLimits } from "./types.js";

export interface UnpackBudget {
  bytesLeft: number;
  entriesLeft: number;
  readonly maxUnpackedBytes: number;
  readonly maxEntries: number;
}

export function unpackBudget(limits: Pick<PullLimits, "maxUnpackedBytes" | "maxEntries">): UnpackBudget {
  return {
    bytesLeft: limits.maxUnpackedBytes,
    entriesLeft: limits.maxEntries,
    maxUnpackedBytes: limits.maxUnpackedBytes,
    maxEntries: limits.maxEntries,
  };
}

function unsafe(layer: string, path: string, why: string): never {
  throw new OciError(
    "UnsafeLayer",
    `layer ${layer}: entry ${JSON.stringify(path.slice(0, 200))} ${why}; refused`,
  );
}

/** The entry's path as clean relative components, or a refusal. */
export function safeRelativePath(layer: string, raw: string): string {
  if (raw.includes("\0")) unsafe(layer, raw, "contains a NUL byte");
  if (raw.startsWith("/")) unsafe(layer, raw, "is an absolute path");
  const parts = raw.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) unsafe(layer, raw, "contains '..' (path traversal)");
  return parts.join("/");
}

async function lstatOrUndefined(path: string) {
  try {
    return await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

/** Refuses a path whose existing parent components include a symlink (writes would follow it). */
async function assertNoSymlinkParents(layer: string, root: string, rel: string): Promise<void> {
  const parts = rel.split("/");
  let cur = root;
  for (const p of parts.slice(0, -1)) {
    cur = join(cur, p);
    const st = await lstatOrUndefined(cur);
    if (st === undefined) return;
    if (st.isSymbolicLink()) unsafe(layer, rel, "goes through a symlink");
    if (!st.isDirectory()) unsafe(layer, rel, "goes through a non-directory");
  }
}

async function removeExisting(path: string, keepDirectory: boolean): Promise<void> {
  const st = await lstatOrUndefined(path);
  if (st === undefined) return;
  if (st.isDirectory() && keepDirectory) return;
  await rm(path, { recursive: true, force: true });
}

async function writeEntry(
  layer: string,
  root: string,
  header: TarHeader,
  body: AsyncGenerator<Buffer>,
  budget: UnpackBudget,
): Promise<void> {
  if (--budget.entriesLeft < 0)
    throw new OciError(
      "TooLarge",
      `layer ${layer}: more than ${budget.maxEntries} entries in the image; refused`,
    );
  const rel = safeRelativePath(layer, header.path);
  if (rel === "") return; // "./" itself
  const base = posix.basename(rel);
  if (header.type === "char-device" || header.type === "block-device" || header.type === "fifo")
    unsafe(layer, rel, `is a ${header.type}`);
  await assertNoSymlinkParents(layer, root, rel);
  const target = join(root, rel);
  await mkdir(dirname(target), { recursive: true, mode: 0o755 });

  if (base.startsWith(".wh.")) {
    // OCI whiteouts: delete what earlier layers put there (opaque markers clear a directory).
    if (base === ".wh..wh..opq") {
      // Empties the directory, never removes it (it may be the root).
      for (const name of await readdir(dirname(target)))
        await rm(join(dirname(target), name), { recursive: true, force: true });
      return;
    }
    const victim = base.slice(".wh.".length);
    // ".wh.." or ".wh..." would name the directory itself or its parent.
    if (victim === "" || victim === "." || victim === "..")
      unsafe(layer, rel, "is a whiteout of its own directory or parent");
    await rm(join(dirname(target), victim), { recursive: true, force: true });
    return;
  }
  switch (header.type) {
    case "directory":
      await removeExisting(target, true);
      await mkdir(target, { recursive: true, mode: 0o755 });
      return;
    case "symlink": {
      if (header.linkTarget === "") unsafe(layer, rel, "is a symlink with no target");
      const resolved = posix.normalize(
        header.linkTarget.startsWith("/")
          ? header.linkTarget
          : posix.join(posix.dirname(rel), header.linkTarget),
      );
      // Absolute targets are read relative to the image root (as a container runtime would), so
      // only the lexical result must stay inside it.
      const inside = header.linkTarget.startsWith("/")
        ? !resolved.split("/").includes("..")
        : resolved !== ".." && !resolved.startsWith("../");
      if (!inside)
        unsafe(layer, rel, `is a symlink to ${JSON.stringify(header.linkTarget)}, outside the image`);
      await removeExisting(target, false);
      await symlink(header.linkTarget, target);
      return;
    }
    case "hardlink": {
      const linkRel = safeRelativePath(layer, header.linkTarget);
      await assertNoSymlinkParents(layer, root, linkRel);
      const st = await lstatOrUndefined(join(root, linkRel));
      if (st === undefined || !st.isFile())
        unsafe(
          layer,
          rel,
          `is a hard link to ${JSON.stringify(header.linkTarget)}, which is not a file in the image`,
        );
      await removeExisting(target, false);
      await link(join(root, linkRel), target);
      return;
    }
    case "file": {
      budget.bytesLeft -= header.size;
      if (budget.bytesLeft < 0)
        throw new OciError(
          "TooLarge",
          `layer ${layer}: unpacked content exceeds the ${budget.maxUnpackedBytes}-byte limit at ${JSON.stringify(rel)}; refused`,
        );
      await removeExisting(target, false);
      // setuid/setgid/sticky bits are dropped: nothing in a unikernel image needs them.
      const out = createWriteStream(target, { flags: "wx", mode: header.mode & 0o777 });
      try {
        for await (const piece of body) {
          if (!out.write(piece)) await drained(out);
        }
        await new Promise<void>((resolve, reject) =>
          out.end((err?: Error | null) => (err ? reject(err) : resolve())),
        );
      } catch (err) {
        out.destroy();
        throw err;
      }
      return;
    }
    default:
      unsafe(layer, rel, `has unsupported type ${header.type}`);
  }
}

/** Unpacks one layer blob (tar, or gzip-compressed tar by its magic bytes) into `root`. */
export async function unpackLayer(
  blobPath: string,
  layerName: string,
  root: string,
  budget: UnpackBudget,
): Promise<void> {
  const magic = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    createReadStream(blobPath, { start: 0, end: 1 })
      .on("data", (c) => chunks.push(c as Buffer))
      .on("end", () => resolve(Buffer.concat(chunks)))
      .on("error", reject);
  });
  const file = createReadStream(blobPath);
  let source: Readable = file;
  if (magic[0] === 0x1f && magic[1] === 0x8b) {
    const gunzip = createGunzip();
    file.on("error", (e) => gunzip.destroy(e));
    source = file.pipe(gunzip);
  }
  try {
    await readTar(source, (header, body) => writeEntry(layerName, root, header, body, budget));
  } catch (err) {
    if (err instanceof OciError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "Z_DATA_ERROR" || code === "Z_BUF_ERROR")
      throw new OciError("InvalidImage", `layer ${layerName}: gzip stream is corrupt`);
    throw err;
  } finally {
    source.destroy();
    file.destroy();
  }
}
