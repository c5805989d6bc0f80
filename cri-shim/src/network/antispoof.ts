// Anti-spoofing for guest vifs, in-process (libnftables, family bridge), on by default: a guest may
// send only from its own MAC and IPv4 address on its vif; ARP too (sender MAC and IP). Anything
// else it sends (another source MAC or IP, IPv6, VLAN-tagged frames) is dropped in the bridge
// before any other rule sees it.
//
// One table for all guests, one transaction per change, no process per VM:
//   table bridge sf-antispoof {
//     map ports { type ifname : verdict }          "vif5.0" : jump port-vif5.0
//     chain guard { hook prerouting priority -350; iifname vmap @ports }
//     chain port-vif5.0 { the guest's MAC and IP may pass; everything else is dropped }
//   }
// Ports not in the map (dom0's uplink, other devices) pass untouched. Priority -350 runs before the
// readdressing of a migrated guest (readdress.ts, -300), so the check sees the address inside the
// guest, before it is translated to the pod IP.
//
// CONTRACT for the hypervisor backends (libxl and lean):
//   guardVif(ifname, ip, mac)  after the vif's backend interface exists or is about to (the rule
//       matches the name, so calling it before netback creates the interface is fine), and before
//       the guest is unpaused. `ip` is the address the guest sends from (for a migrated guest, the
//       one it booted with, not the pod IP). Calling it again for the same ifname replaces the rules
//       (a new domain that reuses a vif name gets only its own address).
//   unguardVif(ifname)  when the vif goes away (destroy, or before a restore gives it a new name).
//       Idempotent: a name that was never guarded is fine.
//   guardDomainVifs(domid, vifs) / unguardDomainVifs(domid)  the same for every `vif<domid>.<n>`
//       of a domain, in one transaction (what the libxl backend uses; destroy knows only the domid).
// netlink.ts has the rest of what vif-bridge did, in-process: attachToBridge(ifname, bridge) (fe:ff
// MAC, the bridge's MTU, master, up) and detachFromBridge(ifname).
// All of them validate their arguments (CRI-level callers pass pod data) and throw an Error whose
// message says what was wrong; they never run a process.
import { linkIndex } from "./netlink.js";
import { nftRun, parseNftJson } from "./nftables.js";

const TABLE = "sf-antispoof";
const PRIORITY = -350;
const IFNAME = /^[a-zA-Z0-9_.-]{1,15}$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function checkIfname(ifname: string): void {
  if (typeof ifname !== "string" || !IFNAME.test(ifname))
    throw new Error(`anti-spoofing: ${JSON.stringify(String(ifname).slice(0, 40))} is not an interface name`);
}

function checkIp(ip: string): void {
  const m = typeof ip === "string" ? IPV4.exec(ip) : null;
  if (!m || m.slice(1).some((o) => Number(o) > 255) || ip === "0.0.0.0")
    throw new Error(
      `anti-spoofing: ${JSON.stringify(String(ip).slice(0, 40))} is not a unicast IPv4 address`,
    );
}

function normalMac(mac: string): string {
  const lower = typeof mac === "string" ? mac.toLowerCase() : "";
  if (!MAC.test(lower) || (parseInt(lower.slice(0, 2), 16) & 1) === 1)
    throw new Error(
      `anti-spoofing: ${JSON.stringify(String(mac).slice(0, 40))} is not a unicast MAC address`,
    );
  return lower;
}

const chainOf = (ifname: string) => `port-${ifname}`;

/** The table, map and guard chain (idempotent; flush + one rule keeps a single vmap rule). */
function skeleton(): string[] {
  return [
    `add table bridge ${TABLE}`,
    `add map bridge ${TABLE} ports { type ifname : verdict; }`,
    `add chain bridge ${TABLE} guard { type filter hook prerouting priority ${PRIORITY}; policy accept; }`,
    `flush chain bridge ${TABLE} guard`,
    `add rule bridge ${TABLE} guard iifname vmap @ports`,
  ];
}

export interface GuardedVif {
  ifname: string;
  ip: string;
  mac: string;
}

