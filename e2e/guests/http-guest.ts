// The Linux-app network guest (native/guests/http): where `make -C native` puts it and how to
// configure it. Other suites use these to run a guest that answers HTTP (network, readiness-probe
// and traffic tests) until our own unikernel has a network driver.
//
// The guest reads its kernel command line: ip=<addr>/<prefix> gw=<addr> port=<n> hostname=<name>
// [iface=eth0] [modules=a,b]; words after "--" are the app's args, reported back as bootArgs.
// It answers GET /healthz with 200 "ok" and GET / with HttpGuestStatus, and prints
// "http: ready on <ip>:<port> in <ms> ms" (ms since kernel start) on its console; a bad command line
// prints "http: fatal: ..." and powers the guest off.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { REPO_ROOT } from "../../lib/paths.js";

const run = promisify(execFile);

export const HTTP_GUEST_DIR = join(REPO_ROOT, "native", "build", "http");
/** For Xen: the ELF kernel, gzipped (xl builds a domain from it 2-3x faster than from the bzImage). */
export const HTTP_GUEST_KERNEL = join(HTTP_GUEST_DIR, "kernel");
/** The same kernel as a bzImage, for boots outside Xen (QEMU's -kernel). */
export const HTTP_GUEST_BZIMAGE = join(HTTP_GUEST_DIR, "vmlinuz");
export const HTTP_GUEST_INITRD = join(HTTP_GUEST_DIR, "initrd.cpio.gz");
/** The guest's init, also runnable on a host (not as PID 1 it reads $HTTP_GUEST_CMDLINE instead). */
export const HTTP_GUEST_INIT = join(HTTP_GUEST_DIR, "init");
/**
 * Smallest guest memory that boots Debian's 6.1 kernel as a PV guest with this initramfs, measured:
 * 64 MiB fails in the domain builder ("segment kernel too large"), 80 MiB panics out of memory during
 * kernel init (BTF parsing), 96 MiB boots and serves.
 */
export const HTTP_GUEST_DEFAULT_MEMORY_MIB = 96;
/** A vif hotplug script fast enough for an emulated dom0 (see the file for why). */
export const FAST_VIF_SCRIPT = join(REPO_ROOT, "e2e", "guests", "xen-vif-bridge.sh");

/** What GET / answers. */
export interface HttpGuestStatus {
  hostname: string;
  uptimeSeconds: number;
  requests: number;
  address: string;
  bootArgs: string[];
}

export interface HttpGuestConfig {
  /** IPv4 address with prefix, e.g. 10.244.1.10/24. */
  ip: string;
  gateway?: string;
  port?: number;
  hostname?: string;
  /** Extra kernel parameters before the app's part (e.g. "console=ttyS0" outside Xen). */
  kernelArgs?: string[];
  /** The app's own args (after "--"). */
  appArgs?: string[];
}

const READY_LINE = /http: ready on ([\d.]+):(\d+) in (\d+) ms/;
const FATAL_LINE = /http: fatal: (.*)/;

