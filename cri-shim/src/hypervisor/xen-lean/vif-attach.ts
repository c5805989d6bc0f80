// The lean backend's vifs join their bridges in-process (libsfxen: the bridge ioctl, then
// hotplug-status "connected" for netback), never through a hotplug script: for the shells it builds
// and for the PVH domains libxl builds for it, whose vif script is a no-op.
import { statSync } from "node:fs";
import { logger } from "../../../../lib/log.js";
import { useFifoQdisc } from "../../network/netlink.js";
import { type Backlog, vifsOfGoneDomains, waitForInterface } from "../../network/wait-interface.js";
import type { XenStore } from "../xenstore.js";
import { HypervisorError, type VifSpec } from "../types.js";
import type { Sfxen } from "./sfxen-ffi.js";

const log = logger("xen-lean");
/** How long netback gets to make a vif's interface, when it has no backlog of gone domains' vifs. */
const VIF_TIMEOUT_MS = 20_000;
/** With such a backlog, how long it gets to shrink before each further wait; and the most in all. */
const VIF_BACKLOG_GRACE_MS = 10_000;
const VIF_BACKLOG_MAX_MS = 90_000;
/** What libsfxen's own wait gets after the event loop's (its timeout path cleans the vif up). */
const VIF_FINAL_WAIT_MS = 100;
/** The no-op vif hotplug script earlier versions had libxl run for the PVH domains it built here
 *  (their vifs now never reach libxl: libxl-vifs.ts); such vifs are still adopted as ours. Xen's
 *  vif-bridge (bash, ~30 processes) took seconds in a busy dom0. */
export const IN_PROCESS_VIF_SCRIPT = "/bin/true";

/** Whether dom0 has a bridge of that name (the name is a validated interface name). */
export function bridgeExists(bridge: string): boolean {
  try {
    return statSync(`/sys/class/net/${bridge}/bridge`).isDirectory();
  } catch {
    return false;
  }
}

export interface PendingVif {
  devid: number;
  bridge: string;
}

export class VifAttacher {
  /** Vif attaches still waiting for netback, by domid. */
  private readonly attaching = new Map<number, Promise<void>>();

  constructor(private readonly sfx: Sfxen) {}

  /** netback's backlog for a vif of `domid`: the vifs of gone domains it has yet to unregister. */
  private backlog(domid: number): Backlog {
    return {
      size: async () => vifsOfGoneDomains(new Set((await this.sfx.listDomains()).map((d) => d.domid))),
      graceMs: VIF_BACKLOG_GRACE_MS,
      maxMs: VIF_BACKLOG_MAX_MS,
      onExtend: (vifs, waitedMs) =>
        log.info("netback still unregisters gone domains' vifs: waiting on", { domid, vifs, waitedMs }),
    };
  }

  has(domid: number): boolean {
    return this.attaching.has(domid);
  }

  /** Its wait ends by itself once the backend's nodes are gone. */
  forget(domid: number): void {
    this.attaching.delete(domid);
  }

  /** Joins each vif to its bridge as soon as netback made its interface; attached() waits for it. */
  attach(domid: number, vifs: PendingVif[]): void {
    const started = performance.now();
    // Where the time goes, for the log: netback making the interfaces, then joining them.
    let interfacesMs = 0;
    let joinMs = 0;
    const attach = Promise.all(
      vifs.map(async (v) => {
        // Waited for here, on the event loop's timers: libsfxen's own wait polls on a koffi worker
        // thread, and a batch of creates waiting for a busy netback held every worker, so each
        // other Xen call (a RunPodSandbox's memory check, a name read) queued behind them.
        const ifname = `vif${domid}.${v.devid}`;
        const left = await waitForInterface(ifname, VIF_TIMEOUT_MS, undefined, this.backlog(domid));
        const made = performance.now();
        interfacesMs = Math.max(interfacesMs, Math.round(made - started));
        // Before the attach brings it up: see useFifoQdisc. Not fatal; the default queue works.
        try {
          useFifoQdisc(ifname);
        } catch (err) {
          log.warn("vif keeps the kernel's default queue", { ifname, err: String(err) });
        }
        await this.sfx.vifAttach(domid, v.devid, v.bridge, Math.max(left, VIF_FINAL_WAIT_MS));
        joinMs = Math.max(joinMs, Math.round(performance.now() - made));
      }),
    ).then(() => {
      const ms = Math.round(performance.now() - started);
      log.info("vifs on their bridges", { domid, ms, interfacesMs, joinMs });
    });
    attach.catch(() => undefined); // observed by attached()
    this.attaching.set(domid, attach);
  }

  /** Resolves when the domain's vifs are on their bridges (at once for a domain not attached here). */
  async attached(domid: number): Promise<void> {
    const attach = this.attaching.get(domid);
    if (!attach) return;
    const started = performance.now();
    try {
      await attach;
      log.info("waited for the vifs", { domid, ms: Math.round(performance.now() - started) });
    } catch (err) {
      throw new HypervisorError(
        `domain ${domid}: ${err instanceof Error ? err.message : String(err)}`,
        err instanceof HypervisorError ? err.code : "Failed",
      );
    } finally {
      this.attaching.delete(domid);
    }
  }
}

/** The vifs of a domain an earlier process built that are ours to attach and not attached: no
 *  hotplug-status "connected". A vif libxl wired with a hotplug script of its own is not ours. */
export async function unattachedVifs(
  xs: XenStore,
  domid: number,
  vifs: VifSpec[],
  libxlMade: boolean,
): Promise<PendingVif[]> {
  const pending: PendingVif[] = [];
  for (const [devid, vif] of vifs.entries()) {
    const be = `/local/domain/0/backend/vif/${domid}/${devid}`;
    if ((await xs.read(`${be}/frontend-id`)) === undefined) continue;
    // libxl's own vifs name a hotplug script; ours (a PVH domain's, wired in-process) an empty one
    // (libsfxen's vif.c), or, made by an earlier version, the no-op one.
    const script = libxlMade ? await xs.read(`${be}/script`) : undefined;
    if (script !== undefined && script !== "" && script !== IN_PROCESS_VIF_SCRIPT) continue;
    if ((await xs.read(`${be}/hotplug-status`)) !== "connected") pending.push({ devid, bridge: vif.bridge });
  }
  return pending;
}
