// What a destroyed domain leaves behind in dom0, removed again once nothing can write it back.
// A destroy removes the domain's XenStore nodes itself (sfx_destroy, libxl's destroy), but two
// writers can outlive that removal when the domain dies right after it was built (a create that
// failed half-way, a pod deleted at once), and put nodes back:
// - xenconsoled reads a new domain's console nodes, maps its ring, and only then writes
//   `console/tty`: a destroy in between leaves /local/domain/<id>/console/tty;
// - netback's probe of a vif backend writes its feature-* nodes unguarded (and, when the
//   directory went away mid-probe, an error node under /local/domain/0/error): a destroy during the
//   probe leaves the backend directory and, with it, the kernel's xenbus device
//   (/sys/bus/xen-backend/devices/vif-<id>-<n>) and what netback holds for it.
// Neither writes any more once the domain is gone from Xen (xenconsoled writes only while its ring
// mapping keeps the domain dying) and the kernel has no xenbus device of it left. So each destroyed
// domid is looked at until then: what came back is removed (a backend directory's removal is what
// makes the kernel drop its device), and two clean looks in a row end it. A few XenStore listings
// and one hypercall per look, whatever the number of domids watched.
import { readdirSync } from "node:fs";
import { logger } from "../../../../lib/log.js";
import type { XenStore } from "../xenstore.js";

const log = logger("xen-lean");

/** Between looks. */
export const LOOK_EVERY_MS = 250;
/** After this, a domid is given up on (logged): something holds its domain or device. */
export const GIVE_UP_MS = 60_000;
/** Clean looks in a row that end the watch (a probe may register its device just after a look). */
export const CLEAN_LOOKS = 2;
/** Destroyed domids remembered after their watch ended (recent()). */
const RECENT = 256;

/** The directories of a domid that dom0 holds: the domain's own, its vif backends, netback's errors. */
export function remnantDirs(domid: number): string[] {
  return [
    `/local/domain/${domid}`,
    `/local/domain/0/backend/vif/${domid}`,
    `/local/domain/0/error/backend/vif/${domid}`,
  ];
}
/** Where remnantDirs() live, for one listing each per look. */
const PARENTS = ["/local/domain", "/local/domain/0/backend/vif", "/local/domain/0/error/backend/vif"];

/** Xen's view of a watched domid: gone, still dying (mappings held), or live again (reused). */
export type XenView = "absent" | "dying" | "live";

export interface RemnantLook {
  xen: XenView;
  /** The domid's directories that exist (of remnantDirs()). */
  dirs: readonly string[];
  /** The kernel's xenbus backend devices of the domid. */
  devices: number;
  /** Clean looks in a row before this one. */
  cleanLooks: number;
  /** Since the destroy. */
  ageMs: number;
}

export type RemnantStep =
  /** `clean`: nothing of the domid was seen (counts toward CLEAN_LOOKS). */
  | { do: "wait"; clean: boolean }
  | { do: "remove"; dirs: readonly string[] }
  | { do: "done"; why: "clean" | "reused" }
  | { do: "giveUp"; why: string };

/** What to do about one watched domid, from one look. The first rule that applies wins. */
export function planRemnants(l: RemnantLook): RemnantStep {
  // A live domain with the domid is a new one (a destroyed domain is dying or gone): its nodes are its own.
  if (l.xen === "live") return { do: "done", why: "reused" };
  if (l.ageMs > GIVE_UP_MS) {
    const held = l.xen === "dying" ? "the domain is still dying" : `${l.devices} xenbus device(s) remain`;
    if (l.xen === "dying" || l.devices > 0) return { do: "giveUp", why: held };
  }
  // Dying: xenconsoled may still hold the ring and write console/tty.
  if (l.xen === "dying") return { do: "wait", clean: false };
  if (l.dirs.length > 0) return { do: "remove", dirs: l.dirs };
  // Gone from XenStore, but the kernel's device is still unregistering: netback may yet write.
  if (l.devices > 0) return { do: "wait", clean: false };
  return l.cleanLooks + 1 >= CLEAN_LOOKS ? { do: "done", why: "clean" } : { do: "wait", clean: true };
}

/** The kernel's xenbus backend devices per domid (`vif-<domid>-<devid>`). */
export function backendDevices(names: readonly string[]): Map<number, number> {
  const out = new Map<number, number>();
  for (const n of names) {
    const m = /^[a-z]+-(\d{1,5})-\d{1,5}$/.exec(n);
    if (m) out.set(Number(m[1]), (out.get(Number(m[1])) ?? 0) + 1);
  }
  return out;
}

function listBackendDevices(): string[] {
  try {
    return readdirSync("/sys/bus/xen-backend/devices");
  } catch {
    return [];
  }
}

