// Anti-spoofing for guest vifs, in-process (libnftables, family bridge), on by default: a guest may
// send only from its own MAC and IPv4 address on its vif; ARP too (sender MAC and IP). Anything
// else it sends (another source MAC or IP, IPv6, VLAN-tagged frames) is dropped in the bridge
// before any other rule sees it.
//
// One table for all guests, one transaction per change, no process per VM, and nothing in it that
// grows per VM but set elements (a chain per vif made every change read every chain: libnftables
// builds its cache from the table, ~1.2 s for 170 chains under TCG):
//   table bridge sf-antispoof {
//     map ports { type ifname : verdict }                               "vif5.0" : jump check
//     set addrs { type ifname . ether_addr . ipv4_addr }                "vif5.0" . mac . ip
//     set arps  { type ifname . ether_addr . ether_addr . ipv4_addr }   "vif5.0" . mac . mac . ip
//                                                                      (and . 0.0.0.0: ARP probes)
//     chain guard { hook prerouting priority -350; iifname vmap @ports }
//     chain check { IPv4 from an (ifname, MAC, IP) of addrs passes, ARP whose frame and sender
//                   name an (ifname, MAC, MAC, IP) of arps passes; everything else is dropped }
//   }
// A set element is deleted by its whole key, so each process keeps what it guarded (ifname → MAC
// and IP), read from the table once when it first needs it and again when a change finds it stale.
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
import { NftError, type NftObject, nftRun, parseNftJson } from "./nftables.js";

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

/**
 * What guards one vif in the table: its entry in `ports` (a jump to `check`, or to an earlier shim's
 * own chain `port-<ifname>`) and its elements in `addrs` and `arps`.
 */
export interface Guard {
  port?: "check" | "legacy";
  /** Elements of addrs and arps after the ifname: "mac . ip", "mac . mac . ip". */
  addrs: string[];
  arps: string[];
}

export interface GuardedVif {
  ifname: string;
  ip: string;
  mac: string;
}

const LEGACY_CHAIN = (ifname: string) => `port-${ifname}`;

/** The table, sets, map and the two chains (idempotent; a flush and their rules keep one copy). */
function skeleton(): string[] {
  const check = (r: string) => `add rule bridge ${TABLE} check ${r}`;
  return [
    `add table bridge ${TABLE}`,
    `add map bridge ${TABLE} ports { type ifname : verdict; }`,
    `add set bridge ${TABLE} addrs { type ifname . ether_addr . ipv4_addr; }`,
    `add set bridge ${TABLE} arps { type ifname . ether_addr . ether_addr . ipv4_addr; }`,
    `add chain bridge ${TABLE} check`,
    `flush chain bridge ${TABLE} check`,
    check("ether type ip iifname . ether saddr . ip saddr @addrs accept"),
    check("ether type arp iifname . ether saddr . arp saddr ether . arp saddr ip @arps accept"),
    check("drop"),
    `add chain bridge ${TABLE} guard { type filter hook prerouting priority ${PRIORITY}; policy accept; }`,
    `flush chain bridge ${TABLE} guard`,
    `add rule bridge ${TABLE} guard iifname vmap @ports`,
  ];
}

const element = (set: string, keys: string) => `bridge ${TABLE} ${set} { ${keys} }`;
/** What a guard of (mac, ip) puts in the table. ARP probes (RFC 5227) carry sender IP 0.0.0.0. */
const guardOf = (mac: string, ip: string): Guard => ({
  port: "check",
  addrs: [`${mac} . ${ip}`],
  arps: [`${mac} . ${mac} . ${ip}`, `${mac} . ${mac} . 0.0.0.0`],
});
const keys = (ifname: string, rest: string[]) => rest.map((r) => `"${ifname}" . ${r}`).join(", ");

/** The commands that delete what guards `ifname` now (by `g`); none when nothing does. */
function removal(ifname: string, g: Guard | undefined): string[] {
  if (!g) return [];
  const out: string[] = [];
  if (g.port) out.push(`delete element ${element("ports", `"${ifname}"`)}`);
  if (g.port === "legacy") {
    const chain = LEGACY_CHAIN(ifname);
    out.push(`flush chain bridge ${TABLE} ${chain}`, `delete chain bridge ${TABLE} ${chain}`);
  }
  if (g.addrs.length > 0) out.push(`delete element ${element("addrs", keys(ifname, g.addrs))}`);
  if (g.arps.length > 0) out.push(`delete element ${element("arps", keys(ifname, g.arps))}`);
  return out;
}

/**
 * The nft commands that guard these vifs, one transaction, replacing what `known` says guards them
 * now (exported for the unit test of the text).
 */
export function guardCommands(vifs: GuardedVif[], known: ReadonlyMap<string, Guard> = new Map()): string {
  return [
    ...skeleton(),
    ...vifs.flatMap(({ ifname, ip, mac }) => {
      checkIfname(ifname);
      checkIp(ip);
      const g = guardOf(normalMac(mac), ip);
      return [
        ...removal(ifname, known.get(ifname)),
        `add element ${element("addrs", keys(ifname, g.addrs))}`,
        `add element ${element("arps", keys(ifname, g.arps))}`,
        `add element ${element("ports", `"${ifname}" : jump check`)}`,
      ];
    }),
  ].join("\n");
}