/** The kernel command line for a guest; rejects values the guest would refuse, before any boot. */
export function httpGuestCmdline(cfg: HttpGuestConfig): string {
  const m = /^(\d{1,3}(?:\.\d{1,3}){3})\/(\d{1,2})$/.exec(cfg.ip);
  if (!m || m[1]!.split(".").some((o) => Number(o) > 255) || Number(m[2]) < 1 || Number(m[2]) > 32) {
    throw new Error(`http guest: ip must be <IPv4>/<1..32>, got '${cfg.ip}'`);
  }
  if (cfg.gateway !== undefined && !/^\d{1,3}(?:\.\d{1,3}){3}$/.test(cfg.gateway))
    throw new Error(`http guest: gateway must be an IPv4 address, got '${cfg.gateway}'`);
  if (cfg.port !== undefined && (!Number.isInteger(cfg.port) || cfg.port < 1 || cfg.port > 65535))
    throw new Error(`http guest: port must be 1..65535, got ${cfg.port}`);
  if (cfg.hostname !== undefined && !/^[A-Za-z0-9.-]{1,64}$/.test(cfg.hostname))
    throw new Error(`http guest: hostname must be 1-64 of [A-Za-z0-9.-], got '${cfg.hostname}'`);
  for (const a of cfg.appArgs ?? []) {
    if (a === "" || /[\s"]/.test(a))
      throw new Error(
        `http guest: app args cannot be empty or hold spaces or quotes (kernel command line), got '${a}'`,
      );
  }
  const words = [...(cfg.kernelArgs ?? []), `ip=${cfg.ip}`];
  if (cfg.gateway !== undefined) words.push(`gw=${cfg.gateway}`);
  if (cfg.port !== undefined) words.push(`port=${cfg.port}`);
  if (cfg.hostname !== undefined) words.push(`hostname=${cfg.hostname}`);
  if (cfg.appArgs?.length) words.push("--", ...cfg.appArgs);
  return words.join(" ");
}

export interface ReadyLine {
  ip: string;
  port: number;
  /** Milliseconds from the guest kernel's start to serving. */
  bootMs: number;
}

/** Finds the guest's ready line in console output. */
export function parseReadyLine(consoleText: string): ReadyLine | undefined {
  const m = READY_LINE.exec(consoleText);
  return m ? { ip: m[1]!, port: Number(m[2]), bootMs: Number(m[3]) } : undefined;
}

/** The guest's reason for giving up, if it printed one. */
export function parseFatalLine(consoleText: string): string | undefined {
  return FATAL_LINE.exec(consoleText)?.[1]?.trim();
}

/** Builds the image if needed (incremental: a no-op when nothing changed) and returns its paths. */
export async function ensureHttpGuestImage(): Promise<{
  kernel: string;
  bzImage: string;
  initrd: string;
  init: string;
}> {
  await run("make", ["-s", "-C", join(REPO_ROOT, "native", "guests", "http")], { timeout: 300_000 });
  for (const p of [HTTP_GUEST_KERNEL, HTTP_GUEST_BZIMAGE, HTTP_GUEST_INITRD, HTTP_GUEST_INIT]) {
    if (!existsSync(p)) throw new Error(`http guest: ${p} missing after make -C native/guests/http`);
  }
  return {
    kernel: HTTP_GUEST_KERNEL,
    bzImage: HTTP_GUEST_BZIMAGE,
    initrd: HTTP_GUEST_INITRD,
    init: HTTP_GUEST_INIT,
  };
}

export interface XlGuestOptions {
  /** The Xen domain name. */
  name: string;
  cmdline: string;
  /** The dom0 bridge the vif joins (the Xen node's `bridge`). */
  bridge: string;
  memoryMiB?: number;
  /** Default: a random locally administered address in Xen's 00:16:3e range. */
  mac?: string;
  /** The vif hotplug script; default FAST_VIF_SCRIPT. */
  vifScript?: string;
  /** Default "pv". "pvh" needs a node with HAP; Debian's kernel carries the PVH entry. */
  guestType?: "pv" | "pvh";
}

/** An `xl create` config for the guest (dom0 sees the host's / at the same paths). */
export function httpGuestXlConfig(o: XlGuestOptions): string {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(o.name)) throw new Error(`http guest: invalid domain name '${o.name}'`);
  if (/["\\\n]/.test(o.cmdline))
    throw new Error("http guest: the command line cannot hold quotes, backslashes or newlines");
  const mac =
    o.mac ??
    `00:16:3e:${[0, 0, 0]
      .map(() =>
        Math.floor(Math.random() * 256)
          .toString(16)
          .padStart(2, "0"),
      )
      .join(":")}`;
  return [
    `name = "${o.name}"`,
    `type = "${o.guestType ?? "pv"}"`,
    // PVH: Xen's HAP paging pool, sized as the shim's libxl driver sizes it (libxl's default for
    // small guests can be below what Xen accepts).
    ...(o.guestType === "pvh"
      ? [`shadow_memory = ${Math.ceil((2048 + 8 * (o.memoryMiB ?? HTTP_GUEST_DEFAULT_MEMORY_MIB)) / 1024)}`]
      : []),
    `kernel = "${HTTP_GUEST_KERNEL}"`,
    `ramdisk = "${HTTP_GUEST_INITRD}"`,
    `extra = "console=hvc0 panic=-1 quiet ${o.cmdline}"`,
    `memory = ${o.memoryMiB ?? HTTP_GUEST_DEFAULT_MEMORY_MIB}`,
    `vcpus = 1`,
    `vif = [ "bridge=${o.bridge},mac=${mac},script=${o.vifScript ?? FAST_VIF_SCRIPT}" ]`,
    // The guest powers itself off on a bad command line: it must go away, not restart in a loop.
    `on_poweroff = "destroy"`,
    `on_reboot = "destroy"`,
    `on_crash = "destroy"`,
    "",
  ].join("\n");
}