export interface RemnantDeps {
  xs: Pick<XenStore, "list" | "remove">;
  /** Every domain Xen has, with its dying flag (one hypercall). */
  domains(): Promise<readonly { domid: number; dying: boolean }[]>;
  /** The names under /sys/bus/xen-backend/devices. */
  devices?: () => readonly string[];
  /** Directories removed again, and domids given up on (metrics). */
  count?: (outcome: "removed" | "givenUp", n: number) => void;
}

interface Watched {
  since: number;
  cleanLooks: number;
}

export class RemnantSweeper {
  private readonly watched = new Map<number, Watched>();
  private readonly lately = new Set<number>();
  private timer: NodeJS.Timeout | undefined;
  private looking: Promise<void> | undefined;
  private readonly settledWaiters: (() => void)[] = [];
  private closed = false;

  constructor(
    private readonly deps: RemnantDeps,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** The domids watched now. */
  domids(): ReadonlySet<number> {
    return new Set(this.watched.keys());
  }
  /** Those and the last destroyed ones: a domain libxl builds here avoids them (its backends may
   *  still be closing, and a domid under watch must not get a new domain's nodes removed). */
  recent(): ReadonlySet<number> {
    return new Set([...this.lately, ...this.watched.keys()]);
  }

  /** Looks after a destroyed domain's remnants until nothing can bring them back. */
  watch(domid: number): void {
    if (this.closed || domid <= 0) return;
    this.lately.delete(domid);
    this.lately.add(domid);
    if (this.lately.size > RECENT) this.lately.delete(this.lately.values().next().value!);
    this.watched.set(domid, { since: this.now(), cleanLooks: 0 });
    this.schedule();
  }

  /**
   * Watches every domid that has dom0 directories but no domain: what a process that died before
   * its sweep ended left. The listings come before Xen's list: a domain's nodes are written after
   * Xen made it, so a domid listed first and absent from Xen after has nothing live behind it.
   */
  async adoptOrphans(): Promise<number[]> {
    const listed = new Set<number>();
    for (const p of PARENTS)
      for (const c of (await this.deps.xs.list(p)) ?? [])
        if (/^\d{1,5}$/.test(c) && c !== "0") listed.add(Number(c));
    const xen = new Set((await this.deps.domains()).map((d) => d.domid));
    const orphans = [...listed].filter((d) => !xen.has(d));
    for (const d of orphans) this.watch(d);
    return orphans;
  }

  /** Resolves once no domid is watched. */
  settled(): Promise<void> {
    if (this.watched.size === 0) return Promise.resolve();
    return new Promise((r) => this.settledWaiters.push(r));
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.watched.clear();
    this.wake();
  }

  private schedule(): void {
    if (this.timer || this.looking || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.looking = this.lookOnce()
        .catch((err: unknown) => void log.warn("remnant sweep", { err: String(err) }))
        .finally(() => {
          this.looking = undefined;
          if (this.watched.size > 0) this.schedule();
          else this.wake();
        });
    }, LOOK_EVERY_MS); // not unref'd: settled() waits on it, and close() clears it
  }

  private wake(): void {
    for (const r of this.settledWaiters.splice(0)) r();
  }

  /** One look at every watched domid: listings first, then Xen (see adoptOrphans). */
  async lookOnce(): Promise<void> {
    const present = new Set<string>();
    for (const p of PARENTS) for (const c of (await this.deps.xs.list(p)) ?? []) present.add(`${p}/${c}`);
    const xen = new Map((await this.deps.domains()).map((d) => [d.domid, d.dying]));
    const devices = backendDevices((this.deps.devices ?? listBackendDevices)());
    for (const [domid, w] of [...this.watched]) {
      const dying = xen.get(domid);
      const step = planRemnants({
        xen: dying === undefined ? "absent" : dying ? "dying" : "live",
        dirs: remnantDirs(domid).filter((d) => present.has(d)),
        devices: devices.get(domid) ?? 0,
        cleanLooks: w.cleanLooks,
        ageMs: this.now() - w.since,
      });
      if (step.do === "wait") {
        w.cleanLooks = step.clean ? w.cleanLooks + 1 : 0;
      } else if (step.do === "remove") {
        w.cleanLooks = 0;
        for (const d of step.dirs) await this.deps.xs.remove(d).catch(() => undefined);
        this.deps.count?.("removed", step.dirs.length);
        log.info("removed what a destroyed domain's late writers put back", { domid, dirs: step.dirs });
      } else {
        this.watched.delete(domid);
        if (step.do === "giveUp") {
          this.deps.count?.("givenUp", 1);
          log.warn("a destroyed domain's remnants are not gone", { domid, why: step.why });
        }
      }
    }
  }
}
