// TEST DOUBLE, for pure unit tests of the CRI services only: a Hypervisor kept in memory, with a FIFO
// per domain standing in for the console pty. The real backend is hypervisor/xen-libxl.ts; the tests
// that prove the shim on Xen (*.xen.test.ts) use that one inside the emulated node.
import { execFileSync } from "node:child_process";
import { closeSync, constants, mkdtempSync, openSync, read, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type DomainInfo,
  type DomainSpec,
  type HostInfo,
  type Hypervisor,
  HypervisorError,
  type RestoreOptions,
  type VifSpec,
} from "../hypervisor/types.js";

interface FakeDomain {
  info: DomainInfo;
  spec: DomainSpec;
  consoleFd: number;
  consolePath: string;
}

export class MemoryHypervisorDouble implements Hypervisor {
  readonly name = "memory-test-double";
  private readonly domains = new Map<number, FakeDomain>();
  private nextDomid = 1;
  private readonly dir = mkdtempSync(join(tmpdir(), "sf-memhv-"));
  /** When false, a poweroff request is ignored (a guest that hangs), to test the grace period. */
  obeyShutdown = true;
  totalMemoryKiB = 4 * 1024 * 1024;
  /** What adopt() was asked, in order: a recovery's takeovers, for the tests to check. */
  readonly adopted: { domid: number; vifs: VifSpec[] }[] = [];

