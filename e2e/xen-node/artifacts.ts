// What an emulated Xen node boots from: the gunzipped hypervisor, the dom0 kernel and a tiny dom0
// initrd (busybox + the virtio/9p/overlay modules). Built once and cached under
// ~/.cache/superfluid/xen/, keyed so that a kernel update or an edit of initrd-init.sh rebuilds them.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import {
  createReadStream,
  createWriteStream,
  existsSync,
  readdirSync,
  readFileSync,
  statSync,
} from "node:fs";
import { copyFile, mkdir, mkdtemp, rename, rm, symlink, writeFile, chmod } from "node:fs/promises";
import { dirname, join } from "node:path";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { createGunzip } from "node:zlib";
import { CACHE_DIR, REPO_ROOT } from "../../lib/paths.js";
import { logger } from "../../lib/log.js";

const run = promisify(execFile);
const log = logger("xen-node");

export const XEN_CACHE_DIR = join(CACHE_DIR, "xen");
const XEN_GZ = process.env.SUPERFLUID_XEN_GZ ?? "/boot/xen-4.17-amd64.gz";
/**
 * Modules the initrd loads to reach the 9p root; the rest come from the host's /lib/modules later.
 * virtio-rng first: without a hardware RNG the emulated kernel's crng takes ~a minute to initialize
 * and the first getrandom() in stage 2 blocks until then.
 */
const INITRD_MODULES = ["virtio_pci", "virtio-rng", "9pnet_virtio", "9p", "overlay"];

/** Source files read in dom0 at boot. They live in the repo (not dist/) because tsc does not copy .sh. */
export const SOURCE_DIR = join(REPO_ROOT, "e2e", "xen-node");
export const STAGE1_SCRIPT = join(SOURCE_DIR, "initrd-init.sh");
export const STAGE2_SCRIPT = join(SOURCE_DIR, "dom0-init.sh");
/** The compiled agent next to this file (dist/e2e/xen-node/agent.js): the path is the same in dom0. */
export const AGENT_SCRIPT = join(dirname(fileURLToPath(import.meta.url)), "agent.js");

export interface BootArtifacts {
  xen: string;
  kernel: string;
  kernelVersion: string;
  initrd: string;
}

/** Host files a node needs, and the Debian package that provides each. */
const REQUIRED: ReadonlyArray<{ path: string; pkg: string }> = [
  { path: "/usr/bin/qemu-system-x86_64", pkg: "qemu-system-x86" },
  { path: XEN_GZ, pkg: "xen-hypervisor-4.17-amd64" },
  { path: "/usr/sbin/xl", pkg: "xen-utils-4.17" },
  { path: "/usr/lib/xen-4.17/bin/xen-init-dom0", pkg: "xen-utils-4.17" },
  { path: "/bin/busybox", pkg: "busybox-static" },
  { path: "/usr/bin/cpio", pkg: "cpio" },
  { path: "/usr/bin/setpriv", pkg: "util-linux" },
  { path: "/usr/sbin/modprobe", pkg: "kmod" },
  { path: "/usr/sbin/ip", pkg: "iproute2" },
  { path: "/usr/sbin/iptables", pkg: "iptables" },
  // The readdressing of a guest received by migration (cri-shim/src/network/readdress.ts).
  { path: "/usr/sbin/nft", pkg: "nftables" },
];

/**
 * Throws one error naming every missing Debian package (what `npm run setup` would install).
 * `exists` is replaceable so that a unit test can simulate a machine without some packages.
 */
export function checkPrerequisites(exists: (path: string) => boolean = existsSync): void {
  const missing = REQUIRED.filter((r) => !exists(r.path));
  if (!exists("/bin/busybox") || !isStaticBusybox())
    missing.push({ path: "/bin/busybox (static)", pkg: "busybox-static" });
  if (findDom0Kernel() === undefined)
    missing.push({ path: "/boot/vmlinuz-<v> with /lib/modules/<v>", pkg: "linux-image-amd64" });
  if (missing.length === 0) return;
  const pkgs = [...new Set(missing.map((m) => m.pkg))];
  throw new Error(
    `emulated Xen node: missing Debian package(s) ${pkgs.join(", ")} ` +
      `(not found: ${missing.map((m) => m.path).join(", ")}). Run \`npm run setup\` or \`apt-get install ${pkgs.join(" ")}\`.`,
  );
}

