// Pod networking with Debian's CNI plugins. A Xen guest has no network namespace, so the `bridge`
// plugin (which moves a veth into a netns) cannot do the guest side. The design instead:
//  - the CNI config is an ordinary bridge + host-local conflist; the shim reads the bridge name and
//    gateway from it and keeps that dom0 bridge up itself (ip link/ip addr, once, at start);
//  - per sandbox it runs only the IPAM plugin (host-local) per the CNI spec (ADD/DEL with
//    CNI_CONTAINERID = sandbox id), which leases the address and records it on disk;
//  - the guest's vif joins the bridge (libxl's vif hotplug) and the address reaches the guest on its
//    command line (`ip=<addr>/<prefix> gw=<addr>`), so dom0 can route to it through the bridge.
// Teardown is CNI DEL, which host-local treats as idempotent.
import { execFile, execFileSync, spawn } from "node:child_process";
import { accessSync, constants, readdirSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { promisify } from "node:util";
import { logger } from "../../../lib/log.js";
import { CriError } from "../errors.js";
import type { SandboxNetwork } from "../services/model.js";
import { removeReaddressing } from "./readdress.js";

const log = logger("cri-cni");

export interface NetworkConfigJson {
  cniVersion: string;
  name: string;
  type: string;
  bridge?: string;
  ipam: { type: string; [key: string]: unknown };
  [key: string]: unknown;
}

export interface CniOptions {
  /** A .conf or .conflist; undefined uses `config`, then defaultNetworkConfig(). */
  confPath?: string;
  config?: NetworkConfigJson;
  pluginDirs?: string[];
  /** host-local's lease directory when the config does not name one. */
  ipamDataDir: string;
  /** Keep the dom0 bridge up (needs root in dom0); unit tests of IPAM alone turn it off. */
  manageBridge: boolean;
}

export function defaultNetworkConfig(ipamDataDir: string): NetworkConfigJson {
  return bridgeNetworkConfig("sfbr0", "10.89.0.0/24", ipamDataDir);
}

/** bridge + host-local for one subnet; the gateway (dom0 on the bridge) is the subnet's first address. */
export function bridgeNetworkConfig(bridge: string, subnet: string, ipamDataDir: string): NetworkConfigJson {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)$/.exec(subnet);
  if (!m || Number(m[5]) < 8 || Number(m[5]) > 30)
    throw new Error(`pod CIDR ${JSON.stringify(subnet)}: expected an IPv4 a.b.c.d/8..30`);
  if (!/^[a-zA-Z0-9_.-]{1,15}$/.test(bridge))
    throw new Error(`bridge name ${JSON.stringify(bridge)} is not a valid interface name`);
  const gateway = `${m[1]}.${m[2]}.${m[3]}.${Number(m[4]) + 1}`;
  return {
    cniVersion: "1.0.0",
    name: "superfluid",
    type: "bridge",
    bridge,
    isGateway: true,
    ipam: { type: "host-local", ranges: [[{ subnet, gateway }]], dataDir: ipamDataDir },
  };
}

/**
 * A dom0 that already has a Xen bridge with an address (xenbr0, as Xen's docs and our emulated node
 * set it up) needs no CNI file: its subnet is the pod network and its address the pods' gateway.
 */
export function detectXenBridge(ipamDataDir: string, bridge = "xenbr0"): NetworkConfigJson | undefined {
  let out: string;
  try {
    out = execFileSync("ip", ["-o", "-4", "addr", "show", "dev", bridge], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    });
  } catch {
    return undefined;
  }
  const m = /inet (\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)/.exec(out);
  if (!m) return undefined;
  const prefix = Number(m[5]);
  const addr = ((Number(m[1]) << 24) | (Number(m[2]) << 16) | (Number(m[3]) << 8) | Number(m[4])) >>> 0;
  const net = prefix === 0 ? 0 : (addr & (~0 << (32 - prefix))) >>> 0;
  const dotted = (n: number) => [24, 16, 8, 0].map((sh) => (n >>> sh) & 255).join(".");
  const config = bridgeNetworkConfig(bridge, `${dotted(net)}/${prefix}`, ipamDataDir);
  const range = (config.ipam.ranges as { subnet: string; gateway: string }[][])[0]![0]!;
  range.gateway = dotted(addr); // dom0's own address on the bridge is the gateway, whatever it is
  return config;
}

