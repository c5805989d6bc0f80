// Waiting for a network interface to appear (netback makes a vif's when it probes the backend),
// on the event loop's timers rather than on a worker thread.
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
