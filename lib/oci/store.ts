// The node's image store: content-addressed blobs (blobs/sha256/<hex>), unpacked kernels
// (unpacked/<manifest hex>/), and index.json mapping references to images. Every write lands by
// rename; a failed pull removes whatever it added, so a failure leaves the store as it found it.
import { randomBytes } from "node:crypto";
import { lstat, mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  parseImageAnnotations,
  pathAnnotationKey,
  ImageFormatError,
  type UnikernelImageConfig,
} from "../../api/image-format.js";
import { logger } from "../log.js";
import { digestHex, tempName, writeVerifiedBlob } from "./digest.js";
import { parseImageConfigBlob } from "./media-types.js";
import { resolveManifest } from "./resolve.js";
import {
  DIGEST_PATTERN,
  formatReference,
  parseReference,
  repositoryName,
  type ImageReference,
} from "./reference.js";
import { RegistryClient } from "./registry-client.js";
import {
  DEFAULT_PULL_LIMITS,
  OciError,
  type ImageFsInfo,
  type ImageRecord,
  type PullLimits,
  type PullOptions,
} from "./types.js";
import { unpackBudget, unpackLayer } from "./unpack.js";

const log = logger("oci-store");

interface StoredImage extends Omit<ImageRecord, "kernelPath" | "initrdPath"> {
  /** Every blob the image holds (manifest, config, layers): what garbage collection keeps. */
  blobs: string[];
}

interface IndexFile {
  version: 1;
  images: StoredImage[];
}

export interface ImageStoreOptions {
  limits?: Partial<PullLimits>;
}

export class ImageStore {
  readonly root: string;
  private readonly blobDir: string;
  private readonly tmpDir: string;
  private readonly unpackedDir: string;
  private readonly indexPath: string;
  private readonly limits: PullLimits;
  private ready: Promise<void> | undefined;
  /** Serialises index updates and garbage collection within this process. */
  private lock: Promise<unknown> = Promise.resolve();
  /** Blobs that pulls in progress have written or are writing; GC must not take them. */
  private readonly inFlight = new Map<string, Set<string>>();

  constructor(root: string, opts: ImageStoreOptions = {}) {
    this.root = root;
    this.blobDir = join(root, "blobs", "sha256");
    this.tmpDir = join(root, "tmp");
    this.unpackedDir = join(root, "unpacked");
    this.indexPath = join(root, "index.json");
    this.limits = { ...DEFAULT_PULL_LIMITS, ...opts.limits };
  }

  private init(): Promise<void> {
    this.ready ??= (async () => {
      await mkdir(this.blobDir, { recursive: true });
      await mkdir(this.unpackedDir, { recursive: true });
      await mkdir(this.tmpDir, { recursive: true });
      // Leftovers of a process that died mid-pull: temp names carry the writer's pid.
      for (const name of await readdir(this.tmpDir)) {
        const pid = Number(
          /\.(\d+)\.[0-9a-f]+\.tmp$/.exec(name)?.[1] ?? /^unpack-(\d+)-/.exec(name)?.[1] ?? NaN,
        );
        if (Number.isFinite(pid) && pid !== process.pid && !processAlive(pid))
          await rm(join(this.tmpDir, name), { recursive: true, force: true });
      }
    })();
    return this.ready;
  }

