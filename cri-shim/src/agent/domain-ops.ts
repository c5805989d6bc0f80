// The node agent's hands: pause, unpause, suspend to a checkpoint file, restore from it. Each runs
// under the sandbox's lock (the same lock the CRI calls take), so a StopContainer never races a save,
// and each records the outcome in the container store so the CRI view stays true: a suspended
// container is still "running" for the kubelet, without a domid, and a restored one has its new domid.
import { createHash, randomBytes } from "node:crypto";
import { constants, createReadStream, statSync } from "node:fs";
import { mkdir, open, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { logger } from "../../../lib/log.js";
import type { DomainSpec } from "../hypervisor/types.js";
import type { RuntimeContext } from "../services/context.js";
import type { ContainerService } from "../services/containers.js";
import type { ContainerEntry } from "../services/containers.js";

const log = logger("node-agent-ops");
export const DEFAULT_CHECKPOINT_DIR = "/var/lib/superfluid/checkpoints";

export function checkpointPath(dir: string, vmUid: string): string {
  if (!/^[0-9a-zA-Z-]{1,64}$/.test(vmUid))
    throw new Error(`not a UID: ${JSON.stringify(vmUid.slice(0, 80))}`);
  return join(dir, `${vmUid}.ckpt`);
}

/**
 * Whether a regular file is there. Asked on every reconcile of every VM, and the answer is nearly
 * always no: a synchronous stat that does not throw on a missing file costs ~1 µs of CPU, where the
 * promise API's (a thread-pool round trip and an Error built for ENOENT) cost ~40 µs on the host.
 */
export async function fileExists(path: string): Promise<boolean> {
  try {
    return statSync(path, { throwIfNoEntry: false })?.isFile() ?? false;
  } catch {
    return false;
  }
}

async function sha256Of(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

export class DomainOps {
  constructor(
    private readonly rt: RuntimeContext,
    private readonly containers: ContainerService,
    readonly checkpointDir: string,
  ) {}

  private locked<T>(c: ContainerEntry, work: (cur: ContainerEntry) => Promise<T>): Promise<T> {
    return this.rt.locks.run(c.meta.sandboxId, async () => {
      const cur = this.rt.containers.get(c.meta.id);
      if (!cur || cur.status.state === "exited") throw new Error(`container ${c.meta.id} is gone`);
      return work(cur);
    });
  }

  private liveDomid(cur: ContainerEntry): number {
    if (cur.status.domid === undefined || cur.status.suspended)
      throw new Error(`container ${cur.meta.id} has no domain`);
    return cur.status.domid;
  }

  pause(c: ContainerEntry): Promise<void> {
    return this.locked(c, async (cur) => this.rt.hypervisor.pause(this.liveDomid(cur)));
  }

  unpause(c: ContainerEntry): Promise<void> {
    return this.locked(c, async (cur) => this.rt.hypervisor.unpause(this.liveDomid(cur)));
  }

  /**
   * Saves the domain into `<dir>/<vm uid>.ckpt`: written to a temp file, fsynced, renamed, so the
   * checkpoint is either whole or absent. The save leaves no domain (libxl destroys its shell).
   */
  suspend(c: ContainerEntry, path: string): Promise<{ ms: number; bytes: number }> {
    return this.locked(c, async (cur) => {
      const domid = this.liveDomid(cur);
      const started = Date.now();
      // A suspend is a request the guest answers (XenStore control/shutdown): a paused guest cannot.
      if ((await this.rt.hypervisor.info(domid))?.state === "paused") await this.rt.hypervisor.unpause(domid);
      await mkdir(this.checkpointDir, { recursive: true, mode: 0o700 });
      const tmp = `${path}.tmp-${randomBytes(4).toString("hex")}`;
      const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
      const opened = Date.now();
      let saved = opened;
      try {
        await this.rt.hypervisor.save(domid, fh.fd);
        saved = Date.now();
        await fh.sync();
      } catch (err) {
        await fh.close().catch(() => undefined);
        await rm(tmp, { force: true });
        // A save that failed half-way can leave the domain suspended: bring it back rather than lose it.
        const d = await this.rt.hypervisor.info(domid).catch(() => undefined);
        if (d && d.state === "shutdown" && d.shutdownReason === "suspend")
          log.error("domain left suspended by a failed save", { domid });
        throw err;
      }
      const { size } = await fh.stat();
      await fh.close();
      const sha256 = await sha256Of(tmp);
      await rename(tmp, path);
      await this.rt.containers.update(cur.meta.id, (s) => ({
        ...s,
        domid: undefined,
        suspended: { checkpoint: path, since: new Date().toISOString(), sha256 },
      }));
      const ms = Date.now() - started;
      log.info("domain suspended to disk", {
        container: cur.meta.id,
        domid,
        path,
        bytes: size,
        ms,
        // where the time went: before the save, the save (the domain destroyed), after it
        phases: { prepareMs: opened - started, saveMs: saved - opened, recordMs: Date.now() - saved },
      });
      return { ms, bytes: size };
    });
  }

  /** Restores the domain from its checkpoint under the same name; the checkpoint is deleted after. */
  restore(c: ContainerEntry, paused: boolean): Promise<{ ms: number; domid: number }> {
    return this.locked(c, async (cur) => {
      const record = cur.status.suspended;
      if (!record) throw new Error(`container ${cur.meta.id} is not suspended`);
      const started = Date.now();
      const spec = this.domainSpec(cur);
      // A damaged file must never reach libxl: it trusts the stream (a corrupt one can take the
      // shim's process down with it, and flipped memory pages would restore silently).
      if (record.sha256) {
        const actual = await sha256Of(record.checkpoint);
        if (actual !== record.sha256)
          throw new Error(
            `checkpoint ${record.checkpoint} is corrupt: sha256 ${actual.slice(0, 16)}... differs from ${record.sha256.slice(0, 16)}... recorded at save`,
          );
      }
      const fh = await open(record.checkpoint, constants.O_RDONLY);
      const opened = Date.now();
      let domid: number;
      try {
        domid = await this.rt.hypervisor.restore(spec, fh.fd, { paused });
      } catch (err) {
        // Whatever libxl built before failing must not outlive the attempt.
        const leftover = await this.rt.hypervisor.findByName(spec.name).catch(() => undefined);
        if (leftover) await this.rt.hypervisor.destroy(leftover.domid).catch(() => undefined);
        throw err;
      } finally {
        await fh.close();
      }
      const restored = Date.now();
      await this.rt.containers.update(cur.meta.id, (s) => {
        const { suspended: _dropped, ...rest } = s;
        return { ...rest, domid };
      });
      await rm(record.checkpoint, { force: true });
      // A pty console belongs to the old domain; the xenconsoled log file carries on by name.
      if (!this.rt.options.consoleLogDir && cur.meta.logPath) {
        await this.rt.pumps.get(cur.meta.id)?.stop();
        this.rt.pumps.delete(cur.meta.id);
        await this.containers.attachConsole(cur.meta.id, domid, cur.meta.domainName, cur.meta.logPath);
      }
      const ms = Date.now() - started;
      log.info("domain restored", {
        container: cur.meta.id,
        domid,
        paused,
        ms,
        // where the time went: checksum and open, the restore (and unpause), record and console
        phases: {
          prepareMs: opened - started,
          restoreMs: restored - opened,
          recordMs: Date.now() - restored,
        },
      });
      return { ms, domid };
    });
  }

  /** The same domain the CRI built at CreateContainer (name, kernel, command line, vif, sizes). */
  domainSpec(cur: ContainerEntry): DomainSpec {
    const sb = this.rt.sandboxes.get(cur.meta.sandboxId);
    const net = sb?.status.network;
    if (!net) throw new Error(`pod sandbox ${cur.meta.sandboxId} has no network`);
    return {
      name: cur.meta.domainName,
      kernelPath: cur.meta.kernelPath,
      ...(cur.meta.initrdPath ? { initrdPath: cur.meta.initrdPath } : {}),
      cmdline: cur.meta.cmdline,
      memoryMiB: cur.status.memoryMiB,
      vcpus: cur.status.vcpus,
      guestType: cur.meta.guestType,
      // A domain received by migration keeps the source's MAC and the address it booted with.
      vifs: [
        {
          bridge: net.bridge,
          mac: cur.status.guestNetwork?.mac ?? net.mac,
          ip: cur.status.guestNetwork?.ip ?? net.ip,
          gateway: cur.status.guestNetwork?.gateway ?? net.gateway,
        },
      ],
    };
  }
}
