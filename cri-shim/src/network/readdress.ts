// A migrated guest keeps the address it booted with (it lives in the guest's memory), but its pod on
// the target node got a new one from this node's IPAM. dom0 joins the two with a stateless 1:1
// translation IN THE BRIDGE (nftables, family bridge), below the IP stack, so conntrack, kube-proxy and
// every iptables rule only ever see the pod IP:
//   - frames into the bridge for the guest (from dom0's own stack: hook output; from other ports:
//     hook prerouting): IPv4 destination pod IP -> guest IP, and the target IP of ARP packets for
//     the pod IP, so the guest answers ARP for the pod IP with its own MAC;
//   - frames the guest sends (hook prerouting, matched by its MAC, which the migration keeps): IPv4
//     source guest IP -> pod IP, and the sender IP of its ARP packets;
//   - the source node's gateway address as a /32 on the bridge (the guest ARPs for it and routes
//     everything through it).
// Why not iptables DNAT/SNAT in dom0: kube-proxy's ClusterIP DNAT and a pod-IP DNAT both sit in nat
// OUTPUT, and netfilter NATs a connection once per hook, so dom0's own ClusterIP traffic never reached
// the guest. Why the bridge family and not tc or a netdev hook on the bridge device: the priority -300
// prerouting hook runs before br_netfilter's conntrack (bridge-nf-call-iptables), the rules follow the
// guest's MAC instead of its vif (whose name changes with the domid on every restore), frames between
// two ports of the bridge (another pod on this node) are translated too, and the host kernel the tests
// run on has no act_nat. nft updates the IP and TCP/UDP checksums of the addresses it rewrites.
// Each sandbox gets its own table `sf-readdress-<first 12 chars of the sandbox id>`; a comment on its
// first rule records pod IP, guest IP, gateway and bridge, so removal needs no other record.
// nft and the address/neighbour changes run in-process (libnftables, rtnetlink): no process on the
// migration-receive path.
import { logger } from "../../../lib/log.js";
import { addAddress, deleteAddress, deleteNeighbour, NetlinkError } from "./netlink.js";
import { nftRun, parseNftJson } from "./nftables.js";

const log = logger("cri-readdress");

