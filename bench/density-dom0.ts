// Runs INSIDE dom0 of an emulated Xen node (bench/density.ts starts it), in one of two modes:
//
//   sample <out-file> <shim-pid-file> <kubelet-pid-file>
//     Every 2 s appends one JSON line (DensitySample) to <out-file>: Xen's total and free memory
//     and the resident memory of the shim, xenstored, xenconsoled and the kubelet. One process for the
//     whole run: under TCG every process dom0 starts costs seconds, so nothing is spawned per sample.
//
//   cri <socket> <image> <max> <memory-mib> <log-dir>
//     The CRI-only run: RunPodSandbox + CreateContainer + StartContainer straight to the shim over
//     its socket, one VM after the other, until <max> or the first failure. Prints one JSON line
//     (CriOnlyResult) on stdout: how many VMs started, each one's create time, and why it stopped.
import { appendFileSync, readdirSync, readFileSync } from "node:fs";
import { ANNOTATIONS } from "../api/annotations.js";
import { XenLibxl } from "../cri-shim/src/hypervisor/xen-libxl.js";
import { connectCri } from "../cri-shim/src/testing/cri-client.js";
import { criStopReason, KERNEL_FIELDS, type KernelField } from "./density-fields.js";

export interface DensitySample {
  seq: number;
  /** dom0's monotonic clock (ms). */
  t: number;
  xenTotalKiB: number;
  xenFreeKiB: number;
  /** Resident memory (VmRSS) in KiB; 0 when the process is not running. */
  shimKiB: number;
  xenstoredKiB: number;
  xenconsoledKiB: number;
  kubeletKiB: number;
  /** dom0 as a whole: MemTotal - MemAvailable (kernel, page cache that cannot go, every process). */
  dom0UsedKiB: number;
  /** Where dom0's kernel holds memory (/proc/meminfo, KiB): tmpfs files, slab, stacks, page tables, vmalloc. */
  dom0Kernel: Record<KernelField, number>;
  /** dom0's clocksource: `tsc` reads the clock in user space; `xen` makes each read a system call. */
  clocksource: string;
}

export interface CriOnlyResult {
  started: number;
  /** Index → RunPodSandbox..StartContainer ms. */
  createMs: number[];
  /** Why it stopped: the first failure's message, or that it reached the maximum. */
  stoppedBecause: string;
  reachedMax: boolean;
  /** Stopping and removing the sandboxes found at the start (the kubelet's, left when it stopped). */
  cleanupMs: number;
  cleanedUp: number;
  /** After the cleanup, until dom0's kernel had unregistered the removed domains' vifs (netbackDrained). */
  netbackDrainMs: number;
  /** vifs still registered when that wait gave up (0: drained). */
  vifsLeft: number;
}

function meminfo(): (k: string) => number {
  const m = readFileSync("/proc/meminfo", "utf8");
  return (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(m)?.[1] ?? NaN);
}

