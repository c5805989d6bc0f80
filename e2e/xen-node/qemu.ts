// Starting, watching and stopping the QEMU process of one emulated Xen node (see index.ts).
import { spawn, type ChildProcess } from "node:child_process";
import { appendFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { AGENT_SCRIPT, STAGE2_SCRIPT, type BootArtifacts } from "./artifacts.js";
import { AgentUnreachable, agentExec } from "./exec-client.js";
import type { PodNetwork } from "./pod-network.js";

export interface QemuNodeConfig {
  name: string;
  memoryMiB: number;
  dom0MemoryMiB: number;
  cpus: number;
  tuning: "fast" | "untuned";
  /** The node's pod subnet (pod-network.ts): dom0 puts its gateway on xenbr0 and masquerades it. */
  pods: PodNetwork;
}

const CONSOLE_LIMIT = 4 * 1024 * 1024;
const FATAL_CONSOLE = [/Panic on CPU/, /Kernel panic/, /superfluid-dom0: FATAL/, /\(XEN\) Reboot in/];

/**
 * One host thread for all vCPUs. With multi-threaded TCG every guest TLB flush that must reach all
 * vCPUs waits until each vCPU thread gets a host core: on a busy 2-core machine (several nodes, a
 * build) that made dom0 5-10x slower (boot 250 s -> 120 s, fork+exec seconds each, `xl create`
 * hitting libxl's 40 s hotplug-script timeout). SUPERFLUID_XEN_TCG_THREAD=multi restores it.
 */
const tcgThread = (): string => (process.env.SUPERFLUID_XEN_TCG_THREAD === "multi" ? "multi" : "single");
/**
 * Under emulation every page-table switch flushes QEMU's soft TLB: Xen's PV isolation (XPTI) and
 * speculation mitigations make each dom0 syscall several times slower and protect nothing in a
 * throw-away test VM. bootscrub=0: do not zero free RAM at boot.
 */
const XEN_SPEED_FLAGS = "bootscrub=0 xpti=false spec-ctrl=no pv-l1tf=false";
/**
 * tsc=reliable: QEMU's TCG offers no invariant TSC, so dom0's kernel on an AMD model with more than one
 * vCPU assumes unsynchronized TSCs ("Marking TSC unstable due to TSCs unsynchronized") and falls back
 * to the `xen` clocksource, which has no vDSO here: every clock read became a system call (20 µs idle,
 * ~100 µs with hundreds of VMs) in the kubelet, the shim and XenStore. Every emulated vCPU reads the
 * one host-derived counter QEMU keeps monotonic, so the TSC is synchronized (docs/resources.md,
 * "dom0's clock"); with it dom0 reads the clock in user space (~1 µs), as on a real host.
 */
const DOM0_SPEED_FLAGS = ["mitigations=off", "tsc=reliable"];
/**
 * AMD-V with nested paging (SVM + NPT) in the emulated CPU: Xen then reports `hap` in virt_caps and
 * can run PVH guests on hardware-assisted paging, whose log-dirty mode is what live (pre-copy)
 * migration needs (Debian's Xen has no shadow paging, so PV guests cannot be migrated live).
 * SUPERFLUID_XEN_CPU overrides the model (e.g. `qemu64` for a node without HAP).
 */
export const DEFAULT_XEN_CPU = "qemu64,+svm,+npt";
/**
 * dom0's XenStore daemon: oxenstored (OCaml), or xenstored (C) with SUPERFLUID_XENSTORED=xenstored.
 * With hundreds of domains the C one's every request got slower, and netback's vifs with it
 * (docs/resources.md, "XenStore at 600 domains"). Anything else is refused before a node starts.
 */
export function xenstoredDaemon(value = process.env.SUPERFLUID_XENSTORED): "oxenstored" | "xenstored" {
  if (value === undefined || value === "" || value === "oxenstored") return "oxenstored";
  if (value === "xenstored") return "xenstored";
  throw new Error(
    `SUPERFLUID_XENSTORED must be oxenstored or xenstored, got ${JSON.stringify(value.slice(0, 40))}`,
  );
}
const xenCpu = (): string => process.env.SUPERFLUID_XEN_CPU || DEFAULT_XEN_CPU;

export function tail(text: string, lines = 60): string {
  return text.split("\n").slice(-lines).join("\n");
}

export interface Launch {
  child: ChildProcess;
  console: { text: string };
  exited: Promise<number | null>;
}

export function qemuArgs(
  a: BootArtifacts,
  o: QemuNodeConfig,
  index: number,
  ports: { agent: number; nic: number; hub: number },
  stateDir: string,
  hostDir: string,
): string[] {
  const fast = o.tuning === "fast";
  const dom0Cmdline = [
    a.kernel,
    "console=hvc0",
    "earlyprintk=xen",
    "panic=-1",
    ...(fast ? DOM0_SPEED_FLAGS : []),
    // Kernel messages over the emulated serial line cost boot time; SUPERFLUID_XEN_VERBOSE=1 keeps them.
    ...(process.env.SUPERFLUID_XEN_VERBOSE === "1" ? [] : ["quiet"]),
    `sf.stage2=${STAGE2_SCRIPT}`,
    ...(!fast
      ? ["sf.rootcache=none"]
      : process.env.SUPERFLUID_XEN_ROOT_CACHE
        ? [`sf.rootcache=${process.env.SUPERFLUID_XEN_ROOT_CACHE}`]
        : []),
    `sf.name=${o.name}`,
    `sf.index=${index}`,
    `sf.pod_cidr=${o.pods.cidr}`,
    `sf.pod_gw=${o.pods.gateway}/${o.pods.prefixLength}`,
    `sf.agent_port=7000`,
    `sf.node=${process.execPath}`,
    `sf.agent=${AGENT_SCRIPT}`,
    `sf.xenstored=${xenstoredDaemon()}`,
  ].join(" ");
  if (dom0Cmdline.includes(","))
    throw new Error(`a dom0 boot path contains a comma, which QEMU's -initrd cannot pass: ${dom0Cmdline}`);
  return [
    "--pdeathsig",
    "KILL",
    "--",
    "qemu-system-x86_64",
    "-accel",
    `tcg,thread=${fast ? tcgThread() : "multi"}`,
    "-machine",
    "pc",
    "-cpu",
    xenCpu(),
    "-m",
    String(o.memoryMiB),
    "-smp",
    String(o.cpus),
    "-nodefaults",
    "-vga",
    "none",
    "-display",
    "none",
    "-no-reboot",
    "-chardev",
    "stdio,id=serial0,signal=off",
    "-serial",
    "chardev:serial0",
    "-qmp",
    `unix:${join(stateDir, "qmp.sock")},server=on,wait=off`,
    "-kernel",
    a.xen,
    "-append",
    `console=com1 com1=115200,8n1 dom0_mem=${o.dom0MemoryMiB}M,max:${o.dom0MemoryMiB}M dom0_max_vcpus=${o.cpus}${fast ? " " + XEN_SPEED_FLAGS : ""}`,
    "-initrd",
    `${dom0Cmdline},${a.initrd}`,
    ...(fast
      ? ["-object", "rng-random,id=rng0,filename=/dev/urandom", "-device", "virtio-rng-pci,rng=rng0"]
      : []),
    "-fsdev",
    "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap",
    "-device",
    "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot",
    "-fsdev",
    `local,id=hostdir,path=${hostDir},security_model=none,multidevs=remap`,
    "-device",
    "virtio-9p-pci,fsdev=hostdir,mount_tag=hostdir",
    "-netdev",
    `user,id=net0,net=10.0.2.0/24,hostfwd=tcp:127.0.0.1:${ports.agent}-10.0.2.15:7000`,
    "-device",
    "virtio-net-pci,netdev=net0,mac=52:54:00:00:00:" + index.toString(16).padStart(2, "0"),
    "-netdev",
    `socket,id=net1,udp=127.0.0.1:${ports.hub},localaddr=127.0.0.1:${ports.nic}`,
    "-device",
    "virtio-net-pci,netdev=net1,mac=52:54:00:99:00:" + index.toString(16).padStart(2, "0"),
  ];
}

export function launch(args: string[], name: string): Launch {
  const child = spawn("setpriv", args, { stdio: ["ignore", "pipe", "pipe"] });
  const console = { text: "" };
  // For debugging slow or failed boots live: SUPERFLUID_XEN_CONSOLE_DIR=/some/dir tees each console.
  const teeDir = process.env.SUPERFLUID_XEN_CONSOLE_DIR;
  const tee = teeDir ? join(teeDir, `${name}-${child.pid ?? 0}.log`) : undefined;
  const append = (d: Buffer): void => {
    if (tee) appendFileSync(tee, d);
    console.text += d.toString("utf8");
    if (console.text.length > CONSOLE_LIMIT) console.text = console.text.slice(-CONSOLE_LIMIT / 2);
  };
  child.stdout?.on("data", append);
  child.stderr?.on("data", (d: Buffer) => append(Buffer.from(`[qemu ${name}] ${d.toString("utf8")}`)));
  const exited = new Promise<number | null>((resolve) => {
    child.on("exit", (code) => resolve(code));
    child.on("error", () => resolve(-1));
  });
  return { child, console, exited };
}

export async function waitForReady(agentPort: number, l: Launch, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exitCode: number | null | undefined;
  void l.exited.then((c) => (exitCode = c ?? -1));
  while (Date.now() < deadline) {
    if (exitCode !== undefined) throw new Error(`QEMU exited (code ${exitCode}) during boot`);
    const fatal = FATAL_CONSOLE.find((re) => re.test(l.console.text));
    if (fatal) throw new Error(`boot failed (console matched ${fatal})`);
    try {
      const r = await agentExec(agentPort, { cmd: "", timeoutMs: 10_000, status: true }, 5_000);
      if (r.code === 0) return;
      if (r.code === 3) throw new Error(`dom0 setup failed: ${r.stdout.trim()}`);
    } catch (err) {
      if (!(err instanceof AgentUnreachable)) throw err;
    }
    await sleep(1000);
  }
  throw new Error(`boot timed out after ${timeoutMs} ms`);
}

export async function stopLaunch(l: Launch): Promise<void> {
  if (l.child.exitCode === null && l.child.signalCode === null) {
    l.child.kill("SIGTERM");
    const done = await Promise.race([l.exited.then(() => true), sleep(5000).then(() => false)]);
    if (!done) l.child.kill("SIGKILL");
  }
  await l.exited;
}