export interface Readdressing {
  /** The pod's address on this node (what the cluster routes to). */
  podIp: string;
  /** The address inside the guest (what it booted with on the source node). */
  guestIp: string;
  /** The guest's default gateway (the source node's bridge address). */
  guestGateway: string;
  /** The guest's MAC (its vif's, unchanged by the migration): the translation follows it. */
  guestMac: string;
  bridge: string;
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const TABLE_PREFIX = "sf-readdress-";

function checkIp(what: string, ip: string): void {
  const m = IPV4.exec(ip);
  if (!m || m.slice(1).some((o) => Number(o) > 255))
    throw new Error(`${what}: not an IPv4 address: ${JSON.stringify(ip.slice(0, 40))}`);
}

function tableOf(sandboxId: string): string {
  const short = sandboxId.slice(0, 12);
  if (!/^[a-zA-Z0-9_]{1,12}$/.test(short))
    throw new Error(
      `sandbox id ${JSON.stringify(sandboxId.slice(0, 40))} does not start with a name-safe prefix`,
    );
  return `${TABLE_PREFIX}${short}`;
}

function validate(r: Readdressing): void {
  for (const [what, v] of [
    ["podIp", r.podIp],
    ["guestIp", r.guestIp],
    ["guestGateway", r.guestGateway],
  ] as const)
    checkIp(what, v);
  if (!MAC.test(r.guestMac))
    throw new Error(`guestMac: not a MAC address: ${JSON.stringify(String(r.guestMac).slice(0, 40))}`);
  if (!/^[a-zA-Z0-9_.-]{1,15}$/.test(r.bridge))
    throw new Error(`bridge ${JSON.stringify(r.bridge)} is not an interface name`);
}

/** What the first rule's comment records; parsed back by `recorded`. */
function record(r: Readdressing): string {
  return `pod=${r.podIp} guest=${r.guestIp} gw=${r.guestGateway} bridge=${r.bridge}`;
}

interface Recorded {
  table: string;
  podIp: string;
  guestIp: string;
  gateway: string;
  bridge: string;
}

function ruleset(table: string, r: Readdressing): string {
  const { podIp, guestIp, guestMac: mac } = r;
  // Addresses and names are validated above; nothing here comes from elsewhere unchecked.
  const toGuest = [
    `ether daddr ${mac} ip daddr ${podIp} ip daddr set ${guestIp}`,
    `arp daddr ip ${podIp} arp daddr ip set ${guestIp}`,
  ];
  return `table bridge ${table} {
  chain into-bridge {
    type filter hook prerouting priority -300; policy accept;
    ether saddr ${mac} ip saddr ${guestIp} ip saddr set ${podIp} comment "${record(r)}"
    ether saddr ${mac} arp saddr ip ${guestIp} arp saddr ip set ${podIp}
    ${toGuest.join("\n    ")}
  }
  chain from-dom0 {
    type filter hook output priority -300; policy accept;
    ${toGuest.join("\n    ")}
  }
}
`;
}

/** Runs an address/neighbour change; a failure is an error unless `tolerate`. */
function netlinkStep(what: () => unknown, tolerate = false): void {
  try {
    what();
  } catch (err) {
    if (!tolerate || !(err instanceof NetlinkError)) throw err;
  }
}

/** Every readdressing table in dom0 with what its comment recorded. */
async function listRecorded(): Promise<Recorded[]> {
  const out = await nftRun("list tables bridge", { json: true }).catch(() => "");
  const tables = parseNftJson(out).flatMap((o) =>
    o.table?.name?.startsWith(TABLE_PREFIX) ? [o.table.name] : [],
  );
  const found: Recorded[] = [];
  for (const table of tables) {
    const listing = await nftRun(`list table bridge ${table}`, { json: true }).catch(() => "");
    const comment = parseNftJson(listing).find((o) => o.rule?.comment)?.rule?.comment ?? "";
    const m = /pod=([\d.]+) guest=([\d.]+) gw=([\d.]+) bridge=(\S+)/.exec(comment);
    if (m) found.push({ table, podIp: m[1]!, guestIp: m[2]!, gateway: m[3]!, bridge: m[4]! });
    else found.push({ table, podIp: "", guestIp: "", gateway: "", bridge: "" });
  }
  return found;
}

/** Sets up the translation for one received guest. Idempotent (the sandbox's table is replaced). */
export async function applyReaddressing(sandboxId: string, r: Readdressing): Promise<void> {
  const table = tableOf(sandboxId);
  validate(r);
  if (r.podIp === r.guestIp) return; // same address on both nodes: nothing to translate
  await removeReaddressing(sandboxId);
  try {
    await nftRun(ruleset(table, r));
    // "File exists" when another received guest from the same node put it there already.
    netlinkStep(() => addAddress(r.bridge, r.guestGateway, 32), true);
    // dom0 may have cached the pod IP's MAC from an earlier pod; the next ARP finds the guest.
    netlinkStep(() => deleteNeighbour(r.bridge, r.podIp), true);
    log.info("guest readdressed", { sandbox: sandboxId, table, ...r });
  } catch (err) {
    await removeReaddressing(sandboxId);
    throw err;
  }
}

/** Removes the sandbox's table, neighbour entry and (with its last user) gateway address; a no-op when there is none. */
export async function removeReaddressing(sandboxId: string): Promise<void> {
  const table = tableOf(sandboxId);
  const all = await listRecorded();
  const mine = all.find((t) => t.table === table);
  if (!mine) return;
  await nftRun(`delete table bridge ${table}`);
  if (mine.bridge && mine.podIp) netlinkStep(() => deleteNeighbour(mine.bridge, mine.podIp), true);
  const othersUseGateway = all.some(
    (t) => t.table !== table && t.gateway === mine.gateway && t.bridge === mine.bridge,
  );
  if (mine.gateway && mine.bridge && !othersUseGateway)
    netlinkStep(() => deleteAddress(mine.bridge, mine.gateway, 32), true);
  log.info("guest readdressing removed", { sandbox: sandboxId, ...mine });
}