function isStaticBusybox(): boolean {
  // A dynamic busybox would need a libc in the initrd; the ELF of a static one has no PT_INTERP.
  const head = readFileSync("/bin/busybox").subarray(0, 4096).toString("latin1");
  return !head.includes("/lib64/ld-linux");
}

/** The newest installed kernel that has both a /boot image and its modules (or SUPERFLUID_DOM0_KERNEL). */
export function findDom0Kernel(): string | undefined {
  const wanted = process.env.SUPERFLUID_DOM0_KERNEL;
  let versions: string[] = [];
  try {
    versions = readdirSync("/lib/modules").filter((v) => existsSync(`/boot/vmlinuz-${v}`));
  } catch {
    return undefined;
  }
  if (wanted) return versions.includes(wanted) ? wanted : undefined;
  return versions.sort((a, b) => a.localeCompare(b, undefined, { numeric: true })).at(-1);
}

/** Writes `produce(tmpPath)` to `target` atomically, so that parallel test processes never see half a file. */
async function buildOnce(target: string, produce: (tmp: string) => Promise<void>): Promise<string> {
  if (existsSync(target)) return target;
  await mkdir(dirname(target), { recursive: true });
  const tmp = `${target}.tmp-${process.pid}-${Date.now()}`;
  try {
    await produce(tmp);
    await rename(tmp, target);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return target;
}

async function xenBinary(): Promise<string> {
  const st = statSync(XEN_GZ);
  const target = join(XEN_CACHE_DIR, `xen-4.17-${st.size}-${Math.floor(st.mtimeMs)}`);
  return buildOnce(target, async (tmp) => {
    log.info("gunzipping the Xen hypervisor (once)", { from: XEN_GZ, to: target });
    await pipeline(createReadStream(XEN_GZ), createGunzip(), createWriteStream(tmp));
  });
}

async function moduleFiles(kernelVersion: string): Promise<string[]> {
  const files: string[] = [];
  for (const mod of INITRD_MODULES) {
    const { stdout } = await run("modprobe", ["-S", kernelVersion, "--show-depends", mod]);
    for (const line of stdout.split("\n")) {
      const m = /^insmod (\S+)/.exec(line.trim());
      if (m?.[1] && !files.includes(m[1])) files.push(m[1]);
    }
  }
  return files;
}

async function dom0Initrd(kernelVersion: string): Promise<string> {
  const modules = await moduleFiles(kernelVersion);
  const hash = createHash("sha256")
    .update(readFileSync(STAGE1_SCRIPT))
    .update(modules.join("\n"))
    .update(String(statSync("/bin/busybox").size))
    .digest("hex")
    .slice(0, 16);
  const target = join(XEN_CACHE_DIR, `dom0-initrd-${kernelVersion}-${hash}.cpio`);
  return buildOnce(target, async (tmp) => {
    log.info("building the dom0 initrd (once)", { kernelVersion, modules: modules.length });
    const staging = await mkdtemp(join(XEN_CACHE_DIR, "initrd-staging-"));
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
      await copyFile(STAGE1_SCRIPT, join(staging, "init"));
      await chmod(join(staging, "init"), 0o755);
      // An uncompressed newc archive: ~3 MB, and the kernel skips a decompression under emulation.
      await run("sh", ["-c", `cd "${staging}" && find . | cpio -o -H newc --quiet > "${tmp}"`]);
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  });
}

export async function bootArtifacts(): Promise<BootArtifacts> {
  checkPrerequisites();
  const kernelVersion = findDom0Kernel();
  if (kernelVersion === undefined) throw new Error("unreachable: checkPrerequisites found a kernel");
  const [xen, initrd] = await Promise.all([xenBinary(), dom0Initrd(kernelVersion)]);
  return { xen, kernel: `/boot/vmlinuz-${kernelVersion}`, kernelVersion, initrd };
}