/** containerd's rule: the first .conf/.conflist in /etc/cni/net.d in lexical order, if any. */
export function firstCniConf(dir = "/etc/cni/net.d"): string | undefined {
  try {
    const name = readdirSync(dir)
      .filter((n) => n.endsWith(".conflist") || n.endsWith(".conf"))
      .sort()[0];
    return name ? `${dir}/${name}` : undefined;
  } catch {
    return undefined;
  }
}

interface CniResult {
  ips?: { address: string; gateway?: string }[];
}

/** Xen's OUI (00:16:3e) + three bytes of the sandbox id: stable across restarts, unique per sandbox. */
export function macFor(sandboxId: string): string {
  const hex = sandboxId.slice(0, 6).padEnd(6, "0");
  return `00:16:3e:${hex.slice(0, 2)}:${hex.slice(2, 4)}:${hex.slice(4, 6)}`;
}

export class CniNetwork {
  private config!: NetworkConfigJson;
  private readonly pluginDirs: string[];
  private ready = false;
  private lastError = "";

  constructor(private readonly opts: CniOptions) {
    this.pluginDirs = opts.pluginDirs ?? ["/usr/lib/cni", "/opt/cni/bin"];
  }

  get bridge(): string {
    return this.config.bridge ?? "cni0";
  }

  /** NetworkReady for the CRI Status call. */
  status(): { ready: boolean; message: string } {
    return { ready: this.ready, message: this.ready ? "" : this.lastError || "network not initialised" };
  }

  async init(): Promise<void> {
    try {
      this.config = await this.loadConfig();
      if (this.opts.manageBridge) await this.ensureBridge();
      this.ready = true;
    } catch (err) {
      this.lastError = err instanceof Error ? err.message : String(err);
      log.error("pod network not ready", { err: this.lastError });
    }
  }

  private async loadConfig(): Promise<NetworkConfigJson> {
    if (!this.opts.confPath) return this.opts.config ?? defaultNetworkConfig(this.opts.ipamDataDir);
    const doc = JSON.parse(await readFile(this.opts.confPath, "utf8")) as Record<string, unknown>;
    // A conflist: take its bridge plugin; a single .conf is the plugin config itself.
    const plugins = Array.isArray(doc.plugins) ? (doc.plugins as Record<string, unknown>[]) : [doc];
    const bridge = plugins.find((p) => p.type === "bridge");
    if (!bridge || typeof bridge.ipam !== "object" || bridge.ipam === null)
      throw new Error(`${this.opts.confPath}: needs a "bridge" plugin with an "ipam" section`);
    const ipam = {
      dataDir: this.opts.ipamDataDir,
      ...(bridge.ipam as Record<string, unknown>),
    } as unknown as NetworkConfigJson["ipam"];
    return {
      ...bridge,
      cniVersion: String(doc.cniVersion ?? "1.0.0"),
      name: String(doc.name ?? "superfluid"),
      type: "bridge",
      ipam,
    };
  }

  private gatewayOf(): { gateway: string; prefix: number } {
    const ranges = this.config.ipam.ranges as { subnet: string; gateway?: string }[][] | undefined;
    const range =
      ranges?.[0]?.[0] ??
      (this.config.ipam.subnet
        ? { subnet: String(this.config.ipam.subnet), gateway: this.config.ipam.gateway as string | undefined }
        : undefined);
    if (!range) throw new Error("IPAM config has no subnet");
    const [net, prefix] = range.subnet.split("/");
    const parts = net!.split(".").map(Number);
    parts[3] = (parts[3] ?? 0) + 1; // host-local's default gateway: the subnet's first address
    return { gateway: range.gateway ?? parts.join("."), prefix: Number(prefix) };
  }

