// The dispatcher's "which runtime runs this image" question, against Debian's docker-registry: a
// unikernel image (built with lib/oci) is ours, a Linux image is the fallback's, a unikernel image
// with a broken key is still ours (so our pull explains the key), and nothing is pulled to answer.
import test from "ava";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  buildContainerImage,
  buildLayer,
  buildUnikernelImage,
  ImageStore,
  pushImage,
} from "../../../lib/oci/index.js";
import { IMAGE_ANNOTATIONS } from "../../../api/image-format.js";
import { startRegistry, type TestRegistry } from "../../../e2e/harness/registry.js";
import { OciImages } from "./oci-images.js";

let registry: TestRegistry;
let dir: string;
test.before(async () => {
  registry = await startRegistry();
  dir = mkdtempSync(join(tmpdir(), "sf-format-"));
});
test.after.always(async () => {
  await registry?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test("format: unikernel, linux, and a broken unikernel", async (t) => {
  const uk = buildUnikernelImage({ kernel: Buffer.from("kernel bytes") });
  await pushImage(uk, `${registry.host}/t/uk:1`, { plainHttp: true });
  const linux = buildContainerImage([buildLayer([{ path: "bin/hello", data: Buffer.from("#!/bin/sh\n") }])], {
    entrypoint: ["/bin/hello"],
  });
  await pushImage(linux, `${registry.host}/t/linux:1`, { plainHttp: true });
  // Our kernel key with a path that leaves the image: a unikernel image, refused by our pull.
  const manifest = JSON.parse(uk.manifest.toString()) as { annotations: Record<string, string> };
  manifest.annotations[IMAGE_ANNOTATIONS.kernel] = "../etc/passwd";
  const brokenBytes = Buffer.from(JSON.stringify(manifest));
  await pushImage({ manifest: brokenBytes, blobs: uk.blobs }, `${registry.host}/t/broken:1`, {
    plainHttp: true,
  });

  const images = new OciImages(new ImageStore(join(dir, "store")), { plainHttpRegistries: [registry.host] });
  t.is(await images.format(`${registry.host}/t/uk:1`), "unikernel");
  t.is(await images.format(`${registry.host}/t/linux:1`), "linux");
  t.is(await images.format(`${registry.host}/t/broken:1`), "unikernel");
  await t.throwsAsync(images.format(`${registry.host}/t/absent:1`), { name: "OciError" });
  t.deepEqual(await images.list(), [], "nothing was pulled to answer");
  const blobDir = join(dir, "store", "blobs", "sha256");
  t.deepEqual(existsSync(blobDir) ? readdirSync(blobDir) : [], [], "no blob stored");
});
