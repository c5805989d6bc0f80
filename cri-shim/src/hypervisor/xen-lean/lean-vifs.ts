// The lean backend's vif plumbing, in-process: a domain's vifs written to XenStore and guarded
// (vif-wire.ts), then joined to their bridges when netback makes them (vif-attach.ts). For the
// shells libsfxen builds and for the domains libxl builds for the backend with no nic (libxl-vifs.ts).
import { guardDomainVifs, guardTableReads, unguardDomainVifs } from "../../network/antispoof.js";
import type { DomainSpec } from "../types.js";
import type { XenStore } from "../xenstore.js";
import type { Sfxen } from "./sfxen-ffi.js";
import { VifAttacher } from "./vif-attach.js";
import { startWiring, type WireDeps, type WirePhases } from "./vif-wire.js";

export class LeanVifs {
  readonly attacher: VifAttacher;
  /** The last wiring's time (ms; the XenStore transaction's writes and commit, anti-spoofing). */
  lastWire: WirePhases | undefined;
  lastAttachCallMs = 0;
  private readonly deps: WireDeps;

  /** `destroyed`: told of each domain destroyed or unwired here (its remnants are swept). */
  constructor(
    private readonly sfx: Sfxen,
    private readonly xs: XenStore,
    private readonly destroyed: (domid: number) => void = () => undefined,
  ) {
    this.attacher = new VifAttacher(sfx);
    this.deps = {
      vifWrite: (...a) => sfx.vifWrite(...a),
      guard: guardDomainVifs,
      tableReads: guardTableReads,
    };
  }

  /**
   * Writes the domain's vifs and guards them (side by side); netback makes the interfaces on its own
   * time, they are joined to their bridges as they come, and unpause() waits for that (the guest
   * never runs unplugged). Rejects with the first failure once both settled, destroying nothing.
   */
  async wire(domid: number, spec: DomainSpec): Promise<void> {
    const w = startWiring(this.deps, domid, spec, (p) => void (this.lastWire = p));
    // Joined to the bridge as soon as netback makes them (the guest stays paused: create and
    // restore return only once the guard is in too).
    const attach = w.written.then(() => {
      const t = performance.now();
      this.attacher.attach(
        domid,
        spec.vifs.map((vif, devid) => ({ devid, bridge: vif.bridge })),
      );
      this.lastAttachCallMs = Math.round(performance.now() - t);
    });
    const [d, a] = await Promise.allSettled([w.done, attach]);
    const failed = d.status === "rejected" ? d : a.status === "rejected" ? a : undefined;
    if (failed) throw failed.reason;
  }

  /** wire() for a shell libsfxen built: a failure destroys the shell. */
  wireShell(domid: number, spec: DomainSpec): Promise<void> {
    return this.wire(domid, spec).catch(async (err: unknown) => {
      this.attacher.forget(domid);
      await this.sfx.destroy(domid).catch(() => undefined);
      this.destroyed(domid);
      await unguardDomainVifs(domid).catch(() => undefined);
      throw err;
    });
  }

  /** Removes what wire() made for a domain libxl built (libxl's destroy knows nothing of it). */
  async unwire(domid: number): Promise<void> {
    this.attacher.forget(domid);
    await this.dropBackends(domid);
    this.destroyed(domid);
    await unguardDomainVifs(domid).catch(() => undefined);
  }

  /** The domain's vif backends in XenStore (netback unregisters each vif as its directory goes). */
  async dropBackends(domid: number): Promise<void> {
    const path = `/local/domain/0/backend/vif/${domid}`;
    if ((await this.xs.list(path)) !== undefined) await this.xs.remove(path);
  }
}