  private withLock<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lock.then(fn, fn);
    this.lock = run.catch(() => undefined);
    return run;
  }

  private async readIndex(): Promise<IndexFile> {
    try {
      return JSON.parse(await readFile(this.indexPath, "utf8")) as IndexFile;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return { version: 1, images: [] };
      throw err;
    }
  }

  private async writeIndex(index: IndexFile): Promise<void> {
    const tmp = tempName(this.tmpDir, "index");
    await writeFile(tmp, JSON.stringify(index, null, 1));
    await rename(tmp, this.indexPath);
  }

  private blobPath(digest: string): string {
    return join(this.blobDir, digestHex(digest));
  }

  private toRecord(s: StoredImage): ImageRecord {
    const dir = join(this.unpackedDir, digestHex(s.digest));
    const { blobs: _blobs, ...rest } = s;
    const record: ImageRecord = { ...rest, kernelPath: join(dir, s.config.kernelPath) };
    if (s.config.initrdPath !== undefined) record.initrdPath = join(dir, s.config.initrdPath);
    return record;
  }

  /** Looks an image up by tag reference, repo digest, manifest digest or image id. */
  async get(refOrDigest: string): Promise<ImageRecord | undefined> {
    await this.init();
    const found = findImage((await this.readIndex()).images, refOrDigest);
    return found ? this.toRecord(found) : undefined;
  }

  async list(): Promise<ImageRecord[]> {
    await this.init();
    return (await this.readIndex()).images.map((s) => this.toRecord(s));
  }

  /**
   * Removes a tag, or the whole image when given a digest, an id or its last tag; then deletes
   * every blob and unpacked directory no image refers to. Returns false if nothing matched.
   */
  async remove(refOrDigest: string): Promise<boolean> {
    await this.init();
    return this.withLock(async () => {
      const index = await this.readIndex();
      const found = findImage(index.images, refOrDigest);
      if (!found) return false;
      const tag =
        DIGEST_PATTERN.test(refOrDigest) || refOrDigest.includes("@") ? undefined : safeFormat(refOrDigest);
      if (tag !== undefined && found.refs.length > 1) found.refs = found.refs.filter((r) => r !== tag);
      else index.images = index.images.filter((s) => s !== found);
      await this.writeIndex(index);
      await this.collectGarbage(index);
      return true;
    });
  }

  async fsInfo(): Promise<ImageFsInfo> {
    await this.init();
    let usedBytes = 0;
    let inodesUsed = 0;
    const walk = async (dir: string): Promise<void> => {
      for (const e of await readdir(dir, { withFileTypes: true })) {
        inodesUsed++;
        const p = join(dir, e.name);
        if (e.isDirectory()) await walk(p);
        else usedBytes += (await lstat(p)).size;
      }
    };
    await walk(this.root);
    return { mountpoint: this.root, usedBytes, inodesUsed };
  }

  /** Deletes unreferenced blobs and unpacked directories. Call with the lock held. */
  private async collectGarbage(index: IndexFile): Promise<void> {
    const keep = new Set(index.images.flatMap((s) => s.blobs.map(digestHex)));
    for (const set of this.inFlight.values()) for (const d of set) keep.add(digestHex(d));
    for (const name of await readdir(this.blobDir))
      if (!keep.has(name)) await rm(join(this.blobDir, name), { force: true });
    // Unpacked dirs are named by manifest digest, so the same set keeps them — including the dir a
    // concurrent pull has unpacked but not yet recorded in the index.
    for (const name of await readdir(this.unpackedDir))
      if (!keep.has(name)) await rm(join(this.unpackedDir, name), { recursive: true, force: true });
  }

  /** Downloads one blob into the store unless it is already there (blobs are verified on write). */
  private async fetchBlob(
    client: RegistryClient,
    ref: ImageReference,
    digest: string,
    size: number,
    maxBytes: number,
    what: string,
    mine: Set<string>,
  ): Promise<string> {
    const path = this.blobPath(digest);
    mine.add(digest);
    if (await exists(path)) return path;
    if (size > maxBytes)
      throw new OciError(
        "TooLarge",
        `${what} ${digest} is ${size} bytes, over the ${maxBytes}-byte limit; refused`,
      );
    const body = await client.getBlob(ref.repository, digest);
    await writeVerifiedBlob(body, {
      tmpDir: this.tmpDir,
      finalPath: path,
      expectedDigest: digest,
      expectedSize: size,
      maxBytes,
      what: `${what} ${digest}`,
    });
    return path;
  }

  private async storeBytes(digest: string, bytes: Buffer, mine: Set<string>): Promise<void> {
    mine.add(digest);
    const path = this.blobPath(digest);
    if (await exists(path)) return;
    const tmp = tempName(this.tmpDir, digestHex(digest).slice(0, 16));
    await writeFile(tmp, bytes, { flag: "wx" });
    await rename(tmp, path);
  }

  /**
   * Pulls `ref` from its registry, verifying every digest and size, unpacks the kernel (and initrd)
   * and records the image. On failure nothing it wrote remains. Pulling an image already present
   * re-checks the manifest with the registry and only adds the reference.
   */
  async pull(ref: string, opts: PullOptions = {}): Promise<ImageRecord> {
    await this.init();
    const parsed = parseReference(ref);
    const limits = { ...this.limits, ...opts.limits };
    const client = new RegistryClient(parsed.registry, opts);
    const pullId = randomBytes(8).toString("hex");
    const mine = new Set<string>();
    this.inFlight.set(pullId, mine);
    const unpackTmp = join(this.tmpDir, `unpack-${process.pid}-${pullId}`);
    const started = Date.now();
    try {
      const { manifest, manifestBytes, manifestDigest } = await resolveManifest(client, parsed, limits);
      if (manifest.layers.length > limits.maxLayers)
        throw new OciError(
          "TooLarge",
          `image has ${manifest.layers.length} layers, the limit is ${limits.maxLayers}; refused`,
        );
      for (const l of manifest.layers)
        if (l.size > limits.maxLayerBytes)
          throw new OciError(
            "TooLarge",
            `layer ${l.digest} is ${l.size} bytes, over the ${limits.maxLayerBytes}-byte limit; refused`,
          );
      await this.storeBytes(manifestDigest, manifestBytes, mine);

      const configPath = await this.fetchBlob(
        client,
        parsed,
        manifest.config.digest,
        manifest.config.size,
        limits.maxConfigBytes,
        "image config",
        mine,
      );
      const configBlob = parseImageConfigBlob(await readFile(configPath));
      const src = {
        manifest: manifest.annotations ?? {},
        layers: manifest.layers.map((l) => l.annotations),
        labels: configBlob.config?.Labels ?? {},
      };
      const config = parseImageAnnotations({
        ...src,
        cmd: configBlob.config?.Cmd ?? [],
        architecture: configBlob.architecture ?? "",
        os: configBlob.os ?? "",
      });

      const layerPaths: string[] = [];
      for (const l of manifest.layers)
        layerPaths.push(
          await this.fetchBlob(client, parsed, l.digest, l.size, limits.maxLayerBytes, "layer", mine),
        );

      const finalDir = join(this.unpackedDir, digestHex(manifestDigest));
      if (!(await exists(finalDir))) {
        await mkdir(unpackTmp, { mode: 0o755 });
        const budget = unpackBudget(limits);
        for (const [i, l] of manifest.layers.entries())
          await unpackLayer(layerPaths[i]!, l.digest, unpackTmp, budget);
        await checkBootFiles(unpackTmp, config);
        await rename(unpackTmp, finalDir).catch(async (err: NodeJS.ErrnoException) => {
          if (err.code !== "ENOTEMPTY" && err.code !== "EEXIST") throw err;
          await rm(unpackTmp, { recursive: true, force: true }); // a concurrent pull of the same image won
        });
      }

      const tag =
        parsed.tag !== undefined
          ? formatReference({ registry: parsed.registry, repository: parsed.repository, tag: parsed.tag })
          : undefined;
      const repoDigest = `${repositoryName(parsed)}@${manifestDigest}`;
      const sizeBytes =
        manifestBytes.length + manifest.config.size + manifest.layers.reduce((n, l) => n + l.size, 0);
      const stored = await this.withLock(async () => {
        const index = await this.readIndex();
        if (tag !== undefined) for (const s of index.images) s.refs = s.refs.filter((r) => r !== tag); // tags move
        let s = index.images.find((x) => x.digest === manifestDigest);
        if (!s) {
          s = {
            id: manifest.config.digest,
            digest: manifestDigest,
            refs: [],
            repoDigests: [],
            sizeBytes,
            config,
            pulledAt: new Date().toISOString(),
            blobs: [manifestDigest, manifest.config.digest, ...manifest.layers.map((l) => l.digest)],
          };
          index.images.push(s);
        }
        if (tag !== undefined && !s.refs.includes(tag)) s.refs.push(tag);
        if (!s.repoDigests.includes(repoDigest)) s.repoDigests.push(repoDigest);
        // An image whose last tag moved away stays reachable by digest until removed, like containerd.
        await this.writeIndex(index);
        return s;
      });
      log.info("pulled image", { ref, digest: manifestDigest, sizeBytes, ms: Date.now() - started });
      return this.toRecord(stored);
    } catch (err) {
      await rm(unpackTmp, { recursive: true, force: true });
      this.inFlight.delete(pullId);
      await this.withLock(async () => this.collectGarbage(await this.readIndex()));
      log.warn("pull failed", { ref, error: (err as Error).message });
      throw err;
    } finally {
      this.inFlight.delete(pullId);
    }
  }
}

