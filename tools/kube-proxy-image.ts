// `node dist/tools/kube-proxy-image.js --kube-proxy <binary> --tag <ref> [--no-push] [registry flags]`
// A small kube-proxy image for nodes that cannot pull registry.k8s.io/kube-proxy (an air-gapped
// cluster, the e2e cluster): a kube-proxy binary (static Go) and what its iptables mode runs, taken
// from this machine's Debian install: xtables-<backend>-multi with its iptables/ip6tables(-save,
// -restore) names, the xtables extensions, and the shared libraries they load (ldd). The backend
// (nft or legacy) is the one the host's `iptables` alternative points at, so the rules the pod writes
// live in the same tables as the host's own. One layer, no shell, no package manager. Prints JSON:
// reference, digest, compressed and unpacked sizes, file count.
import { readdir, readlink, stat, readFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { parseArgs } from "node:util";
import {
  buildContainerImage,
  buildLayer,
  imageSizeBytes,
  OciError,
  pushImage,
  type BuiltContainerImage,
  type TarWriteEntry,
} from "../lib/oci/index.js";
import { hostPathEntries, sharedLibraries } from "./images-content.js";
import {
  isParseArgsError,
  REGISTRY_FLAGS_USAGE,
  registryFlags,
  registryOptions,
  UsageError,
} from "./registry-flags.js";

const USAGE = `usage: kube-proxy-image --kube-proxy <binary> --tag <ref> [--no-push] [registry flags]
${REGISTRY_FLAGS_USAGE}`;

export const KUBE_PROXY_IN_IMAGE = "/usr/local/bin/kube-proxy";
const XTABLES_LIBDIR = "/usr/lib/x86_64-linux-gnu/xtables";
/** The names kube-proxy's iptables mode runs (it probes both families). */
export const IPTABLES_NAMES = [
  "iptables",
  "iptables-save",
  "iptables-restore",
  "ip6tables",
  "ip6tables-save",
  "ip6tables-restore",
];

/** The multi-call binary behind the host's `iptables` (e.g. /usr/sbin/xtables-nft-multi). */
export async function hostXtablesMulti(sbin = "/usr/sbin"): Promise<string> {
  let path = join(sbin, "iptables");
  for (let hops = 0; hops < 10; hops++) {
    const st = await stat(path).catch(() => undefined);
    if (!st) throw new Error(`${path} is missing: install Debian's iptables`);
    const target = await readlink(path).catch(() => undefined);
    if (target === undefined) break;
    path = target.startsWith("/") ? target : join(path, "..", target);
  }
  if (!/^xtables-(nft|legacy)-multi$/.test(basename(path)))
    throw new Error(`${join(sbin, "iptables")} leads to ${path}, not an xtables-*-multi binary`);
  return path;
}

/** Every file of the image: kube-proxy, the xtables binary and its names, extensions, libraries. */
export async function kubeProxyImageEntries(kubeProxy: string, multi: string): Promise<TarWriteEntry[]> {
  const extensions = (await readdir(XTABLES_LIBDIR))
    .filter((f) => f.endsWith(".so"))
    .sort()
    .map((f) => join(XTABLES_LIBDIR, f));
  const files = new Map<string, TarWriteEntry>();
  for (const lib of await sharedLibraries([multi, ...extensions])) await hostPathEntries(lib, files);
  await hostPathEntries(multi, files);
  for (const ext of extensions) await hostPathEntries(ext, files);
  const proxy = await stat(kubeProxy);
  if (!proxy.isFile()) throw new Error(`${kubeProxy}: not a file`);
  const sbin = join("/", multi, "..").replace(/^\//, "");
  return [
    ...files.values(),
    ...IPTABLES_NAMES.map((n) => ({
      path: `${sbin}/${n}`,
      type: "symlink" as const,
      linkTarget: basename(multi),
    })),
    { path: KUBE_PROXY_IN_IMAGE.slice(1), data: await readFile(kubeProxy), mode: 0o755 },
    // iptables takes its lock at /run/xtables.lock (the pod mounts the host's); kube-proxy writes nothing else.
    { path: "run", type: "directory", mode: 0o755 },
    { path: "tmp", type: "directory", mode: 0o1777 },
  ];
}

export async function buildKubeProxyImage(kubeProxy: string): Promise<BuiltContainerImage> {
  const multi = await hostXtablesMulti();
  return buildContainerImage([buildLayer(await kubeProxyImageEntries(kubeProxy, multi))], {
    entrypoint: [KUBE_PROXY_IN_IMAGE],
    env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    labels: { "org.opencontainers.image.title": "kube-proxy (superfluid, Debian iptables)" },
  });
}

async function main(): Promise<number> {
  try {
    const { values } = parseArgs({
      args: process.argv.slice(2),
      options: {
        ...registryFlags,
        "kube-proxy": { type: "string" },
        tag: { type: "string" },
        "no-push": { type: "boolean" },
      },
    });
    if (values["kube-proxy"] === undefined) throw new UsageError("--kube-proxy <binary> is required");
    if (values.tag === undefined) throw new UsageError("--tag <ref> is required");
    const image = await buildKubeProxyImage(values["kube-proxy"]);
    const pushed = values["no-push"]
      ? undefined
      : await pushImage(image, values.tag, registryOptions(values));
    const layer = image.layers[0]!;
    process.stdout.write(
      JSON.stringify(
        {
          ref: values.tag,
          digest: image.manifestDigest,
          pushed: pushed !== undefined,
          sizeBytes: imageSizeBytes(image),
          unpackedBytes: layer.contentBytes,
          files: layer.paths.length,
        },
        null,
        2,
      ) + "\n",
    );
    return 0;
  } catch (err) {
    if (err instanceof UsageError || isParseArgsError(err)) {
      process.stderr.write(`kube-proxy-image: ${(err as Error).message}\n${USAGE}\n`);
      return 2;
    }
    if (err instanceof OciError || (err as NodeJS.ErrnoException).code === "ENOENT") {
      process.stderr.write(`kube-proxy-image: ${(err as Error).message}\n`);
      return 1;
    }
    throw err;
  }
}

if (process.argv[1] && basename(process.argv[1]) === "kube-proxy-image.js") process.exitCode = await main();
