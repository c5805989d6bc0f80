// A tiny PV Linux guest for tests of the emulated Xen node: Debian's kernel (the same one dom0 runs;
// it boots as a PV guest) with a busybox initramfs (guest-init.sh) that prints a known console line,
// configures its vif and serves HTTP on :8080. Needs >= 160 MiB (the kernel does not fit in less).
// The initramfs is built once into ~/.cache/superfluid/xen/; dom0 reads it through its 9p root.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { chmod, copyFile, mkdir, mkdtemp, rename, rm, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { SOURCE_DIR, XEN_CACHE_DIR, checkPrerequisites, findDom0Kernel } from "./artifacts.js";

const run = promisify(execFile);
const GUEST_INIT = join(SOURCE_DIR, "guest-init.sh");

export interface TestGuestImage {
  kernel: string;
  ramdisk: string;
}

export async function testGuestImage(): Promise<TestGuestImage> {
  checkPrerequisites();
  const version = findDom0Kernel() ?? "";
  const { stdout } = await run("modprobe", ["-S", version, "--show-depends", "xen-netfront"]);
  const modules = stdout.split("\n").flatMap((l) => /^insmod (\S+)/.exec(l.trim())?.[1] ?? []);
  const hash = createHash("sha256")
    .update(readFileSync(GUEST_INIT))
    .update(modules.join("\n"))
    .digest("hex")
    .slice(0, 16);
  const ramdisk = join(XEN_CACHE_DIR, `test-guest-${version}-${hash}.cpio`);
  if (!existsSync(ramdisk)) {
    await mkdir(XEN_CACHE_DIR, { recursive: true });
    const staging = await mkdtemp(join(XEN_CACHE_DIR, "guest-staging-"));
    const tmp = `${ramdisk}.tmp-${process.pid}`;
    try {
      await mkdir(join(staging, "bin"));
      await mkdir(join(staging, "modules"));
      await copyFile("/bin/busybox", join(staging, "bin", "busybox"));
      await symlink("busybox", join(staging, "bin", "sh"));
      const names: string[] = [];
      for (const file of modules) {
        const name = file.split("/").at(-1) ?? file;
        await copyFile(file, join(staging, "modules", name));
        names.push(name);
      }
      await writeFile(join(staging, "modules.order"), names.join("\n") + "\n");
      await copyFile(GUEST_INIT, join(staging, "init"));
      await chmod(join(staging, "init"), 0o755);
      await run("sh", ["-c", `cd "${staging}" && find . | cpio -o -H newc --quiet > "${tmp}"`]);
      await rename(tmp, ramdisk);
    } finally {
      await rm(staging, { recursive: true, force: true });
      await rm(tmp, { force: true });
    }
  }
  return { kernel: `/boot/vmlinuz-${version}`, ramdisk };
}

/** An xl config for the test guest on `bridge`, with `ip` (CIDR form) and gateway `gw`. */
export function testGuestConfig(
  image: TestGuestImage,
  o: { name: string; word: string; bridge?: string; ip?: string; gw?: string; memoryMiB?: number },
): string {
  const extra = [
    "console=hvc0",
    "quiet",
    `sf.word=${o.word}`,
    ...(o.ip ? [`sf.ip=${o.ip}`] : []),
    ...(o.gw ? [`sf.gw=${o.gw}`] : []),
  ];
  return [
    `name = "${o.name}"`,
    `kernel = "${image.kernel}"`,
    `ramdisk = "${image.ramdisk}"`,
    `extra = "${extra.join(" ")}"`,
    `memory = ${o.memoryMiB ?? 160}`,
    `vcpus = 1`,
    ...(o.bridge ? [`vif = [ 'bridge=${o.bridge}' ]`] : []),
    `on_poweroff = "destroy"`,
    `on_crash = "destroy"`,
    "",
  ].join("\n");
}
