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
export const HTTP_GUEST_KERNEL = join(HTTP_GUEST_DIR, "kernel");
export const HTTP_GUEST_INITRD = join(HTTP_GUEST_DIR, "initrd.cpio.gz");
/** The guest's init, also runnable on a host (not as PID 1 it reads $HTTP_GUEST_CMDLINE instead). */
export const HTTP_GUEST_INIT = join(HTTP_GUEST_DIR, "init");
/** Smallest guest memory measured to boot Debian's 6.1 kernel as a PV guest with this initramfs, plus margin. */
export const HTTP_GUEST_DEFAULT_MEMORY_MIB = 128;

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
  if (cfg.gateway !== undefined && !/^\d{1,3}(?:\.\d{1,3}){3}$/.test(cfg.gateway)) throw new Error(`http guest: gateway must be an IPv4 address, got '${cfg.gateway}'`);
  if (cfg.port !== undefined && (!Number.isInteger(cfg.port) || cfg.port < 1 || cfg.port > 65535)) throw new Error(`http guest: port must be 1..65535, got ${cfg.port}`);
  if (cfg.hostname !== undefined && !/^[A-Za-z0-9.-]{1,64}$/.test(cfg.hostname)) throw new Error(`http guest: hostname must be 1-64 of [A-Za-z0-9.-], got '${cfg.hostname}'`);
  for (const a of cfg.appArgs ?? []) {
    if (a === "" || /[\s"]/.test(a)) throw new Error(`http guest: app args cannot be empty or hold spaces or quotes (kernel command line), got '${a}'`);
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
export async function ensureHttpGuestImage(): Promise<{ kernel: string; initrd: string; init: string }> {
  await run("make", ["-s", "-C", join(REPO_ROOT, "native", "guests", "http")], { timeout: 300_000 });
  for (const p of [HTTP_GUEST_KERNEL, HTTP_GUEST_INITRD, HTTP_GUEST_INIT]) {
    if (!existsSync(p)) throw new Error(`http guest: ${p} missing after make -C native/guests/http`);
  }
  return { kernel: HTTP_GUEST_KERNEL, initrd: HTTP_GUEST_INITRD, init: HTTP_GUEST_INIT };
}