  private async ensureBridge(): Promise<void> {
    const ip = promisify(execFile);
    const { gateway, prefix } = this.gatewayOf();
    const exists = await ip("ip", ["link", "show", this.bridge]).then(
      () => true,
      () => false,
    );
    if (!exists) await ip("ip", ["link", "add", this.bridge, "type", "bridge"]);
    const { stdout } = await ip("ip", ["-o", "-4", "addr", "show", "dev", this.bridge]);
    if (!stdout.includes(` ${gateway}/`))
      await ip("ip", ["addr", "add", `${gateway}/${prefix}`, "dev", this.bridge]);
    await ip("ip", ["link", "set", this.bridge, "up"]);
    log.info("pod bridge up", { bridge: this.bridge, gateway: `${gateway}/${prefix}` });
  }

  /** Leases an address for the sandbox (CNI ADD of the IPAM plugin). */
  async setUp(sandboxId: string): Promise<SandboxNetwork> {
    if (!this.ready)
      throw new CriError("FailedPrecondition", `pod network not ready: ${this.status().message}`);
    const result = (await this.runIpam("ADD", sandboxId)) as CniResult;
    const first = result.ips?.[0];
    if (!first) throw new CriError("Internal", `IPAM plugin ${this.config.ipam.type} returned no address`);
    const [ip, prefix] = first.address.split("/");
    return {
      ip: ip!,
      prefixLength: Number(prefix),
      gateway: first.gateway ?? this.gatewayOf().gateway,
      bridge: this.bridge,
      mac: macFor(sandboxId),
    };
  }

  /** Releases the sandbox's address (CNI DEL) and the readdressing of a guest received by migration; a second call is a no-op. */
  async tearDown(sandboxId: string): Promise<void> {
    if (!this.config) return;
    await this.dropReaddressing(sandboxId);
    await this.runIpam("DEL", sandboxId);
  }

  /** Removes the readdressing (bridge translation) of a guest received by migration, if any; a second call is a no-op. */
  async dropReaddressing(sandboxId: string): Promise<void> {
    // Only where the shim owns dom0's network (not in unit tests, which must not touch the host's network).
    if (this.opts.manageBridge) await removeReaddressing(sandboxId);
  }

  /** Whether this network may change dom0's bridge rules and addresses (readdressing a migrated guest). */
  get managesHostNetwork(): boolean {
    return this.opts.manageBridge;
  }

  private runIpam(command: "ADD" | "DEL", sandboxId: string): Promise<unknown> {
    const type = this.config.ipam.type;
    if (!/^[a-z0-9-]+$/.test(type))
      return Promise.reject(new CriError("InvalidArgument", `bad IPAM type ${type}`));
    const env = {
      PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin",
      CNI_COMMAND: command,
      CNI_CONTAINERID: sandboxId,
      // No netns exists for a Xen guest; host-local does not enter it, so name where one would be.
      CNI_NETNS: `/run/superfluid/netns/${sandboxId}`,
      CNI_IFNAME: "eth0",
      CNI_PATH: this.pluginDirs.join(":"),
    };
    return new Promise((resolve, reject) => {
      const child = spawn(this.findPlugin(type), [], { env, stdio: ["pipe", "pipe", "pipe"] });
      let out = "";
      let err = "";
      child.stdout.on("data", (d: Buffer) => (out += d.toString()));
      child.stderr.on("data", (d: Buffer) => (err += d.toString()));
      child.on("error", reject);
      child.on("close", (code) => {
        if (code === 0) {
          resolve(out.trim() ? JSON.parse(out) : {});
          return;
        }
        let msg = err.trim() || out.trim();
        try {
          msg = (JSON.parse(out) as { msg?: string }).msg ?? msg;
        } catch {
          /* not JSON */
        }
        const exhausted = /no IP addresses available|range is full/i.test(msg);
        reject(new CriError(exhausted ? "ResourceExhausted" : "Internal", `CNI ${type} ${command}: ${msg}`));
      });
      child.stdin.end(JSON.stringify(this.config));
    });
  }

  private pluginPathCache = new Map<string, string>();
  private findPlugin(type: string): string {
    const cached = this.pluginPathCache.get(type);
    if (cached) return cached;
    for (const dir of this.pluginDirs) {
      const p = `${dir}/${type}`;
      try {
        accessSync(p, constants.X_OK);
        this.pluginPathCache.set(type, p);
        return p;
      } catch {
        /* not in this directory */
      }
    }
    throw new CriError("FailedPrecondition", `CNI plugin ${type} not found in ${this.pluginDirs.join(":")}`);
  }
}
