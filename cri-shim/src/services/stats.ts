// CPU and memory of each container's domain, from the hypervisor's domain info. usage_nano_cores
// needs two samples, so the previous one is kept per container.
import { nowNs, type ContainerStats, type PodSandboxStats } from "../proto.js";
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
    const ts = nowNs();
    const info = c.status.domid !== undefined ? await this.rt.hypervisor.info(c.status.domid) : undefined;
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

  async sandbox(sb: SandboxEntry): Promise<PodSandboxStats> {
    const ts = nowNs();
    const members = this.rt.containers
      .list()
      .filter((c) => c.meta.sandboxId === sb.meta.id && c.status.state !== "creating");
    const stats = await Promise.all(members.map((c) => this.container(c)));
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