  async host(): Promise<HostInfo> {
    const used = [...this.domains.values()].reduce((s, d) => s + d.info.maxMemoryKiB, 0);
    return {
      totalMemoryKiB: this.totalMemoryKiB,
      freeMemoryKiB: this.totalMemoryKiB - used,
      cpus: 2,
      xenVersion: "test-double",
    };
  }
  async list(): Promise<DomainInfo[]> {
    return [...this.domains.values()].map((d) => ({ ...d.info }));
  }
  async info(domid: number): Promise<DomainInfo | undefined> {
    const d = this.domains.get(domid);
    return d ? { ...d.info } : undefined;
  }
  async findByName(name: string): Promise<DomainInfo | undefined> {
    return (await this.list()).find((d) => d.name === name);
  }
  /** Test control: a paused domain built outside the shim (a leftover, a half-made restore). */
  strayDomain(name: string, memoryMiB = 8): Promise<number> {
    return this.createPaused({
      name,
      kernelPath: "/nonexistent",
      cmdline: "",
      memoryMiB,
      vcpus: 1,
      guestType: "pv",
      vifs: [],
    });
  }
  async createPaused(spec: DomainSpec): Promise<number> {
    if (await this.findByName(spec.name))
      throw new HypervisorError(`domain ${spec.name} exists`, "InvalidArgument");
    if ((await this.host()).freeMemoryKiB < spec.memoryMiB * 1024)
      throw new HypervisorError("not enough memory", "OutOfMemory");
    const domid = this.nextDomid++;
    const consolePath = join(this.dir, `console-${domid}`);
    execFileSync("mkfifo", [consolePath]);
    const consoleFd = openSync(consolePath, constants.O_RDWR | constants.O_NONBLOCK);
    this.domains.set(domid, {
      spec,
      consoleFd,
      consolePath,
      info: {
        domid,
        name: spec.name,
        uuid: `00000000-0000-0000-0000-${String(domid).padStart(12, "0")}`,
        state: "paused",
        memoryKiB: spec.memoryMiB * 1024,
        maxMemoryKiB: spec.memoryMiB * 1024,
        vcpus: spec.vcpus,
        cpuTimeNs: 0n,
      },
    });
    return domid;
  }
  async adopt(domid: number, vifs: VifSpec[]): Promise<void> {
    this.must(domid);
    this.adopted.push({ domid, vifs });
  }
  private must(domid: number): FakeDomain {
    const d = this.domains.get(domid);
    if (!d) throw new HypervisorError(`no domain ${domid}`, "NotFound");
    return d;
  }
  async unpause(domid: number): Promise<void> {
    const d = this.must(domid);
    d.info.state = "running";
    d.info.cpuTimeNs += 1_000_000n;
    this.console(domid, `\r\nhello: ready cmdline="${d.spec.cmdline}"\r\n`);
  }
  async pause(domid: number): Promise<void> {
    this.must(domid).info.state = "paused";
  }
  async shutdown(domid: number, reason: "poweroff" | "reboot"): Promise<void> {
    const d = this.must(domid);
    if (!this.obeyShutdown) return;
    setTimeout(() => {
      d.info.state = "shutdown";
      d.info.shutdownReason = reason;
    }, 20);
  }
  /** Test control: the guest crashes. */
  crash(domid: number): void {
    const d = this.must(domid);
    d.info.state = "crashed";
    d.info.shutdownReason = "crash";
  }
  /** Test control: the domain is left suspended, as a save or a migration's send cut off half-way leaves it. */
  leaveSuspended(domid: number): void {
    const d = this.must(domid);
    d.info.state = "shutdown";
    d.info.shutdownReason = "suspend";
  }
  /** Test control: the guest prints on its console. */
  console(domid: number, text: string): void {
    writeSync(this.must(domid).consoleFd, text);
  }
  async destroy(domid: number): Promise<void> {
    const d = this.must(domid);
    closeSync(d.consoleFd);
    rmSync(d.consolePath, { force: true });
    this.domains.delete(domid);
  }
  async setMemory(domid: number, memoryMiB: number): Promise<void> {
    const d = this.must(domid);
    if (memoryMiB * 1024 > d.info.maxMemoryKiB)
      throw new HypervisorError(`${memoryMiB} MiB is above the domain's maximum`, "InvalidArgument");
    d.info.memoryKiB = memoryMiB * 1024;
  }
  async setVcpus(domid: number, vcpus: number): Promise<void> {
    this.must(domid).info.vcpus = vcpus;
  }
  /** Test control: a save waits for this before it writes (a suspend as slow as the test wants). */
  saveGate: Promise<void> | undefined;
  /** Writes the same marker migrateOut() does (restore() reads it back), then the domain is gone. */
  async save(domid: number, fd: number): Promise<void> {
    const d = this.must(domid);
    if (this.saveGate) await this.saveGate;
    writeSync(fd, JSON.stringify({ testDouble: true, spec: d.spec }));
    await this.destroy(domid);
  }
  /** Reads what migrateOut() wrote (until EOF, off the main thread: the writer may be this process)
   *  and builds a domain from `spec`; a stream not written by this double is refused. */
  async restore(spec: DomainSpec, fd: number, opts: RestoreOptions = {}): Promise<number> {
    this.restoresStarted++;
    if (this.prepareDelayMs > 0) await new Promise((r) => setTimeout(r, this.prepareDelayMs));
    this.preparedAt = performance.now();
    opts.onPrepared?.();
    const chunks: Buffer[] = [];
    for (;;) {
      const buf = Buffer.alloc(65536);
      const { bytesRead } = await new Promise<{ bytesRead: number }>((resolve, reject) =>
        read(fd, buf, 0, buf.length, null, (err, bytesRead) => (err ? reject(err) : resolve({ bytesRead }))),
      );
      if (bytesRead === 0) break;
      chunks.push(buf.subarray(0, bytesRead));
    }
    if (!Buffer.concat(chunks).toString("utf8").startsWith('{"testDouble":true'))
      throw new HypervisorError("restore: not a stream this test double wrote", "InvalidArgument");
    const domid = await this.createPaused(spec);
    if (!opts.paused) await this.unpause(domid);
    return domid;
  }
  /** Test control: behave like Debian's Xen, which cannot put a PV guest in log-dirty mode. */
  liveMigrationUnsupported = false;
  /** With liveMigrationUnsupported: fail before writing a byte, as the lean backend does (libxl
   *  writes its stream header first). */
  liveFailsBeforeFirstByte = false;
  /** How many restores were started. */
  restoresStarted = 0;
  /** A restore's domain takes this long to prepare (its devices) before onPrepared. */
  prepareDelayMs = 0;
  /** When (performance.now()) the last restore said it was prepared, and the last migrateOut began. */
  preparedAt: number | undefined;
  migrateOutAt: number | undefined;
  /** Models the source half only: the domain is left suspended, and a marker (not a real Xen
   *  stream) is written to fd so a reader sees bytes. */
  async migrateOut(domid: number, fd: number, opts: { live: boolean }): Promise<void> {
    const d = this.must(domid);
    this.migrateOutAt = performance.now();
    if (opts.live && this.liveMigrationUnsupported) {
      // libxl writes its stream header, then fails to enable log-dirty before suspending anything.
      if (!this.liveFailsBeforeFirstByte) writeSync(fd, "XenStreamHeader");
      throw new HypervisorError("save failed: xc: error: Failed to enable logdirty: 95,22,0");
    }
    writeSync(fd, JSON.stringify({ testDouble: true, spec: d.spec }));
    d.info.state = "shutdown";
    d.info.shutdownReason = "suspend";
  }
  async resumeSuspended(domid: number): Promise<void> {
    const d = this.must(domid);
    if (d.info.state !== "shutdown" || d.info.shutdownReason !== "suspend") return;
    d.info.state = "running";
    delete d.info.shutdownReason;
  }
  async consolePath(domid: number): Promise<string> {
    return this.must(domid).consolePath;
  }
  async close(): Promise<void> {
    for (const id of [...this.domains.keys()]) await this.destroy(id);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