/** The commands that remove the guards `known` has of these vifs, one transaction. */
export function unguardCommands(ifnames: string[], known: ReadonlyMap<string, Guard> = new Map()): string {
  ifnames.forEach(checkIfname);
  return [...skeleton(), ...ifnames.flatMap((ifname) => removal(ifname, known.get(ifname)))].join("\n");
}

/** What guards each vif, from one listing of the table. */
export function guardsOfTable(objects: NftObject[]): Map<string, Guard> {
  const guards = new Map<string, Guard>();
  const of = (ifname: string) =>
    guards.get(ifname) ?? guards.set(ifname, { addrs: [], arps: [] }).get(ifname)!;
  for (const e of objects.find((o) => o.map?.name === "ports")?.map?.elem ?? []) {
    if (!Array.isArray(e) || typeof e[0] !== "string") continue;
    const target = (e[1] as { jump?: { target?: unknown } } | undefined)?.jump?.target;
    of(e[0]).port = target === "check" ? "check" : "legacy";
  }
  for (const set of ["addrs", "arps"] as const)
    for (const e of objects.find((o) => o.set?.name === set)?.set?.elem ?? []) {
      const c = (e as { concat?: unknown } | null)?.concat;
      if (!Array.isArray(c) || c.length < 2 || !c.every((x) => typeof x === "string")) continue;
      const [ifname, ...rest] = c as string[];
      of(ifname!)[set].push(rest.join(" . "));
    }
  return guards;
}

/** This process's view of the table (ifname → guard): read once, changed with every transaction. */
let known: Map<string, Guard> | undefined;
let tableReads = 0;

/** How many times this process has read the table (for the phase logs: a read is a listing). */
export function guardTableReads(): number {
  return tableReads;
}

async function readGuards(): Promise<Map<string, Guard>> {
  tableReads++;
  const out = await nftRun(`list table bridge ${TABLE}`, { json: true }).catch(() => "");
  known = guardsOfTable(parseNftJson(out));
  return known;
}

/**
 * Runs the transaction `commands(view)` builds from this process's view of the table; if the table
 * has changed behind it (another process guarded or freed the same names), the view is read again
 * and the transaction built and run once more. `after` records the change in the view.
 */
async function change(
  commands: (view: ReadonlyMap<string, Guard>) => string,
  after: (view: Map<string, Guard>) => void,
): Promise<void> {
  const view = known ?? (await readGuards());
  try {
    await nftRun(commands(view));
  } catch (err) {
    if (!(err instanceof NftError)) throw err;
    const fresh = await readGuards();
    await nftRun(commands(fresh));
    after(fresh);
    return;
  }
  after(view);
}

async function guard(vifs: GuardedVif[]): Promise<void> {
  await change(
    (view) => guardCommands(vifs, view),
    (view) => vifs.forEach((v) => view.set(v.ifname, guardOf(normalMac(v.mac), v.ip))),
  );
}

async function unguard(ifnames: string[]): Promise<void> {
  ifnames.forEach(checkIfname);
  let view = known ?? (await readGuards());
  // A name this view does not know may have been guarded by another process since it was read.
  if (ifnames.some((n) => !view.has(n))) view = await readGuards();
  const present = ifnames.filter((n) => view.has(n));
  if (present.length === 0) return;
  await change(
    (v) => unguardCommands(present, v),
    (v) => present.forEach((n) => v.delete(n)),
  );
}

/** Drops what `ifname` sends unless it comes from `mac` and `ip` (replaces earlier rules for it). */
export async function guardVif(ifname: string, ip: string, mac: string): Promise<void> {
  await guard([{ ifname, ip, mac }]);
}

/**
 * Guards the vifs of a domain built from `vifs` (libxl names them `vif<domid>.<devid>`, devid = the
 * index); vifs without an IP are left open. One transaction.
 */
export async function guardDomainVifs(domid: number, vifs: { ip?: string; mac: string }[]): Promise<void> {
  const guarded = vifs.flatMap((v, devid) =>
    v.ip === undefined ? [] : [{ ifname: `vif${domid}.${devid}`, ip: v.ip, mac: v.mac }],
  );
  if (guarded.length > 0) await guard(guarded);
}

/** Removes the guard of `ifname`; a no-op when there is none. */
export async function unguardVif(ifname: string): Promise<void> {
  await unguard([ifname]);
}

/** The vifs guarded now (read from the table). */
export async function guardedVifs(): Promise<string[]> {
  return [...(await readGuards()).keys()].sort();
}

/** Removes the guards of every `vif<domid>.<n>` (what libxl names a domain's vifs). */
export async function unguardDomainVifs(domid: number): Promise<void> {
  if (!Number.isInteger(domid) || domid <= 0) throw new Error(`anti-spoofing: bad domid ${String(domid)}`);
  const prefix = `vif${domid}.`;
  const mine = (view: ReadonlyMap<string, Guard>) => [...view.keys()].filter((n) => n.startsWith(prefix));
  let names = mine(known ?? (await readGuards()));
  if (names.length === 0) names = mine(await readGuards());
  if (names.length > 0) await unguard(names);
}

/** Removes the guards of interfaces that no longer exist (at shim start: domains gone while it was down). */
export async function pruneGuards(): Promise<string[]> {
  const gone = [...(await readGuards()).keys()].filter((n) => linkIndex(n) === undefined);
  if (gone.length > 0) await unguard(gone);
  return gone;
}
