// Pod networking from a CNI config, with no process per sandbox. A Xen guest has no network
// namespace, so Debian's `bridge` plugin (which moves a veth into a netns) cannot do the guest side.
// The design instead:
//  - the CNI config is an ordinary bridge + host-local conflist; the shim reads the bridge name and
//    gateway from it and keeps that dom0 bridge up itself (rtnetlink, in-process, once, at start);
//  - per sandbox it leases an address the way host-local does, in-process and in host-local's own
//    lease directory layout (ipam.ts), keyed by the sandbox id;
//  - the guest's vif joins the bridge (the hypervisor backend's job) and the address reaches the
//    guest on its command line (`ip=<addr>/<prefix> gw=<addr>`), so dom0 routes to it through the
//    bridge; the backend also guards the vif against spoofing (antispoof.ts);
//  - past 1,000 guests, their vifs go to overflow bridges chained to that bridge by veth pairs (a
//    Linux bridge takes 1,023 ports; bridge-ports.ts says which bridge an address's guest joins).
// Teardown releases the lease, idempotently.
import { readdirSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { logger } from "../../../lib/log.js";
import { CriError } from "../errors.js";
import type { SandboxNetwork } from "../services/model.js";
import { pruneGuards } from "./antispoof.js";
import { type OverflowLink, addressOrdinal, bridgeSlot, overflowLink } from "./bridge-ports.js";
import { Ipam, IpamError, ipToInt, rangesOf } from "./ipam.js";
import {
  addAddress,
  addBridge,
  addVethPair,
  addresses,
  attachToBridge,
  linkExists,
  linkIndex,
  setLinkUp,
} from "./netlink.js";
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
  /** The lease directory (host-local's `dataDir`) when the config does not name one. */
  ipamDataDir: string;
  /** Keep the dom0 bridge up and readdress received guests (needs root in dom0); unit tests turn it off. */
  manageBridge: boolean;
  /** Guests per bridge before the next overflow bridge (bridge-ports.ts's GUESTS_PER_BRIDGE unless set). */
  guestsPerBridge?: number;
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
  let found: { ip: string; prefix: number } | undefined;
  try {
    found = linkIndex(bridge) === undefined ? undefined : addresses(bridge).find((a) => a.prefix < 31);
  } catch {
    return undefined;
  }
  if (!found) return undefined;
  const { ip, prefix } = found;
  const addr = ip.split(".").reduce((n, o) => ((n << 8) | Number(o)) >>> 0, 0);
  const net = prefix === 0 ? 0 : (addr & (~0 << (32 - prefix))) >>> 0;
  const dotted = (n: number) => [24, 16, 8, 0].map((sh) => (n >>> sh) & 255).join(".");
  const config = bridgeNetworkConfig(bridge, `${dotted(net)}/${prefix}`, ipamDataDir);
  const range = (config.ipam.ranges as { subnet: string; gateway: string }[][])[0]![0]!;
  range.gateway = ip; // dom0's own address on the bridge is the gateway, whatever it is
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

/** Xen's OUI (00:16:3e) + three bytes of the sandbox id: stable across restarts, unique per sandbox. */
export function macFor(sandboxId: string): string {
  const hex = sandboxId.slice(0, 6).padEnd(6, "0");
  return `00:16:3e:${hex.slice(0, 2)}:${hex.slice(2, 4)}:${hex.slice(4, 6)}`;
}

export class CniNetwork {
  private config!: NetworkConfigJson;
  private ipam: Ipam | undefined;
  private ready = false;
  private lastError = "";
  /** Overflow bridges seen up by this process. */
  private readonly overflowUp = new Set<string>();

  constructor(private readonly opts: CniOptions) {}

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
      if (this.config.ipam.type !== "host-local")
        throw new Error(
          `IPAM type ${JSON.stringify(this.config.ipam.type)} is not supported: the shim does host-local's allocation itself`,
        );
      this.ipam = new Ipam({
        network: this.config.name,
        dataDir: String(this.config.ipam.dataDir ?? this.opts.ipamDataDir),
        ranges: rangesOf(this.config.ipam),
      });
      if (this.opts.manageBridge) {
        this.ensureBridge();
        // Not fatal: without libnftables only anti-spoofing (and readdressing) fail, each with its error.
        await pruneGuards().then(
          (vifs) => vifs.length > 0 && log.info("anti-spoofing rules of vifs gone removed", { vifs }),
          (err: unknown) => log.warn("anti-spoofing rules not pruned", { err: String(err) }),
        );
      }
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

  private ensureBridge(): void {
    const { gateway, prefixLength } = this.ipam!.gateway;
    if (linkIndex(this.bridge) === undefined) addBridge(this.bridge);
    if (!addresses(this.bridge).some((a) => a.ip === gateway)) addAddress(this.bridge, gateway, prefixLength);
    setLinkUp(this.bridge);
    log.info("pod bridge up", { bridge: this.bridge, gateway: `${gateway}/${prefixLength}` });
  }

  /** Leases an address for the sandbox (the same one again if it holds one). */
  async setUp(sandboxId: string): Promise<SandboxNetwork> {
    if (!this.ready || !this.ipam)
      throw new CriError("FailedPrecondition", `pod network not ready: ${this.status().message}`);
    const lease = await this.ipam.allocate(sandboxId).catch((err: unknown) => {
      if (err instanceof IpamError)
        throw new CriError(
          err.code === "exhausted" ? "ResourceExhausted" : "InvalidArgument",
          `IPAM: ${err.message}`,
        );
      throw err;
    });
    let bridge: string;
    try {
      bridge = this.bridgeFor(lease.ip);
    } catch (err) {
      await this.ipam.release(sandboxId);
      throw err instanceof CriError
        ? err
        : new CriError("Internal", `overflow bridge for ${lease.ip}: ${String(err)}`);
    }
    return {
      ip: lease.ip,
      prefixLength: lease.prefixLength,
      gateway: lease.gateway,
      bridge,
      mac: macFor(sandboxId),
    };
  }

  /** The bridge of the chain the guest with this address joins; an overflow bridge is made when first needed. */
  private bridgeFor(ip: string): string {
    const ordinal = addressOrdinal(this.ipam!.spans, ipToInt(ip) ?? -1);
    let slot = 0;
    try {
      if (ordinal !== undefined) slot = bridgeSlot(ordinal, this.opts.guestsPerBridge);
    } catch (err) {
      throw new CriError("ResourceExhausted", `no bridge port for ${ip}: ${(err as Error).message}`);
    }
    if (slot === 0) return this.bridge;
    const link = overflowLink(this.bridge, slot);
    if (this.opts.manageBridge && !this.overflowUp.has(link.bridge)) {
      chainBridge(this.bridge, link);
      this.overflowUp.add(link.bridge);
      log.info("overflow bridge up", { bridge: link.bridge, chainedTo: this.bridge, veth: link.uplink });
    }
    return link.bridge;
  }

  /** Releases the sandbox's address and the readdressing of a guest received by migration; a second call is a no-op. */
  async tearDown(sandboxId: string): Promise<void> {
    if (!this.ipam) return;
    await this.dropReaddressing(sandboxId);
    await this.ipam.release(sandboxId);
  }

  /** Releases every lease whose container id is not in `owners` (crash recovery); returns their addresses. */
  async releaseUnowned(owners: ReadonlySet<string>): Promise<string[]> {
    return this.ipam ? this.ipam.releaseUnowned(owners) : [];
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
}

/** Makes (or completes) an overflow bridge and the veth pair that joins it to `primary`: idempotent,
 *  so a restarted shim or a half-made chain ends up whole. */
export function chainBridge(primary: string, link: OverflowLink): void {
  if (!linkExists(link.bridge)) addBridge(link.bridge);
  if (!linkExists(link.uplink)) addVethPair(link.uplink, link.downlink);
  // Both ends carry the primary's MTU; the overflow bridge takes its ports' MTU.
  attachToBridge(link.uplink, primary, { keepAddress: true });
  attachToBridge(link.downlink, link.bridge, { keepAddress: true, mtuOf: primary });
  setLinkUp(link.bridge);
}
