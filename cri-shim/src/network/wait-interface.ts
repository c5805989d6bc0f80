// Waiting for a network interface to appear (netback makes a vif's when it probes the backend),
// on the event loop's timers rather than on a worker thread.
import { readdirSync, readFileSync } from "node:fs";
import { linkExists } from "./netlink.js";

/**
 * Work that must finish before the interface can appear, and how long to wait on for it. netback
 * handles a backend's appearance and the removal of earlier ones on one thread, in order: after many
 * domains went at once, a new vif comes only once the vifs of the gone domains are unregistered
 * (24 s for a thousand on an emulated node). While that backlog shrinks, the wait goes on.
 */
export interface Backlog {
  /** How much is left of it (0: none, the wait ends at its timeout). */
  size(): number | Promise<number>;
  /** Past the timeout, each check gives the backlog this long to shrink. */
  graceMs: number;
  /** The whole wait never exceeds this. */
  maxMs: number;
  /** Told each time the wait goes on past its deadline. */
  onExtend?: (backlog: number, waitedMs: number) => void;
}

/**
 * Resolves once the network interface exists, or when `timeoutMs` is up (later while `behind`
 * shrinks: Backlog); with the milliseconds left. Polls sysfs (one stat; not if_nametoindex, see
 * linkExists) with a growing pause, 2 ms to 50 ms.
 */
export async function waitForInterface(
  name: string,
  timeoutMs: number,
  exists: (name: string) => boolean = linkExists,
  behind?: Backlog,
): Promise<number> {
  const started = performance.now();
  let deadline = started + timeoutMs;
  let last = Infinity;
  for (let pause = 2; !exists(name); pause = Math.min(50, pause * 2)) {
    let left = deadline - performance.now();
    if (left <= 0 && behind) {
      // A failed look at the backlog (a domain list that failed) extends nothing: the wait ends.
      const size = await Promise.resolve()
        .then(() => behind.size())
        .catch(() => 0);
      const cap = started + behind.maxMs;
      if (size > 0 && size < last && deadline < cap) {
        last = size;
        deadline = Math.min(cap, performance.now() + behind.graceMs);
        behind.onExtend?.(size, Math.round(performance.now() - started));
        left = deadline - performance.now();
      }
    }
    if (left <= 0) return 0;
    await new Promise((r) => setTimeout(r, Math.min(pause, left)));
  }
  return Math.max(0, Math.round(deadline - performance.now()));
}

/**
 * How many vif interfaces in dom0 belong to domains not in `live`: netback has yet to unregister
 * them. `names` are the interfaces (default: /sys/class/net).
 */
export function vifsOfGoneDomains(live: ReadonlySet<number>, names?: readonly string[]): number {
  let all: readonly string[];
  try {
    all = names ?? readdirSync("/sys/class/net");
  } catch {
    return 0;
  }
  let n = 0;
  for (const name of all) {
    const m = /^vif(\d{1,5})\.\d{1,5}$/.exec(name);
    if (m && !live.has(Number(m[1]))) n++;
  }
  return n;
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
