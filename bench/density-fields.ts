// What the density run reads from dom0's /proc/meminfo besides MemTotal - MemAvailable: the lines
// that grow with per-VM kernel state (netback's queues and kthreads, tmpfs files, foreign mappings).
// Shared by the host side (bench/density.ts) and the dom0 sampler (bench/density-dom0.ts).
export const KERNEL_FIELDS = [
  "Shmem",
  "SReclaimable",
  "SUnreclaim",
  "KernelStack",
  "PageTables",
  "VmallocUsed",
  "Percpu",
] as const;

export type KernelField = (typeof KERNEL_FIELDS)[number];

/** KiB each slab cache holds (its slabs × pages per slab × 4 KiB), from /proc/slabinfo's text. */
export function slabKiB(slabinfo: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of slabinfo.split("\n")) {
    if (!line || line.startsWith("slabinfo") || line.startsWith("#")) continue;
    const [head, , slabdata] = line.split(" : ");
    const h = head?.trim().split(/\s+/) ?? [];
    const d = slabdata?.trim().split(/\s+/) ?? [];
    const name = h[0];
    const pagesPerSlab = Number(h[5]);
    const numSlabs = Number(d[2]);
    if (!name || !Number.isFinite(pagesPerSlab) || !Number.isFinite(numSlabs) || d[0] !== "slabdata")
      continue;
    out[name] = numSlabs * pagesPerSlab * 4;
  }
  return out;
}

/** The caches that grew most between two snapshots, in KiB per VM, largest first. */
export function slabGrowthPerVm(
  before: Record<string, number>,
  after: Record<string, number>,
  vms: number,
  top = 10,
): Record<string, number> {
  if (vms <= 0) return {};
  return Object.fromEntries(
    Object.entries(after)
      .map(([name, kib]) => [name, (kib - (before[name] ?? 0)) / vms] as const)
      .filter(([, perVm]) => perVm > 0)
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, perVm]) => [name, Math.round(perVm * 10) / 10]),
  );
}

/** Why the CRI-only run stopped, in the order that decides it: a failure, its maximum, its deadline. */
export function criStopReason(r: {
  failed: string | undefined;
  started: number;
  max: number;
  deadlineMin: number;
  stoppedBy?: "deadline" | "SIGTERM";
}): { stoppedBecause: string; reachedMax: boolean } {
  if (r.failed !== undefined) return { stoppedBecause: r.failed, reachedMax: false };
  if (r.started >= r.max) return { stoppedBecause: `reached the run's maximum (${r.max})`, reachedMax: true };
  if (r.stoppedBy === "SIGTERM")
    return { stoppedBecause: `stopped by SIGTERM at ${r.started} VMs, none failed`, reachedMax: false };
  if (r.stoppedBy === "deadline")
    return {
      stoppedBecause: `DENSITY_CRI_DEADLINE_MIN=${r.deadlineMin}: no VM started after ${r.deadlineMin} min of creating, at ${r.started} VMs, none failed`,
      reachedMax: false,
    };
  return { stoppedBecause: `stopped at ${r.started} VMs for no recorded reason`, reachedMax: false };
}
