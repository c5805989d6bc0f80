// The project's own images, their names and tags: what `npm run images` builds and pushes, and what
// the chart's defaults name (a test holds them equal). Tags: the package version (the chart's
// appVersion, its default tag) and version-<commit> (-dirty when the work tree has changes).
// Digests depend only on the commit's files and this machine's Node install: no timestamp anywhere.
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import {
  buildContainerImage,
  buildLayer,
  type BuiltContainerImage,
  type ContainerConfig,
} from "../lib/oci/index.js";
import { REPO_ROOT } from "../lib/paths.js";
import {
  APP_ROOT,
  HOST_LIB_MOUNT,
  NODE_IN_IMAGE,
  operatorEntries,
  runtimeEntries,
  shimEntries,
} from "./images-content.js";

const exec = promisify(execFile);

/** The registry of the chart's default image references (charts/superfluid/values.yaml). */
export const DEFAULT_REGISTRY = "ghcr.io";
export const IMAGE_REPOSITORIES = {
  operator: "superfluid/operator",
  "cri-shim": "superfluid/cri-shim",
} as const;
export type ImageName = keyof typeof IMAGE_REPOSITORIES;
export const IMAGE_NAMES = Object.keys(IMAGE_REPOSITORIES) as ImageName[];

export interface SourceVersion {
  /** package.json's version, the chart's appVersion. */
  version: string;
  commit: string;
  dirty: boolean;
}

export async function sourceVersion(root = REPO_ROOT): Promise<SourceVersion> {
  const pkg = JSON.parse(await readFile(join(root, "package.json"), "utf8")) as { version?: unknown };
  if (typeof pkg.version !== "string") throw new Error("package.json has no version");
  const git = async (args: string[]) => (await exec("git", ["-C", root, ...args])).stdout.trim();
  const commit = await git(["rev-parse", "HEAD"]);
  const dirty = (await git(["status", "--porcelain", "--untracked-files=no"])) !== "";
  return { version: pkg.version, commit, dirty };
}

/** [version, version-<12 hex of the commit>[-dirty]]: the first is the chart's default tag. */
export function imageTags(v: SourceVersion): [string, string] {
  return [v.version, `${v.version}-${v.commit.slice(0, 12)}${v.dirty ? "-dirty" : ""}`];
}

/** localhost, 127.0.0.1 and [::1] (any port) are reached over plain HTTP, as the shim's default does. */
export function isLoopbackRegistry(registry: string): boolean {
  const host = registry.split("/")[0]!;
  return /^(localhost|127\.0\.0\.1|\[::1\])(:\d+)?$/.test(host);
}

export function imageRepository(registry: string, name: ImageName): string {
  return `${registry.replace(/\/+$/, "")}/${IMAGE_REPOSITORIES[name]}`;
}

const BASE_ENV = [
  "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
  "NODE_ENV=production",
  "LOG_FORMAT=json",
];

export function imageConfig(name: ImageName, v: SourceVersion): ContainerConfig {
  const labels = {
    "org.opencontainers.image.title": `superfluid-${name}`,
    "org.opencontainers.image.version": v.version,
    "org.opencontainers.image.revision": v.commit,
    "org.opencontainers.image.licenses": "Apache-2.0",
  };
  if (name === "operator")
    return {
      entrypoint: [NODE_IN_IMAGE, `${APP_ROOT}/dist/bundle/operator.mjs`],
      env: BASE_ENV,
      workingDir: APP_ROOT,
      user: "65532:65532",
      exposedPorts: ["8080/tcp"],
      labels,
    };
  return {
    entrypoint: [NODE_IN_IMAGE, `${APP_ROOT}/dist/bundle/cri-shim.mjs`],
    // The image's own libraries first, then the host's (libxenlight & co., mounted read-only).
    env: [...BASE_ENV, `LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu:${HOST_LIB_MOUNT}`],
    workingDir: APP_ROOT,
    // Root in dom0: it drives Xen through /dev/xen and /proc/xen.
    user: "0:0",
    labels,
  };
}

export interface ProjectImage {
  name: ImageName;
  image: BuiltContainerImage;
}

/** Builds both images from dist/bundle/ and this machine's Node; the runtime layer once, shared. */
export async function buildProjectImages(
  v: SourceVersion,
  only: ImageName[] = IMAGE_NAMES,
): Promise<ProjectImage[]> {
  const runtime = buildLayer(await runtimeEntries());
  const out: ProjectImage[] = [];
  for (const name of only) {
    const app = buildLayer(name === "operator" ? await operatorEntries() : await shimEntries());
    out.push({ name, image: buildContainerImage([runtime, app], imageConfig(name, v)) });
  }
  return out;
}
