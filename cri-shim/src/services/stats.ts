// CPU and memory of each container's domain, from the hypervisor's domain info. usage_nano_cores
// needs two samples, so the previous one is kept per container.
//
// The kubelet asks for every container's and every sandbox's stats at once (ListContainerStats,
// ListPodSandboxStats): those take one domain list for all of them, not one query per domain (a
// thousand concurrent queries also overflowed koffi's queue of 256 async calls), and group the
// containers by sandbox once instead of scanning them all per sandbox.
import { nowNs, type ContainerStats, type PodSandboxStats } from "../proto.js";
import type { DomainInfo } from "../hypervisor/types.js";
import type { RuntimeContext } from "./context.js";
import type { ContainerEntry } from "./containers.js";
import type { SandboxEntry } from "./sandboxes.js";

interface Sample {
  atNs: bigint;
  cpuNs: bigint;
}

export class StatsService {
  private readonly previous = new Map<string, Sample>();

  constructor(private readonly rt: RuntimeContext) {}

  async container(c: ContainerEntry): Promise<ContainerStats> {
    return (await this.containers([c]))[0]!;
  }

  async sandbox(sb: SandboxEntry): Promise<PodSandboxStats> {
    return (await this.sandboxes([sb]))[0]!;
  }

  /** Stats of these containers, from one domain query (one list when there are several). */
  async containers(cs: readonly ContainerEntry[]): Promise<ContainerStats[]> {
    const domids = cs.flatMap((c) => (c.status.domid === undefined ? [] : [c.status.domid]));
    let infos: Map<number, DomainInfo>;
    if (domids.length <= 1) {
      const one = domids[0] === undefined ? undefined : await this.rt.hypervisor.info(domids[0]);
      infos = new Map(one ? [[one.domid, one]] : []);
    } else {
      infos = new Map((await this.rt.hypervisor.list()).map((d) => [d.domid, d]));
    }
    return cs.map((c) =>
      this.fromInfo(c, c.status.domid === undefined ? undefined : infos.get(c.status.domid)),
    );
  }

  private fromInfo(c: ContainerEntry, info: DomainInfo | undefined): ContainerStats {
    const ts = nowNs();
    const cpuNs = info?.cpuTimeNs ?? 0n;
    const memBytes = BigInt(info?.memoryKiB ?? 0) * 1024n;
    const maxBytes = BigInt(info?.maxMemoryKiB ?? 0) * 1024n;
    const now: Sample = { atNs: BigInt(ts), cpuNs };
    const prev = this.previous.get(c.meta.id);
    this.previous.set(c.meta.id, now);
    const nanoCores =
      prev && now.atNs > prev.atNs && cpuNs >= prev.cpuNs
        ? ((cpuNs - prev.cpuNs) * 1_000_000_000n) / (now.atNs - prev.atNs)
        : undefined;
    return {
      attributes: {
        id: c.meta.id,
        metadata: c.meta.metadata,
        labels: c.meta.labels,
        annotations: c.meta.annotations,
      },
      cpu: {
        timestamp: ts,
        usage_core_nano_seconds: { value: cpuNs.toString() },
        ...(nanoCores !== undefined ? { usage_nano_cores: { value: nanoCores.toString() } } : {}),
      },
      memory: {
        timestamp: ts,
        working_set_bytes: { value: memBytes.toString() },
        usage_bytes: { value: memBytes.toString() },
        available_bytes: { value: (maxBytes > memBytes ? maxBytes - memBytes : 0n).toString() },
      },
      writable_layer: null,
    };
  }

  /** Stats of these sandboxes: their containers grouped in one pass, their domains in one query. */
  async sandboxes(sbs: readonly SandboxEntry[]): Promise<PodSandboxStats[]> {
    const bySandbox = new Map<string, ContainerEntry[]>(sbs.map((sb) => [sb.meta.id, []]));
    for (const c of this.rt.containers.list())
      if (c.status.state !== "creating") bySandbox.get(c.meta.sandboxId)?.push(c);
    const all = [...bySandbox.values()].flat();
    const stats = await this.containers(all);
    const byId = new Map(all.map((c, i) => [c.meta.id, stats[i]!]));
    return sbs.map((sb) =>
      this.sandboxFrom(
        sb,
        bySandbox.get(sb.meta.id)!.map((c) => byId.get(c.meta.id)!),
      ),
    );
  }

  private sandboxFrom(sb: SandboxEntry, stats: ContainerStats[]): PodSandboxStats {
    const ts = nowNs();
    const sum = (pick: (s: ContainerStats) => string | undefined): string =>
      stats.reduce((a, s) => a + BigInt(pick(s) ?? "0"), 0n).toString();
    return {
      attributes: {
        id: sb.meta.id,
        metadata: sb.meta.metadata,
        labels: sb.meta.labels,
        annotations: sb.meta.annotations,
      },
      linux: {
        cpu: {
          timestamp: ts,
          usage_core_nano_seconds: { value: sum((s) => s.cpu.usage_core_nano_seconds.value) },
          usage_nano_cores: { value: sum((s) => s.cpu.usage_nano_cores?.value) },
        },
        memory: {
          timestamp: ts,
          working_set_bytes: { value: sum((s) => s.memory.working_set_bytes.value) },
          usage_bytes: { value: sum((s) => s.memory.usage_bytes.value) },
          available_bytes: { value: sum((s) => s.memory.available_bytes.value) },
        },
        containers: stats,
      },
    };
  }

  forget(containerId: string): void {
    this.previous.delete(containerId);
  }
}