function rssKiB(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

function clocksource(): string {
  try {
    return readFileSync("/sys/devices/system/clocksource/clocksource0/current_clocksource", "utf8").trim();
  } catch {
    return "unknown";
  }
}

function pidFromFile(path: string): number | undefined {
  try {
    const n = Number(readFileSync(path, "utf8").trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/** The first process whose comm is one of `names` (xenstored may be the C or the OCaml one). */
function pidByComm(names: string[]): number | undefined {
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (names.includes(readFileSync(`/proc/${entry}/comm`, "utf8").trim())) return Number(entry);
    } catch {
      /* gone meanwhile */
    }
  }
  return undefined;
}

/**
 * Every 2 s: at one a second the sampler (libxl, /proc reads, a Node process under TCG) took 10 %
 * of dom0's CPU in a 150-VM run, which the VMs' creates then lacked.
 */
const SAMPLE_EVERY_MS = 2000;

async function sample(out: string, shimPidFile: string, kubeletPidFile: string): Promise<void> {
  const xen = XenLibxl.open();
  const xenstored = pidByComm(["xenstored", "oxenstored"]);
  const xenconsoled = pidByComm(["xenconsoled"]);
  let seq = 0;
  let stopping = false;
  process.on("SIGTERM", () => (stopping = true));
  while (!stopping) {
    const host = await xen.host();
    const mem = meminfo();
    const s: DensitySample = {
      seq: seq++,
      t: Math.round(performance.timeOrigin + performance.now()),
      xenTotalKiB: host.totalMemoryKiB,
      xenFreeKiB: host.freeMemoryKiB,
      shimKiB: rssKiB(pidFromFile(shimPidFile)),
      xenstoredKiB: rssKiB(xenstored),
      xenconsoledKiB: rssKiB(xenconsoled),
      kubeletKiB: rssKiB(pidFromFile(kubeletPidFile)),
      dom0UsedKiB: mem("MemTotal") - mem("MemAvailable"),
      dom0Kernel: Object.fromEntries(KERNEL_FIELDS.map((k) => [k, mem(k)])) as DensitySample["dom0Kernel"],
      clocksource: clocksource(),
    };
    appendFileSync(out, JSON.stringify(s) + "\n");
    await new Promise((r) => setTimeout(r, SAMPLE_EVERY_MS));
  }
  await xen.close();
}

/** How long the CRI-only run waits for netback to unregister the cleaned-up domains' vifs. */
const NETBACK_DRAIN_MS = 15 * 60_000;

const vifCount = (): number => readdirSync("/sys/class/net").filter((n) => /^vif\d+\.\d+$/.test(n)).length;

/**
 * Resolves once dom0 holds no vif, or after `timeoutMs`, with the time waited and the vifs left.
 * netback unregisters a removed domain's vifs after the shim is done with it, one after the other
 * on its one xenwatch thread, and probes a new domain's vif only behind them: in the sixth run the
 * CRI-only part's first VM, started right after 1,000 sandboxes were removed, got no vif within the
 * shim's 20 s. The CRI-only run measures creates, not that backlog.
 */
async function netbackDrained(timeoutMs: number) {
  const t0 = performance.now();
  let left = vifCount();
  while (left > 0 && performance.now() - t0 < timeoutMs) {
    await new Promise((r) => setTimeout(r, 1000));
    left = vifCount();
  }
  return { netbackDrainMs: Math.round(performance.now() - t0), vifsLeft: left };
}

/** VMs the CRI-only run starts at once. */
const CRI_CONCURRENCY = 4;
/** Sandboxes the CRI-only run's cleanup stops and removes at once. */
const CLEANUP_CONCURRENCY = 8;

async function criOnly(
  socket: string,
  image: string,
  max: number,
  memoryMiB: number,
  logDir: string,
  deadlineMin: number,
) {
  const cri = connectCri(socket);
  // A deadline (minutes of creating, 0: none) or SIGTERM stops new starts; the VMs in flight finish
  // and the result is still written: a run that must end leaves how far it got, not nothing.
  let stoppedBy: "deadline" | "SIGTERM" | undefined;
  process.once("SIGTERM", () => (stoppedBy ??= "SIGTERM"));
  const result: CriOnlyResult = {
    started: 0,
    createMs: [],
    stoppedBecause: "",
    reachedMax: false,
    cleanupMs: 0,
    cleanedUp: 0,
    netbackDrainMs: 0,
    vifsLeft: 0,
  };
  try {
    const c0 = performance.now();
    const { items = [] } = await cri.runtime<{ items?: Array<{ id: string }> }>("ListPodSandbox", {});
    // Several at once: one after the other took 2.7 s each after a 150-VM run (45 min for 1,000).
    let next = 0;
    const worker = async () => {
      while (next < items.length) {
        const sb = items[next++]!;
        await cri.runtime("StopPodSandbox", { pod_sandbox_id: sb.id });
        await cri.runtime("RemovePodSandbox", { pod_sandbox_id: sb.id });
      }
    };
    await Promise.all(Array.from({ length: CLEANUP_CONCURRENCY }, worker));
    result.cleanupMs = Math.round(performance.now() - c0);
    result.cleanedUp = items.length;
    Object.assign(result, await netbackDrained(NETBACK_DRAIN_MS));
    await cri.image("PullImage", { image: { image } });
    // A few VMs at once, as a kubelet starts them (one after the other, 2,000 took most of an hour
    // on an emulated node). The first failure stops every worker; the VMs then in flight finish.
    let claimed = 0;
    let failed: string | undefined;
    const deadline = deadlineMin > 0 ? performance.now() + deadlineMin * 60_000 : Infinity;
    const startOne = async (i: number) => {
      const name = `cri-density-${i}`;
      const config = {
        metadata: { name, namespace: "density", uid: `uid-${name}`, attempt: 0 },
        hostname: name,
        log_directory: `${logDir}/${name}`,
        annotations: {
          [ANNOTATIONS.memoryMiB]: String(memoryMiB),
          [ANNOTATIONS.args]: JSON.stringify(["interval=3600"]),
        },
      };
      const t0 = performance.now();
      const { pod_sandbox_id: sb } = await cri.runtime<{ pod_sandbox_id: string }>("RunPodSandbox", {
        config,
      });
      const { container_id: ctr } = await cri.runtime<{ container_id: string }>("CreateContainer", {
        pod_sandbox_id: sb,
        config: {
          metadata: { name: "main", attempt: 0 },
          image: { image },
          log_path: "main/0.log",
          linux: { resources: { memory_limit_in_bytes: String(memoryMiB * 1024 * 1024) } },
        },
        sandbox_config: config,
      });
      await cri.runtime("StartContainer", { container_id: ctr });
      return Math.round(performance.now() - t0);
    };
    const starter = async () => {
      while (failed === undefined && claimed < max && stoppedBy === undefined) {
        if (performance.now() >= deadline) {
          stoppedBy = "deadline";
          break;
        }
        const i = claimed++;
        try {
          result.createMs.push(await startOne(i));
          result.started++;
          if (result.started % 100 === 0) process.stderr.write(`cri-only: ${result.started} started\n`);
        } catch (err) {
          failed ??= `VM ${i}: ${(err as { details?: string }).details ?? (err as Error).message}`;
        }
      }
    };
    await Promise.all(Array.from({ length: CRI_CONCURRENCY }, starter));
    Object.assign(result, criStopReason({ failed, started: result.started, max, deadlineMin, stoppedBy }));
    return result;
  } finally {
    cri.close();
  }
}

const [mode, ...args] = process.argv.slice(2);
if (mode === "sample" && args.length === 3) {
  await sample(args[0]!, args[1]!, args[2]!);
} else if (mode === "cri" && (args.length === 5 || args.length === 6)) {
  const named: [string, string][] = [
    ["max", args[2]!],
    ["memory-mib", args[3]!],
    ["deadline-min", args[5] ?? "0"],
  ];
  const bad = named.find(([, v]) => !/^\d+$/.test(v));
  if (bad) {
    process.stderr.write(
      `density-dom0 cri: ${bad[0]} must be a non-negative integer, not ${JSON.stringify(bad[1])}\n`,
    );
    process.exitCode = 2;
  } else {
    const [max, memoryMiB, deadlineMin] = named.map(([, v]) => Number(v)) as [number, number, number];
    const r = await criOnly(args[0]!, args[1]!, max, memoryMiB, args[4]!, deadlineMin);
    process.stdout.write(JSON.stringify(r) + "\n");
  }
} else {
  process.stderr.write(
    "usage: density-dom0 sample <out> <shim-pid-file> <kubelet-pid-file>\n" +
      "       density-dom0 cri <socket> <image> <max> <memory-mib> <log-dir> [deadline-min]\n",
  );
  process.exitCode = 2;
}
