// The examples' images, built from native/build with `npm run image` (tools/image.ts) and pushed to
// the cluster's registry. The examples name them localhost:5000/superfluid/<name>:v0.1: inside dom0
// that port leads to the registry on the host (see startNode in index.ts), the way a local registry
// is usually wired into a dev cluster.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { runAsync } from "../../lib/process.js";
import { REPO_ROOT } from "../../lib/paths.js";
import type { TestRegistry } from "../harness/registry.js";

export const REGISTRY_PORT_IN_DOM0 = 5000;
/** Not `latest`: that tag makes the kubelet pull again on every container retry (pullPolicy Always). */
export const EXAMPLE_TAG = "v0.1";
const IMAGE_TOOL = join(REPO_ROOT, "dist", "tools", "image.js");

interface ImageSource {
  name: string;
  kernel: string;
  extra: string[];
}

export const EXAMPLE_IMAGES: readonly ImageSource[] = [
  { name: "hello", kernel: join(REPO_ROOT, "native", "build", "hello", "hello"), extra: ["--memory", "4Mi"] },
  {
    name: "http",
    kernel: join(REPO_ROOT, "native", "build", "http", "kernel"),
    extra: ["--initrd", join(REPO_ROOT, "native", "build", "http", "initrd.cpio.gz"), "--memory", "128Mi"],
  },
];

export interface PushedImage {
  /** The reference pods use (resolved inside dom0). */
  ref: string;
  /** The same image as the host reaches it. */
  hostRef: string;
  digest: string;
  sizeBytes: number;
}

export type ExampleImages = Record<string, PushedImage>;

export function exampleImageRef(name: string): string {
  return `localhost:${REGISTRY_PORT_IN_DOM0}/superfluid/${name}:${EXAMPLE_TAG}`;
}

export async function pushExampleImages(registry: TestRegistry): Promise<ExampleImages> {
  const out: ExampleImages = {};
  for (const img of EXAMPLE_IMAGES) {
    if (!existsSync(img.kernel))
      throw new Error(`${img.kernel} is missing: run \`npm run setup\` (it builds native/)`);
    const hostRef = `${registry.host}/superfluid/${img.name}:${EXAMPLE_TAG}`;
    const r = await runAsync(
      process.execPath,
      [IMAGE_TOOL, "build", img.kernel, ...img.extra, "--tag", hostRef, "--insecure"],
      { timeoutMs: 120_000 },
    );
    if (r.code !== 0) throw new Error(`building/pushing image ${img.name} failed: ${r.stderr}`);
    const result = JSON.parse(r.stdout) as { digest: string; sizeBytes: number };
    out[img.name] = {
      ref: exampleImageRef(img.name),
      hostRef,
      digest: result.digest,
      sizeBytes: result.sizeBytes,
    };
  }
  return out;
}

/**
 * An ordinary Linux container image (busybox in an OCI image, made with umoci and pushed with
 * skopeo): what a Xen node must refuse to run. Returns the reference as pods name it.
 */
export async function pushLinuxContainerImage(registry: TestRegistry, workDir: string): Promise<string> {
  const layout = join(workDir, "linux-image");
  const bundle = join(workDir, "linux-bundle");
  const steps: Array<[string, string[]]> = [
    ["umoci", ["init", "--layout", layout]],
    ["umoci", ["new", "--image", `${layout}:latest`]],
    ["umoci", ["unpack", "--image", `${layout}:latest`, bundle]],
    ["sh", ["-c", `mkdir -p ${bundle}/rootfs/bin && cp /bin/busybox ${bundle}/rootfs/bin/busybox`]],
    ["umoci", ["repack", "--image", `${layout}:latest`, bundle]],
    [
      "umoci",
      [
        "config",
        "--image",
        `${layout}:latest`,
        "--config.cmd",
        "/bin/busybox",
        "--config.cmd",
        "sleep",
        "--config.cmd",
        "3600",
      ],
    ],
    [
      "skopeo",
      [
        "copy",
        "--dest-tls-verify=false",
        `oci:${layout}:latest`,
        `docker://${registry.host}/library/busybox:latest`,
      ],
    ],
  ];
  for (const [cmd, args] of steps) {
    const r = await runAsync(cmd, args, { timeoutMs: 120_000 });
    if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")} failed: ${r.stderr}`);
  }
  return `localhost:${REGISTRY_PORT_IN_DOM0}/library/busybox:latest`;
}