/** The nft commands that guard these vifs, one transaction (exported for the unit test of the text). */
export function guardCommands(vifs: GuardedVif[]): string {
  return [
    ...skeleton(),
    ...vifs.flatMap(({ ifname, ip, mac }) => {
      checkIfname(ifname);
      checkIp(ip);
      const m = normalMac(mac);
      const chain = chainOf(ifname);
      const rule = (r: string) => `add rule bridge ${TABLE} ${chain} ${r}`;
      return [
        `add chain bridge ${TABLE} ${chain}`,
        `flush chain bridge ${TABLE} ${chain}`,
        rule(`ether saddr != ${m} drop`),
        rule(`ether type ip ip saddr ${ip} accept`),
        // ARP probes (RFC 5227) carry sender IP 0.0.0.0; every other ARP must name the guest's own pair.
        rule(`ether type arp arp saddr ether ${m} arp saddr ip { ${ip}, 0.0.0.0 } accept`),
        rule("drop"),
        `add element bridge ${TABLE} ports { "${ifname}" : jump ${chain} }`,
      ];
    }),
  ].join("\n");
}

/** Drops what `ifname` sends unless it comes from `mac` and `ip` (replaces earlier rules for it). */
export async function guardVif(ifname: string, ip: string, mac: string): Promise<void> {
  await nftRun(guardCommands([{ ifname, ip, mac }]));
}

/**
 * Guards the vifs of a domain built from `vifs` (libxl names them `vif<domid>.<devid>`, devid = the
 * index); vifs without an IP are left open. One transaction.
 */
export async function guardDomainVifs(domid: number, vifs: { ip?: string; mac: string }[]): Promise<void> {
  const guarded = vifs.flatMap((v, devid) =>
    v.ip === undefined ? [] : [{ ifname: `vif${domid}.${devid}`, ip: v.ip, mac: v.mac }],
  );
  if (guarded.length > 0) await nftRun(guardCommands(guarded));
}

/**
 * The commands that remove a vif's guard whether or not it exists: they create the element and
 * chain first so the deletes always find them, all in one transaction.
 */
export function unguardCommands(ifnames: string[]): string {
  ifnames.forEach(checkIfname);
  return [
    ...skeleton(),
    ...ifnames.flatMap((ifname) => {
      const chain = chainOf(ifname);
      return [
        `add chain bridge ${TABLE} ${chain}`,
        `flush chain bridge ${TABLE} ${chain}`,
        `add element bridge ${TABLE} ports { "${ifname}" : jump ${chain} }`,
        `delete element bridge ${TABLE} ports { "${ifname}" }`,
        `delete chain bridge ${TABLE} ${chain}`,
      ];
    }),
  ].join("\n");
}

/** Removes the guard of `ifname`; a no-op when there is none. */
export async function unguardVif(ifname: string): Promise<void> {
  await nftRun(unguardCommands([ifname]));
}

/** The vifs guarded now. */
export async function guardedVifs(): Promise<string[]> {
  const out = await nftRun(`list map bridge ${TABLE} ports`, { json: true }).catch(() => "");
  const map = parseNftJson(out).find((o) => o.map?.name === "ports")?.map;
  return (map?.elem ?? []).flatMap((e) => (Array.isArray(e) && typeof e[0] === "string" ? [e[0]] : []));
}

/** Removes the guards of every `vif<domid>.<n>` (what libxl names a domain's vifs). */
export async function unguardDomainVifs(domid: number): Promise<void> {
  if (!Number.isInteger(domid) || domid <= 0) throw new Error(`anti-spoofing: bad domid ${String(domid)}`);
  const mine = (await guardedVifs()).filter((n) => n.startsWith(`vif${domid}.`));
  if (mine.length > 0) await nftRun(unguardCommands(mine));
}

/** Removes the guards of interfaces that no longer exist (at shim start: domains gone while it was down). */
export async function pruneGuards(): Promise<string[]> {
  const gone = (await guardedVifs()).filter((n) => linkIndex(n) === undefined);
  if (gone.length > 0) await nftRun(unguardCommands(gone));
  return gone;
}
