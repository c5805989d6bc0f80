// `npm run images -- --registry <host[:port][/path]> [--no-push] [--only operator|cri-shim] [registry flags]`
// Builds the operator's and the node component's (CRI shim) images with lib/oci, no container daemon,
// and pushes each under two tags (version, version-<commit>). Plain HTTP for a loopback registry
// (localhost, 127.0.0.1, [::1]) unless --ca is given. Prints a JSON report: references, digests,
// sizes (compressed, what a pull moves; and unpacked).
import { parseArgs } from "node:util";
import { imageSizeBytes, OciError, pushImage, type RegistryOptions } from "../lib/oci/index.js";
import {
  buildProjectImages,
  DEFAULT_REGISTRY,
  IMAGE_NAMES,
  imageRepository,
  imageTags,
  isLoopbackRegistry,
  sourceVersion,
  type ImageName,
} from "./project-images.js";
import {
  isParseArgsError,
  REGISTRY_FLAGS_USAGE,
  registryFlags,
  registryOptions,
  UsageError,
} from "./registry-flags.js";

const USAGE = `usage: images --registry <host[:port][/path]> [--no-push] [--only operator|cri-shim] [registry flags]
  (npm run images -- ...; the chart's defaults name ${DEFAULT_REGISTRY}/superfluid/{operator,cri-shim}:<version>)
${REGISTRY_FLAGS_USAGE}`;

async function main(): Promise<number> {
  try {
    const { values } = parseArgs({
      args: process.argv.slice(2),
      options: {
        ...registryFlags,
        registry: { type: "string" },
        "no-push": { type: "boolean" },
        only: { type: "string", multiple: true },
      },
    });
    const push = !values["no-push"];
    if (push && values.registry === undefined) throw new UsageError("--registry is required (or --no-push)");
    const registry = values.registry ?? DEFAULT_REGISTRY;
    if (!/^[a-z0-9.-]+(:\d+)?(\/[a-z0-9._-]+)*$/i.test(registry) && !/^\[::1\](:\d+)?$/.test(registry))
      throw new UsageError(`--registry: expected host[:port][/path], got ${JSON.stringify(registry)}`);
    const only = (values.only ?? IMAGE_NAMES) as string[];
    for (const n of only)
      if (!(IMAGE_NAMES as string[]).includes(n))
        throw new UsageError(`--only: unknown image ${JSON.stringify(n)}; known: ${IMAGE_NAMES.join(", ")}`);
    const opts: RegistryOptions = registryOptions(values);
    if (isLoopbackRegistry(registry) && values.ca === undefined) opts.plainHttp = true;

    const version = await sourceVersion();
    const tags = imageTags(version);
    const started = Date.now();
    const built = await buildProjectImages(version, only as ImageName[]);
    const buildMs = Date.now() - started;
    const report = [];
    for (const { name, image } of built) {
      const repository = imageRepository(registry, name);
      if (push) for (const tag of tags) await pushImage(image, `${repository}:${tag}`, opts);
      report.push({
        name,
        references: tags.map((t) => `${repository}:${t}`),
        digest: image.manifestDigest,
        pinned: `${repository}@${image.manifestDigest}`,
        sizeBytes: imageSizeBytes(image),
        unpackedBytes: image.layers.reduce((n, l) => n + l.contentBytes, 0),
        layers: image.layers.map((l) => ({ digest: l.digest, size: l.size, files: l.paths.length })),
      });
      process.stderr.write(
        `[images] ${name}: ${(imageSizeBytes(image) / 1e6).toFixed(1)} MB compressed, ${image.manifestDigest}${push ? ` -> ${tags.map((t) => `${repository}:${t}`).join(", ")}` : ""}\n`,
      );
    }
    process.stdout.write(
      JSON.stringify(
        {
          version: version.version,
          commit: version.commit,
          dirty: version.dirty,
          pushed: push,
          buildMs,
          images: report,
        },
        null,
        2,
      ) + "\n",
    );
    return 0;
  } catch (err) {
    if (err instanceof UsageError || isParseArgsError(err)) {
      process.stderr.write(`images: ${(err as Error).message}\n${USAGE}\n`);
      return 2;
    }
    if (err instanceof OciError) {
      process.stderr.write(`images: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

process.exitCode = await main();
