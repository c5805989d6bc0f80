// Waiting for a network interface to appear (netback makes a vif's when it probes the backend),
// on the event loop's timers rather than on a worker thread.
import { readFileSync } from "node:fs";
import { linkExists } from "./netlink.js";

/**
 * Resolves once the network interface exists, or when `timeoutMs` is up; with the milliseconds left.
 * Polls sysfs (one stat; not if_nametoindex, see linkExists) with a growing pause, 2 ms to 50 ms.
 */
export async function waitForInterface(
  name: string,
  timeoutMs: number,
  exists: (name: string) => boolean = linkExists,
): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  for (let pause = 2; !exists(name); pause = Math.min(50, pause * 2)) {
    const left = deadline - performance.now();
    if (left <= 0) return 0;
    await new Promise((r) => setTimeout(r, Math.min(pause, left)));
  }
  return Math.max(0, Math.round(deadline - performance.now()));
}

/** Whether the interface's carrier is up (sysfs; false when it is down or gone). For a vif: its
 *  guest's netfront has connected, so the guest can send and receive on it. */
export function carrierUp(name: string): boolean {
  if (!/^[^/\s]{1,15}$/.test(name) || name === "." || name === "..") return false;
  try {
    return readFileSync(`/sys/class/net/${name}/carrier`, "utf8").trim() === "1";
  } catch {
    return false;
  }
}

/** Resolves with the ms waited once the interface's carrier is up, or undefined after `timeoutMs`. */
export async function waitForCarrier(
  name: string,
  timeoutMs: number,
  up: (name: string) => boolean = carrierUp,
): Promise<number | undefined> {
  const started = performance.now();
  for (let pause = 2; !up(name); pause = Math.min(20, pause * 2)) {
    const left = started + timeoutMs - performance.now();
    if (left <= 0) return undefined;
    await new Promise((r) => setTimeout(r, Math.min(pause, left)));
  }
  return Math.round(performance.now() - started);
}
