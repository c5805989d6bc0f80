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
