// `npm run image -- build <kernel> [--initrd f] [--cmdline "..."] [--memory 8Mi] [--guest-type pv]
//                      --tag <ref> [--layout dir] [--no-push] [--insecure | --ca f | --insecure-skip-tls-verify] [--user u:p]`
// `npm run image -- inspect <ref> [registry flags]`
// Packs a kernel into a unikernel OCI image (docs/image-format.md), writes it as an OCI layout and
// pushes it; inspect prints what a registry holds under a reference, as the node would parse it.
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { GUEST_TYPES, type GuestType } from "../api/v1alpha1/unikernelvm.js";
import {
  buildUnikernelImage,
  inspectImage,
  OciError,
  ImageFormatError,
  pushImage,
  writeOciLayout,
} from "../lib/oci/index.js";
import {
  isParseArgsError,
  REGISTRY_FLAGS_USAGE,
  registryFlags,
  registryOptions,
  UsageError,
} from "./registry-flags.js";

const USAGE = `usage:
  image build <kernel> --tag <ref> [--initrd <file>] [--cmdline "<args>"] [--memory 8Mi] [--guest-type pv|pvh]
              [--layout <dir>] [--no-push] [registry flags]
  image inspect <ref> [registry flags]
${REGISTRY_FLAGS_USAGE}`;

/** "8Mi", "8MiB", "8M", "1Gi", "8" (MiB) -> MiB. */
export function parseMemoryMiB(raw: string): number {
  const m = /^([0-9]+)\s*(Mi|MiB|M|Gi|GiB|G)?$/.exec(raw.trim());
  if (!m) throw new UsageError(`--memory: expected a size like 8Mi or 1Gi, got ${JSON.stringify(raw)}`);
  const n = Number(m[1]) * (m[2]?.startsWith("G") ? 1024 : 1);
  if (n < 1) throw new UsageError("--memory must be at least 1Mi");
  return n;
}

async function build(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...registryFlags,
      tag: { type: "string" },
      initrd: { type: "string" },
      cmdline: { type: "string" },
      memory: { type: "string" },
      "guest-type": { type: "string" },
      layout: { type: "string" },
      "no-push": { type: "boolean" },
    },
  });
  if (positionals.length !== 1) throw new UsageError("build takes exactly one kernel file");
  if (values.tag === undefined) throw new UsageError("build needs --tag <ref>");
  const guestType = values["guest-type"] ?? "pv";
  if (!(GUEST_TYPES as readonly string[]).includes(guestType))
    throw new UsageError(`--guest-type must be one of ${GUEST_TYPES.join(", ")}`);
  const memoryMiB = values.memory !== undefined ? parseMemoryMiB(values.memory) : undefined;
  const opts = registryOptions(values);
  const kernel = await readFile(positionals[0]!);
  const image = buildUnikernelImage({
    kernel,
    guestType: guestType as GuestType,
    ...(values.initrd !== undefined ? { initrd: await readFile(values.initrd) } : {}),
    ...(values.cmdline !== undefined ? { cmdline: values.cmdline } : {}),
    ...(memoryMiB !== undefined ? { memoryMiB } : {}),
  });
  const layout = values.layout ?? (await mkdtemp(join(tmpdir(), "sf-image-layout-")));
  try {
    await writeOciLayout(layout, image, values.tag);
    const result = values["no-push"]
      ? {
          digest: image.manifestDigest,
          sizeBytes: image.manifest.length + [...image.blobs.values()].reduce((n, b) => n + b.length, 0),
        }
      : await pushImage(image, values.tag, opts);
    const out = {
      ref: values.tag,
      digest: result.digest,
      sizeBytes: result.sizeBytes,
      kernelBytes: kernel.length,
      pushed: !values["no-push"],
      config: image.config,
      ...(values.layout !== undefined ? { layout } : {}),
    };
    process.stdout.write(JSON.stringify(out, null, 2) + "\n");
  } finally {
    if (values.layout === undefined) await rm(layout, { recursive: true, force: true });
  }
}

async function inspect(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: registryFlags });
  if (positionals.length !== 1) throw new UsageError("inspect takes exactly one image reference");
  const info = await inspectImage(positionals[0]!, registryOptions(values));
  process.stdout.write(JSON.stringify(info, null, 2) + "\n");
}

async function main(): Promise<number> {
  const [command, ...rest] = process.argv.slice(2);
  try {
    if (command === "build") await build(rest);
    else if (command === "inspect") await inspect(rest);
    else
      throw new UsageError(
        command === undefined ? "no command" : `unknown command ${JSON.stringify(command)}`,
      );
    return 0;
  } catch (err) {
    if (err instanceof UsageError || isParseArgsError(err)) {
      process.stderr.write(`image: ${err.message}\n${USAGE}\n`);
      return 2;
    }
    if (
      err instanceof OciError ||
      err instanceof ImageFormatError ||
      (err as NodeJS.ErrnoException).code === "ENOENT"
    ) {
      process.stderr.write(`image: ${(err as Error).message}\n`);
      return 1;
    }
    throw err;
  }
}

process.exitCode = await main();
