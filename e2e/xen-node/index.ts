// An emulated Xen host for tests: Xen 4.17 + a Debian dom0 under QEMU (TCG), started by one call.
//
// Quick start:
//   import { startXenNode } from "../xen-node/index.js";
//   const node = await startXenNode({ name: "n1" });          // ~15-40 s on 2 cores
//   try {
//     const { code, stdout } = await node.exec("xl list");    // runs in dom0 as root
//     await node.exec(`node ${REPO_ROOT}/dist/some/tool.js`);  // the host's / is dom0's / (read-only + tmpfs overlay)
//     writeFileSync(join(node.hostDir, "in.txt"), "x");       // visible in dom0 as /mnt/host/in.txt (read-write)
//     const port = await node.forward(10250);                  // 127.0.0.1:port on the host -> dom0:10250
//     // from dom0, the host's loopback is 10.0.2.2 (e.g. the apiserver at https://10.0.2.2:<port>)
//   } finally {
//     await node.stop();                                       // no QEMU, no temp dir left
//   }
//
// Networking (details in README.md): dom0 eth0 = QEMU user net (10.0.2.15, host loopback at 10.0.2.2);
// dom0 eth1 = a segment joining the nodes of this process (10.99.0.<index>); xenbr0 = the bridge for
// guest vifs, pod subnet 10.244.<index>.0/24 with dom0 at 10.244.<index>.1.
import { spawn, type ChildProcess } from "node:child_process";
import { appendFileSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { logger } from "../../lib/log.js";
import { AGENT_SCRIPT, STAGE2_SCRIPT, bootArtifacts, type BootArtifacts } from "./artifacts.js";
import { track, untrack, type Leftovers } from "./cleanup.js";
import { AgentUnreachable, agentExec, freeTcpPort } from "./exec-client.js";
import { qmpHumanCommand } from "./qmp.js";
import { Segment, freeUdpPort } from "./segment.js";

export { checkPrerequisites } from "./artifacts.js";

const log = logger("xen-node");

export interface XenNodeOptions {
  /** Used for the dom0 hostname and in logs/temp dir names. */
  name: string;
  /** QEMU memory (MiB): dom0 plus room for guests. Default 2048. */
  memoryMiB?: number;
  /** dom0_mem (MiB). Default 1024. */
  dom0MemoryMiB?: number;
  /** QEMU vCPUs (= dom0 vCPUs). Default 1: under emulation a second vCPU costs more than it gives. */
  cpus?: number;
  /**
   * "fast" (default) or "untuned": the plain recipe (multi-threaded TCG, Xen/kernel mitigations on,
   * uncached 9p root, no RNG device), kept only as the baseline of bench/xen-node.ts.
   */
  tuning?: "fast" | "untuned";
  /** Default 300 s (2 shared cores can be slow); env SUPERFLUID_XEN_BOOT_TIMEOUT_MS overrides. */
  bootTimeoutMs?: number;
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  /** Default 120 s. On timeout the command's process group is killed and exec rejects. */
  timeoutMs?: number;
  stdin?: string;
}

export interface XenNode {
  readonly name: string;
  /** 1..254, unique among the nodes of this process; picks the pod subnet and the segment address. */
  readonly index: number;
  /** Host directory shared read-write with dom0 at `dom0HostDir`. Removed by stop(). */
  readonly hostDir: string;
  readonly dom0HostDir: "/mnt/host";
  /** The Linux bridge in dom0 that guest vifs join (`vif=['bridge=xenbr0']`). */
  readonly bridge: "xenbr0";
  /** This node's pod subnet, e.g. 10.244.1.0/24. */
  readonly podCidr: string;
  /** dom0's address on the pod bridge (the pods' gateway), e.g. 10.244.1.1. */
  readonly dom0Ip: string;
  /** dom0's address on the segment shared with the other nodes of this process, e.g. 10.99.0.1. */
  readonly segmentIp: string;
  /** The host's loopback as seen from dom0 (QEMU user net). */
  readonly hostIpFromDom0: "10.0.2.2";
  /** Milliseconds from QEMU start to a ready toolstack + exec agent. */
  readonly bootMs: number;
  /** Host port (127.0.0.1) of the dom0 exec agent; see agent.ts for the protocol. */
  readonly agentPort: number;
  /** QEMU's pid (for tests that check it is gone after stop()). */
  readonly qemuPid: number;
  /** The per-node temp dir (QMP socket, default hostDir); removed by stop(). */
  readonly stateDir: string;
  exec(cmd: string, opts?: ExecOptions): Promise<ExecResult>;
  /** 127.0.0.1:<returned port> on the host forwards to `toAddress` (default dom0 itself) : port. */
  forward(port: number, opts?: { toAddress?: string }): Promise<number>;
  /** Xen + dom0 serial output so far (the last few MB). */
  consoleLog(): string;
  stop(): Promise<void>;
}

const segment = new Segment();
/** Booted nodes of this process: each routes the others' pod subnets over the segment. */
const liveNodes = new Set<XenNode>();
const usedIndexes = new Set<number>();
const CONSOLE_LIMIT = 4 * 1024 * 1024;
const FATAL_CONSOLE = [/Panic on CPU/, /Kernel panic/, /superfluid-dom0: FATAL/, /\(XEN\) Reboot in/];

/**
 * Under emulation every page-table switch flushes QEMU's soft TLB: Xen's PV isolation (XPTI) and
 * speculation mitigations make each dom0 syscall several times slower and protect nothing in a
 * throw-away test VM. bootscrub=0: do not zero free RAM at boot.
 */
/**
 * One host thread for all vCPUs. With multi-threaded TCG every guest TLB flush that must reach all
 * vCPUs waits until each vCPU thread gets a host core: on a busy 2-core machine (several nodes, a
 * build) that made dom0 5-10x slower (boot 250 s -> 120 s, fork+exec seconds each, `xl create`
 * hitting libxl's 40 s hotplug-script timeout). SUPERFLUID_XEN_TCG_THREAD=multi restores it.
 */
const tcgThread = (): string => (process.env.SUPERFLUID_XEN_TCG_THREAD === "multi" ? "multi" : "single");
const XEN_SPEED_FLAGS = "bootscrub=0 xpti=false spec-ctrl=no pv-l1tf=false";
const DOM0_SPEED_FLAGS = ["mitigations=off"];

function allocateIndex(): number {
  for (let i = 1; i < 255; i++) {
    if (!usedIndexes.has(i)) {
      usedIndexes.add(i);
      return i;
    }
  }
  throw new Error("emulated Xen node: more than 254 nodes in one process");
}

function tail(text: string, lines = 60): string {
  return text.split("\n").slice(-lines).join("\n");
}

interface Launch {
  child: ChildProcess;
  console: { text: string };
  exited: Promise<number | null>;
}

function qemuArgs(a: BootArtifacts, o: Required<Omit<XenNodeOptions, "bootTimeoutMs">>, index: number, ports: { agent: number; nic: number; hub: number }, stateDir: string, hostDir: string): string[] {
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
    ...(!fast ? ["sf.rootcache=none"] : process.env.SUPERFLUID_XEN_ROOT_CACHE ? [`sf.rootcache=${process.env.SUPERFLUID_XEN_ROOT_CACHE}`] : []),
    `sf.name=${o.name}`,
    `sf.index=${index}`,
    `sf.agent_port=7000`,
    `sf.node=${process.execPath}`,
    `sf.agent=${AGENT_SCRIPT}`,
  ].join(" ");
  if (dom0Cmdline.includes(",")) throw new Error(`a dom0 boot path contains a comma, which QEMU's -initrd cannot pass: ${dom0Cmdline}`);
  return [
    "--pdeathsig", "KILL", "--", "qemu-system-x86_64",
    "-accel", `tcg,thread=${fast ? tcgThread() : "multi"}`, "-machine", "pc", "-m", String(o.memoryMiB), "-smp", String(o.cpus),
    "-nodefaults", "-vga", "none", "-display", "none", "-no-reboot",
    "-chardev", "stdio,id=serial0,signal=off", "-serial", "chardev:serial0",
    "-qmp", `unix:${join(stateDir, "qmp.sock")},server=on,wait=off`,
    "-kernel", a.xen,
    "-append", `console=com1 com1=115200,8n1 dom0_mem=${o.dom0MemoryMiB}M,max:${o.dom0MemoryMiB}M dom0_max_vcpus=${o.cpus}${fast ? " " + XEN_SPEED_FLAGS : ""}`,
    "-initrd", `${dom0Cmdline},${a.initrd}`,
    ...(fast ? ["-object", "rng-random,id=rng0,filename=/dev/urandom", "-device", "virtio-rng-pci,rng=rng0"] : []),
    "-fsdev", "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap",
    "-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot",
    "-fsdev", `local,id=hostdir,path=${hostDir},security_model=none,multidevs=remap`,
    "-device", "virtio-9p-pci,fsdev=hostdir,mount_tag=hostdir",
    "-netdev", `user,id=net0,net=10.0.2.0/24,hostfwd=tcp:127.0.0.1:${ports.agent}-10.0.2.15:7000`,
    "-device", "virtio-net-pci,netdev=net0,mac=52:54:00:00:00:" + index.toString(16).padStart(2, "0"),
    "-netdev", `socket,id=net1,udp=127.0.0.1:${ports.hub},localaddr=127.0.0.1:${ports.nic}`,
    "-device", "virtio-net-pci,netdev=net1,mac=52:54:00:99:00:" + index.toString(16).padStart(2, "0"),
  ];
}

