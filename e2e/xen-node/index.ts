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
// guest vifs, the node's pod subnet (pod-network.ts: a /21 per index, 10.244.8.0/21 for node 1) with
// dom0 at its first address.
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { logger } from "../../lib/log.js";
import { bootArtifacts } from "./artifacts.js";
import { track, untrack, type Leftovers } from "./cleanup.js";
import { agentExec, freeTcpPort } from "./exec-client.js";
import { launch, qemuArgs, stopLaunch, tail, waitForReady, xenstoredDaemon, type Launch } from "./qemu.js";
import { qmpHumanCommand } from "./qmp.js";
import { Segment, freeUdpPort } from "./segment.js";
import { type PodNetwork, podNetwork } from "./pod-network.js";

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
  /** Default 600 s (2 shared cores can be very slow); env SUPERFLUID_XEN_BOOT_TIMEOUT_MS overrides. */
  bootTimeoutMs?: number;
  /** Prefix length of the node's pod subnet (default 21: 2,046 addresses, room for maxPods 1,024). */
  podPrefixLength?: number;
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
  /** This node's pod subnet, e.g. 10.244.8.0/21 (pod-network.ts). */
  readonly podCidr: string;
  /** dom0's address on the pod bridge (the pods' gateway), e.g. 10.244.8.1. */
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

function allocateIndex(): number {
  for (let i = 1; i < 255; i++) {
    if (!usedIndexes.has(i)) {
      usedIndexes.add(i);
      return i;
    }
  }
  throw new Error("emulated Xen node: more than 254 nodes in one process");
}

export async function startXenNode(opts: XenNodeOptions): Promise<XenNode> {
  if (!/^[a-z0-9][a-z0-9-]{0,40}$/.test(opts.name))
    throw new Error(`invalid Xen node name '${opts.name}': use lowercase letters, digits and '-' (max 41)`);
  const o = {
    name: opts.name,
    memoryMiB: opts.memoryMiB ?? 2048,
    dom0MemoryMiB: opts.dom0MemoryMiB ?? 1024,
    cpus: opts.cpus ?? 1,
    tuning: opts.tuning ?? "fast",
  };
  if (o.dom0MemoryMiB + 256 > o.memoryMiB)
    throw new Error(
      `memoryMiB (${o.memoryMiB}) must exceed dom0MemoryMiB (${o.dom0MemoryMiB}) by at least 256 (Xen's own memory)`,
    );
  if (!Number.isInteger(o.cpus) || o.cpus < 1 || o.cpus > 8)
    throw new Error(`cpus must be an integer 1..8, got ${o.cpus}`);
  xenstoredDaemon(); // a bad SUPERFLUID_XENSTORED fails here, before anything starts
  const bootTimeoutMs = opts.bootTimeoutMs ?? Number(process.env.SUPERFLUID_XEN_BOOT_TIMEOUT_MS ?? 600_000);
  const artifacts = await bootArtifacts();

  const index = allocateIndex();
  let pods: PodNetwork;
  try {
    pods = podNetwork(index, opts.podPrefixLength);
  } catch (err) {
    usedIndexes.delete(index);
    throw err;
  }
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
    l = launch(
      qemuArgs(
        artifacts,
        { ...o, pods },
        index,
        { agent: agentPort, nic: nicPort, hub: hubPort },
        stateDir,
        hostDir,
      ),
      o.name,
    );
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
      throw new Error(
        `emulated Xen node '${o.name}': ${(err as Error).message}\n--- last console lines ---\n${tail(consoleText)}`,
      );
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
    podCidr: pods.cidr,
    dom0Ip: pods.gateway,
    segmentIp: `10.99.0.${index}`,
    hostIpFromDom0: "10.0.2.2",
    bootMs,
    agentPort,
    qemuPid: launched.child.pid ?? -1,
    stateDir,
    async exec(cmd, execOpts = {}) {
      if (stopped) throw new Error(`Xen node '${o.name}' is stopped`);
      const timeoutMs = execOpts.timeoutMs ?? 120_000;
      const r = await agentExec(agentPort, {
        cmd,
        timeoutMs,
        ...(execOpts.stdin !== undefined ? { stdin: execOpts.stdin } : {}),
      });
      if (r.timedOut) {
        throw new Error(
          `exec in Xen node '${o.name}' timed out after ${timeoutMs} ms: ${cmd}\nstdout: ${tail(r.stdout, 20)}\nstderr: ${tail(r.stderr, 20)}`,
        );
      }
      return { code: r.code, stdout: r.stdout, stderr: r.stderr };
    },
    async forward(port, fwdOpts = {}) {
      if (!Number.isInteger(port) || port < 1 || port > 65535)
        throw new Error(`forward: invalid port ${port}`);
      let dom0Port = port;
      if (fwdOpts.toAddress !== undefined) {
        if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(fwdOpts.toAddress))
          throw new Error(`forward: invalid IPv4 address '${fwdOpts.toAddress}'`);
        // A guest address is not on QEMU's user net: dom0 DNATs one of its own ports to it.
        dom0Port = nextForwardPort++;
        const r = await node.exec(
          `iptables -t nat -A PREROUTING -i eth0 -p tcp --dport ${dom0Port} -j DNAT --to-destination ${fwdOpts.toAddress}:${port}`,
        );
        if (r.code !== 0) throw new Error(`forward: DNAT in dom0 failed: ${r.stderr}`);
      }
      for (let attempt = 1; ; attempt++) {
        const hostPort = await freeTcpPort();
        const answer = await qmpHumanCommand(
          join(stateDir, "qmp.sock"),
          `hostfwd_add net0 tcp:127.0.0.1:${hostPort}-10.0.2.15:${dom0Port}`,
        );
        if (answer.trim() === "") return hostPort;
        if (attempt >= 3) throw new Error(`forward: QEMU refused the forward: ${answer.trim()}`);
      }
    },
    consoleLog: () => launched.console.text,
    async stop() {
      if (stopped) return;
      stopped = true;
      liveNodes.delete(node);
      await Promise.all(
        [...liveNodes].map((peer) =>
          peer.exec(`ip route del ${node.podCidr}`, { timeoutMs: 10_000 }).catch(() => undefined),
        ),
      );
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
  for (const [from, to] of [
    [a, b],
    [b, a],
  ] as const) {
    const r = await from.exec(`ip route replace ${to.podCidr} via ${to.segmentIp} dev eth1`);
    if (r.code !== 0)
      throw new Error(`route from node '${from.name}' to pods of '${to.name}' failed: ${r.stderr.trim()}`);
  }
}
