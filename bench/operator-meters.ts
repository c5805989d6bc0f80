// Process meters for bench:operator: a process's peak RSS and CPU seconds from /proc, and the
// control plane's (kube-apiserver's and etcd's) CPU seconds over one side's run.
import { readdirSync, readFileSync } from "node:fs";

/** RSS and CPU time of a process, from /proc; the peak RSS is sampled every 200 ms. */
export class ProcessMeter {
  private peakKiB = 0;
  private readonly cpu0: number;
  private readonly timer: NodeJS.Timeout;
  constructor(private readonly pid: number) {
    this.cpu0 = this.cpuSeconds();
    this.sample();
    this.timer = setInterval(() => this.sample(), 200);
  }
  private sample(): void {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${this.pid}/status`, "utf8"));
      if (m) this.peakKiB = Math.max(this.peakKiB, Number(m[1]));
    } catch {
      /* the process ended */
    }
  }
  private cpuSeconds(): number {
    // Fields after the command name: utime and stime are the 12th and 13th, in clock ticks (100/s on Linux).
    const stat = readFileSync(`/proc/${this.pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / 100;
  }
  /** CPU seconds since the meter started. */
  cpuSoFar(): number {
    return Number((this.cpuSeconds() - this.cpu0).toFixed(2));
  }
  stop(): { rssMiB: number; cpuSeconds: number } {
    this.sample();
    clearInterval(this.timer);
    return {
      rssMiB: Number((this.peakKiB / 1024).toFixed(1)),
      cpuSeconds: Number((this.cpuSeconds() - this.cpu0).toFixed(2)),
    };
  }
}

/** Our child process running this command (the control plane's kube-apiserver, etcd), from /proc. */
export function childPid(command: string): number {
  for (const entry of readdirSync("/proc")) {
    if (!/^[0-9]+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (comm === command.slice(0, 15) && ppid === process.pid) return Number(entry);
    } catch {
      /* gone meanwhile */
    }
  }
  throw new Error(`no child process ${command}`);
}

/**
 * The apiserver's and etcd's CPU seconds over one side's run: what each controller costs the control
 * plane; and the apiserver's until the N pods exist (podsReached), the part that decides the ratio.
 * CPU seconds are what a loaded machine changes least: on a quiet one they turn into time.
 */
export function controlPlaneMeter() {
  const api = new ProcessMeter(childPid("kube-apiserver"));
  const etcd = new ProcessMeter(childPid("etcd"));
  let toPods: number | undefined;
  return {
    podsReached: () => void (toPods = api.cpuSoFar()),
    stop: () => ({
      apiserverCpuSeconds: api.stop().cpuSeconds,
      apiserverCpuSecondsToPods: toPods ?? null,
      etcdCpuSeconds: etcd.stop().cpuSeconds,
    }),
  };
}