/** The kernel and initrd the config names must be regular files in the unpacked image. */
async function checkBootFiles(dir: string, config: UnikernelImageConfig): Promise<void> {
  const check = async (rel: string, which: "kernel" | "initrd") => {
    let cur = dir;
    for (const part of rel.split("/")) {
      cur = join(cur, part);
      const st = await lstat(cur).catch(() => undefined);
      if (st === undefined)
        throw new ImageFormatError(
          pathAnnotationKey(config.dialect, which),
          `names ${JSON.stringify(rel)}, which is not in the image's layers`,
        );
      if (st.isSymbolicLink())
        throw new ImageFormatError(
          pathAnnotationKey(config.dialect, which),
          `names ${JSON.stringify(rel)}, which goes through a symlink; name the file itself`,
        );
      if (cur !== join(dir, rel) ? !st.isDirectory() : !st.isFile())
        throw new ImageFormatError(
          pathAnnotationKey(config.dialect, which),
          `names ${JSON.stringify(rel)}, which is not a regular file`,
        );
    }
  };
  await check(config.kernelPath, "kernel");
  if (config.initrdPath !== undefined) await check(config.initrdPath, "initrd");
}

function findImage(images: StoredImage[], refOrDigest: string): StoredImage | undefined {
  if (DIGEST_PATTERN.test(refOrDigest))
    return images.find((s) => s.digest === refOrDigest) ?? images.find((s) => s.id === refOrDigest);
  if (/^[a-f0-9]{64}$/.test(refOrDigest)) return findImage(images, `sha256:${refOrDigest}`);
  const name = safeFormat(refOrDigest);
  if (name === undefined) return undefined;
  return images.find((s) => s.refs.includes(name) || s.repoDigests.includes(name));
}

function safeFormat(ref: string): string | undefined {
  try {
    return formatReference(parseReference(ref));
  } catch {
    return undefined;
  }
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