function launch(args: string[], name: string): Launch {
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

async function waitForReady(agentPort: number, l: Launch, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exitCode: number | null | undefined;
  void l.exited.then((c) => (exitCode = c ?? -1));
  const probe = "if [ -e /run/superfluid/failed ]; then cat /run/superfluid/failed; exit 3; fi; test -e /run/superfluid/toolstack-ready";
  while (Date.now() < deadline) {
    if (exitCode !== undefined) throw new Error(`QEMU exited (code ${exitCode}) during boot`);
    const fatal = FATAL_CONSOLE.find((re) => re.test(l.console.text));
    if (fatal) throw new Error(`boot failed (console matched ${fatal})`);
    try {
      const r = await agentExec(agentPort, { cmd: probe, timeoutMs: 10_000 }, 5_000);
      if (r.code === 0) return;
      if (r.code === 3) throw new Error(`dom0 setup failed: ${r.stdout.trim()}`);
    } catch (err) {
      if (!(err instanceof AgentUnreachable)) throw err;
    }
    await sleep(500);
  }
  throw new Error(`boot timed out after ${timeoutMs} ms`);
}

async function stopLaunch(l: Launch): Promise<void> {
  if (l.child.exitCode === null && l.child.signalCode === null) {
    l.child.kill("SIGTERM");
    const done = await Promise.race([l.exited.then(() => true), sleep(5000).then(() => false)]);
    if (!done) l.child.kill("SIGKILL");
  }
  await l.exited;
}

export async function startXenNode(opts: XenNodeOptions): Promise<XenNode> {
  if (!/^[a-z0-9][a-z0-9-]{0,40}$/.test(opts.name)) throw new Error(`invalid Xen node name '${opts.name}': use lowercase letters, digits and '-' (max 41)`);
  const o = { name: opts.name, memoryMiB: opts.memoryMiB ?? 2048, dom0MemoryMiB: opts.dom0MemoryMiB ?? 1024, cpus: opts.cpus ?? 1, tuning: opts.tuning ?? "fast" };
  if (o.dom0MemoryMiB + 256 > o.memoryMiB) throw new Error(`memoryMiB (${o.memoryMiB}) must exceed dom0MemoryMiB (${o.dom0MemoryMiB}) by at least 256 (Xen's own memory)`);
  if (!Number.isInteger(o.cpus) || o.cpus < 1 || o.cpus > 8) throw new Error(`cpus must be an integer 1..8, got ${o.cpus}`);
  const bootTimeoutMs = opts.bootTimeoutMs ?? Number(process.env.SUPERFLUID_XEN_BOOT_TIMEOUT_MS ?? 300_000);
  const artifacts = await bootArtifacts();

  const index = allocateIndex();
  const stateDir = mkdtempSync(join(tmpdir(), `superfluid-xen-${o.name}-`));
  const hostDir = join(stateDir, "share");
  mkdirSync(hostDir);
  const leftovers: Leftovers = { pid: undefined, dirs: [stateDir] };
  track(leftovers);
  const hubPort = await segment.hubPort();
  let nicPort = 0;
  const release = (): void => {
    untrack(leftovers);
    rmSync(stateDir, { recursive: true, force: true });
    if (nicPort) segment.leave(nicPort);
    usedIndexes.delete(index);
  };

  const started = Date.now();
  let l: Launch | undefined;
  let agentPort = 0;
  // Ports are picked free then handed to QEMU; another process can grab one in between, so retry.
  for (let attempt = 1; ; attempt++) {
    agentPort = await freeTcpPort();
    nicPort = await freeUdpPort();
    segment.join(nicPort);
    l = launch(qemuArgs(artifacts, o, index, { agent: agentPort, nic: nicPort, hub: hubPort }, stateDir, hostDir), o.name);
    leftovers.pid = l.child.pid;
    log.info("booting emulated Xen node", { name: o.name, index, pid: l.child.pid, agentPort });
    try {
      await waitForReady(agentPort, l, bootTimeoutMs);
      break;
    } catch (err) {
      await stopLaunch(l);
      segment.leave(nicPort);
      const portRace = /host forwarding rule|Address already in use|Failed to bind/i.test(l.console.text);
      if (portRace && attempt < 3) continue;
      const consoleText = l.console.text;
      release();
      throw new Error(`emulated Xen node '${o.name}': ${(err as Error).message}\n--- last console lines ---\n${tail(consoleText)}`);
    }
  }
  const bootMs = Date.now() - started;

  const launched = l;
  let nextForwardPort = 20000;
  let stopped = false;
  const node: XenNode = {
    name: o.name,
    index,
    hostDir,
    dom0HostDir: "/mnt/host",
    bridge: "xenbr0",
    podCidr: `10.244.${index}.0/24`,
    dom0Ip: `10.244.${index}.1`,
    segmentIp: `10.99.0.${index}`,
    hostIpFromDom0: "10.0.2.2",
    bootMs,
    agentPort,
    qemuPid: launched.child.pid ?? -1,
    stateDir,
    async exec(cmd, execOpts = {}) {
      if (stopped) throw new Error(`Xen node '${o.name}' is stopped`);
      const timeoutMs = execOpts.timeoutMs ?? 120_000;
      const r = await agentExec(agentPort, { cmd, timeoutMs, ...(execOpts.stdin !== undefined ? { stdin: execOpts.stdin } : {}) });
      if (r.timedOut) {
        throw new Error(`exec in Xen node '${o.name}' timed out after ${timeoutMs} ms: ${cmd}\nstdout: ${tail(r.stdout, 20)}\nstderr: ${tail(r.stderr, 20)}`);
      }
      return { code: r.code, stdout: r.stdout, stderr: r.stderr };
    },
    async forward(port, fwdOpts = {}) {
      if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`forward: invalid port ${port}`);
      let dom0Port = port;
      if (fwdOpts.toAddress !== undefined) {
        if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(fwdOpts.toAddress)) throw new Error(`forward: invalid IPv4 address '${fwdOpts.toAddress}'`);
        // A guest address is not on QEMU's user net: dom0 DNATs one of its own ports to it.
        dom0Port = nextForwardPort++;
        const r = await node.exec(`iptables -t nat -A PREROUTING -i eth0 -p tcp --dport ${dom0Port} -j DNAT --to-destination ${fwdOpts.toAddress}:${port}`);
        if (r.code !== 0) throw new Error(`forward: DNAT in dom0 failed: ${r.stderr}`);
      }
      for (let attempt = 1; ; attempt++) {
        const hostPort = await freeTcpPort();
        const answer = await qmpHumanCommand(join(stateDir, "qmp.sock"), `hostfwd_add net0 tcp:127.0.0.1:${hostPort}-10.0.2.15:${dom0Port}`);
        if (answer.trim() === "") return hostPort;
        if (attempt >= 3) throw new Error(`forward: QEMU refused the forward: ${answer.trim()}`);
      }
    },
    consoleLog: () => launched.console.text,
    async stop() {
      if (stopped) return;
      stopped = true;
      liveNodes.delete(node);
      await Promise.all([...liveNodes].map((peer) => peer.exec(`ip route del ${node.podCidr}`).catch(() => undefined)));
      await stopLaunch(launched);
      release();
      log.info("emulated Xen node stopped", { name: o.name });
    },
  };
  // Joined before the awaits below, so that of two nodes finishing together one sees the other.
  const peers = [...liveNodes];
  liveNodes.add(node);
  try {
    await Promise.all(peers.map((peer) => linkPods(node, peer)));
  } catch (err) {
    await node.stop();
    throw err;
  }
  log.info("emulated Xen node ready", { name: o.name, bootMs });
  return node;
}

/** Routes each node's pod subnet via the other's segment address (both directions). */
async function linkPods(a: XenNode, b: XenNode): Promise<void> {
  for (const [from, to] of [[a, b], [b, a]] as const) {
    const r = await from.exec(`ip route replace ${to.podCidr} via ${to.segmentIp} dev eth1`);
    if (r.code !== 0) throw new Error(`route from node '${from.name}' to pods of '${to.name}' failed: ${r.stderr.trim()}`);
  }
}
