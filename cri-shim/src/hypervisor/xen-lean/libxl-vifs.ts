// The domains libxl builds for the lean backend (PVH guests, their restores and incoming migrations)
// get their vifs the lean way too: libxl makes the domain with no nic, under a domid chosen here, and
// the vifs are wired in-process (XenStore entries, anti-spoofing, the bridge join, as a PV shell's)
// as soon as libxl has written the domain's XenStore directory, while libxl goes on building it or
// reading a restore's stream. libxl's own nic setup ran after the stream's last byte (its XenStore
// entries, netback's probe, a hotplug script's fork), so all of it was a migrating guest's downtime.
import { randomInt } from "node:crypto";
import { HypervisorError, type DomainSpec } from "../types.js";
import type { LibxlBuildOptions } from "../domain-config.js";

/** Xen's first reserved domid (DOMID_FIRST_RESERVED): guests are 1..0x7fef. */
const DOMID_LIMIT = 0x7ff0;
/** How often the domain's XenStore directory is looked for while libxl makes it. */
const NAME_POLL_MS = 10;

export interface LibxlVifDeps {
  /** Every domid Xen has now. */
  domids(): Promise<number[]>;
  /** The domain's name in XenStore (libxl writes it with the directory the vifs go under). */
  nameOf(domid: number): Promise<string | undefined>;
  /** Writes, guards and joins the vifs; rejects on the first failure, destroying nothing. */
  wire(domid: number, spec: DomainSpec): Promise<void>;
  /** Removes what wire() made (the vifs' backend entries, their guard, the pending joins). */
  unwire(domid: number): Promise<void>;
  /** Destroys a built domain (libxl's destroy, then unwire()). */
  destroy(domid: number): Promise<void>;
}

/**
 * A domid for a new domain: random among those Xen does not use and `avoid` (recently destroyed
 * ones, whose backends may still be closing), so two toolstacks building at once rarely meet; a
 * clash makes Xen refuse the create (EEXIST) and the build fails whole, nothing left behind.
 */
export function pickDomid(
  used: ReadonlySet<number>,
  avoid: ReadonlySet<number> = new Set(),
  random: (max: number) => number = randomInt,
): number {
  if (used.size + avoid.size >= DOMID_LIMIT - 1) throw new HypervisorError("no free domid", "Failed");
  for (;;) {
    const d = 1 + random(DOMID_LIMIT - 1);
    if (!used.has(d) && !avoid.has(d)) return d;
  }
}

/**
 * Builds a domain through `build` (libxl) with the vifs wired by the caller: resolves with its domid
 * once libxl is done and the vifs are wired (their bridge join may still be pending: unpause waits
 * for it). `onWired` runs once the wiring has settled, whatever its outcome (a migration's "ready");
 * a wiring failure destroys the built domain and rejects.
 */
export async function buildWithLeanVifs(
  deps: LibxlVifDeps,
  spec: DomainSpec,
  build: (opts: LibxlBuildOptions) => Promise<number>,
  opts: { avoid?: ReadonlySet<number>; onWired?: () => void } = {},
): Promise<number> {
  if (spec.vifs.length === 0) {
    const domid = await build({});
    opts.onWired?.();
    return domid;
  }
  const domid = pickDomid(new Set(await deps.domids()), opts.avoid);
  let buildSettled = false;
  const wiring = (async () => {
    // libxl replaces the domain's directory when it makes it: the vifs go in once it is there.
    // A build that has ended has made it or failed: one more look, then no more waiting.
    for (;;) {
      const settled = buildSettled;
      if ((await deps.nameOf(domid)) === spec.name) break;
      if (settled) throw new HypervisorError(`${spec.name}: domain ${domid} is not there to wire its vifs`);
      await new Promise((r) => setTimeout(r, NAME_POLL_MS));
    }
    await deps.wire(domid, spec);
  })();
  void wiring.then(
    () => opts.onWired?.(),
    () => opts.onWired?.(),
  );
  let built: number;
  try {
    built = await build({ domid, vifsByCaller: true }).finally(() => (buildSettled = true));
  } catch (err) {
    await wiring.catch(() => undefined);
    await deps.unwire(domid).catch(() => undefined);
    throw err;
  }
  try {
    await wiring;
  } catch (err) {
    await deps.destroy(built).catch(() => undefined);
    throw new HypervisorError(
      `${spec.name}: its vifs: ${err instanceof Error ? err.message : String(err)}`,
      err instanceof HypervisorError ? err.code : "Failed",
    );
  }
  return built;
}
