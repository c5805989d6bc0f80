// Notices guests that end on their own (poweroff from inside, crash, a domain destroyed by hand):
// records the exit code and reason, destroys the dead domain so its memory returns, stops the log copy.
//
// When the hypervisor has exit events (the lean backend: XenStore's @releaseDomain), a pass runs on
// each burst of events and otherwise only every monitorSafetyIntervalMs, for an event lost; without
// them, every monitorIntervalMs. Each pass lists all domains, so polling twice a second cost dom0
// time in proportion to the VMs even while none of them changed.
import { logger } from "../../../lib/log.js";
import type { RuntimeContext } from "./context.js";
import { exitFromShutdown } from "./container-state.js";
import type { ContainerService } from "./containers.js";
import { isDomainless, isLeftSuspended } from "./model.js";

const log = logger("cri-monitor");
const DEFAULT_SAFETY_INTERVAL_MS = 30_000;

export class ExitMonitor {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  /** An event came while a pass was running: run another after it. */
  private again = false;
  private stopWatch: (() => void) | undefined;
  private stopped = false;
  /** Passes run so far (for tests and metrics). */
  passes = 0;

  constructor(
    private readonly rt: RuntimeContext,
    private readonly containers: ContainerService,
  ) {}

  async start(): Promise<void> {
    const hv = this.rt.hypervisor;
    if (hv.watchDomainEvents) {
      try {
        this.stopWatch = await hv.watchDomainEvents(
          () => this.kick(),
          (why) => {
            log.warn("exit events stopped; polling for exits", { why });
            this.stopWatch = undefined;
            this.poll(this.rt.options.monitorIntervalMs);
            this.kick();
          },
        );
      } catch (err) {
        log.warn("no exit events; polling for exits", { err: String(err) });
      }
    }
    this.poll(
      this.stopWatch
        ? (this.rt.options.monitorSafetyIntervalMs ?? DEFAULT_SAFETY_INTERVAL_MS)
        : this.rt.options.monitorIntervalMs,
    );
  }

  private poll(everyMs: number): void {
    if (this.stopped) return;
    clearInterval(this.timer);
    this.timer = setInterval(() => this.kick(), everyMs);
    this.timer.unref();
  }

  /** A pass now, or right after the one running. */
  private kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.check().finally(() => {
      this.running = undefined;
      if (this.again) {
        this.again = false;
        this.kick();
      }
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.stopWatch?.();
    this.stopWatch = undefined;
    await this.running;
  }

  /** One pass; exported for tests and for recovery. */
  async check(): Promise<void> {
    this.passes++;
    // No domain on purpose (saved to disk, still being received, or moved to another node): not an exit.
    const live = this.rt.containers
      .list()
      .filter(
        (c) =>
          (c.status.state === "running" || c.status.state === "created") &&
          !isDomainless(c.status) &&
          !this.rt.stopping.has(c.meta.id),
      );
    if (live.length === 0) return;
    try {
      // By domid: a find per container made each pass quadratic in the number of VMs.
      const byDomid = new Map((await this.rt.hypervisor.list()).map((x) => [x.domid, x]));
      for (const c of live) {
        const found = c.status.domid === undefined ? undefined : byDomid.get(c.status.domid);
        const d = found?.name === c.meta.domainName ? found : undefined;
        if (d && d.state !== "shutdown" && d.state !== "crashed") continue;
        // Suspended by a save or a migration's send (in flight, or cut off by a shim restart: the node
        // agent resumes it): the guest did not end.
        if (d && isLeftSuspended(d)) continue;
        await this.rt.locks.run(c.meta.sandboxId, async () => {
          const cur = this.rt.containers.get(c.meta.id);
          if (
            !cur ||
            (cur.status.state !== "running" && cur.status.state !== "created") ||
            isDomainless(cur.status) ||
            cur.status.domid !== c.status.domid ||
            this.rt.stopping.has(c.meta.id)
          )
            return;
          // Seen again under the lock: a migration's send holds it while the domain is suspended
          // for the last round, and resumes it when the stream fails; that is no exit.
          const now =
            cur.status.domid === undefined ? undefined : await this.rt.hypervisor.info(cur.status.domid);
          if (now && now.name === c.meta.domainName && now.state !== "shutdown" && now.state !== "crashed")
            return;
          const ended = d ? exitFromShutdown(d.shutdownReason, d.state) : exitFromShutdown(undefined, "gone");
          if (d)
            await this.rt.hypervisor
              .destroy(d.domid)
              .catch((err: unknown) => log.warn("destroy of ended domain failed", { err: String(err) }));
          await this.containers.markExited(c.meta.id, ended);
        });
      }
    } catch (err) {
      log.warn("exit check failed", { err: String(err) });
    }
  }
}
