// A migrated guest keeps the address it booted with (it lives in the guest's memory), but its pod on
// the target node got a new one from this node's IPAM. 1:1 NAT in dom0 joins the two, so the pod IP
// the cluster knows reaches the guest:
//   - DNAT new -> old for traffic to the pod (PREROUTING from other hosts/pods, OUTPUT from dom0),
//   - SNAT old -> new for connections the guest opens (POSTROUTING, and INPUT for dom0 itself),
//   - a host route for the old address on the bridge (it is in another node's pod subnet, routed
//     elsewhere), the old gateway address on the bridge (the guest ARPs for it) and proxy ARP for the
//     new address (pods on the same bridge ARP for it; dom0 answers and NATs).
// Every rule carries a comment naming the sandbox, so removal finds them after a shim restart too.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { logger } from "../../../lib/log.js";

const run = promisify(execFile);
const log = logger("cri-readdress");

export interface Readdressing {
  /** The pod's address on this node (what the cluster routes to). */
  podIp: string;
  /** The address inside the guest (what it booted with on the source node). */
  guestIp: string;
  /** The guest's default gateway (the source node's bridge address). */
  guestGateway: string;
  bridge: string;
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function checkIp(what: string, ip: string): void {
  const m = IPV4.exec(ip);
  if (!m || m.slice(1).some((o) => Number(o) > 255))
    throw new Error(`${what}: not an IPv4 address: ${JSON.stringify(ip.slice(0, 40))}`);
}

/** The comment on every rule of one sandbox; gateway and bridge are in it so removal needs no other record. */
function tag(sandboxId: string, r: Readdressing): string {
  return `sf-readdress:${sandboxId.slice(0, 12)}:${r.guestGateway}@${r.bridge}`;
}

type Rule = string[];

function natRules(sandboxId: string, r: Readdressing): { chain: string; rule: Rule }[] {
  const comment = ["-m", "comment", "--comment", tag(sandboxId, r)];
  return [
    {
      chain: "PREROUTING",
      rule: ["-d", `${r.podIp}/32`, ...comment, "-j", "DNAT", "--to-destination", r.guestIp],
    },
    {
      chain: "OUTPUT",
      rule: ["-d", `${r.podIp}/32`, ...comment, "-j", "DNAT", "--to-destination", r.guestIp],
    },
    {
      chain: "POSTROUTING",
      rule: ["-s", `${r.guestIp}/32`, ...comment, "-j", "SNAT", "--to-source", r.podIp],
    },
    // Connections to dom0 itself are delivered locally and never pass POSTROUTING.
    { chain: "INPUT", rule: ["-s", `${r.guestIp}/32`, ...comment, "-j", "SNAT", "--to-source", r.podIp] },
  ];
}

async function ip(args: string[], tolerate = false): Promise<void> {
  try {
    await run("ip", args);
  } catch (err) {
    if (!tolerate)
      throw new Error(`ip ${args.join(" ")}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** Sets up the NAT and addresses for one received guest. Idempotent (rules are replaced, not stacked). */
export async function applyReaddressing(sandboxId: string, r: Readdressing): Promise<void> {
  for (const [what, v] of [
    ["podIp", r.podIp],
    ["guestIp", r.guestIp],
    ["guestGateway", r.guestGateway],
  ] as const)
    checkIp(what, v);
  if (!/^[a-zA-Z0-9_.-]{1,15}$/.test(r.bridge))
    throw new Error(`bridge ${JSON.stringify(r.bridge)} is not an interface name`);
  if (r.podIp === r.guestIp) return; // same address on both nodes: nothing to translate
  await removeReaddressing(sandboxId);
  try {
    for (const { chain, rule } of natRules(sandboxId, r))
      await run("iptables", ["-w", "-t", "nat", "-I", chain, "1", ...rule]);
    await ip(["route", "replace", `${r.guestIp}/32`, "dev", r.bridge]);
    // "File exists" when another received guest from the same node put it there already.
    await ip(["addr", "add", `${r.guestGateway}/32`, "dev", r.bridge], true);
    await ip(["neigh", "replace", "proxy", r.podIp, "dev", r.bridge]);
    log.info("guest readdressed", {
      sandbox: sandboxId,
      podIp: r.podIp,
      guestIp: r.guestIp,
      gateway: r.guestGateway,
      bridge: r.bridge,
    });
  } catch (err) {
    await removeReaddressing(sandboxId);
    throw err;
  }
}

/** Removes every rule, route and address of the sandbox's readdressing; a no-op when there is none. */
export async function removeReaddressing(sandboxId: string): Promise<void> {
  const prefix = `sf-readdress:${sandboxId.slice(0, 12)}:`;
  const { stdout } = await run("iptables", ["-w", "-t", "nat", "-S"]).catch(() => ({ stdout: "" }));
  const lines = stdout.split("\n");
  const mine = lines.filter((l) => l.includes(prefix));
  if (mine.length === 0) return;
  let where: string | undefined; // "<gateway>@<bridge>"
  let guestIp: string | undefined;
  let podIp: string | undefined;
  for (const line of mine) {
    const words = line.split(/\s+/).map((w) => w.replace(/^"|"$/g, ""));
    where ??= words.find((w) => w.startsWith(prefix))?.slice(prefix.length);
    const to = words.indexOf("--to-destination");
    if (to >= 0) guestIp = words[to + 1];
    const d = words.indexOf("-d");
    if (d >= 0) podIp = words[d + 1]?.replace(/\/32$/, "");
    // "-A PREROUTING ..." -> "-D PREROUTING ...": iptables deletes the rule that matches exactly.
    await run("iptables", ["-w", "-t", "nat", "-D", ...words.slice(1)]).catch((err: unknown) =>
      log.warn("iptables -D failed", { line, err: String(err) }),
    );
  }
  const [gateway, bridge] = (where ?? "").split("@");
  if (guestIp) await ip(["route", "del", `${guestIp}/32`], true);
  if (podIp && bridge) await ip(["neigh", "del", "proxy", podIp, "dev", bridge], true);
  // The old gateway's address goes with the last guest that used it.
  const othersUseGateway = lines.some(
    (l) => !l.includes(prefix) && l.includes(`sf-readdress:`) && l.includes(`:${where}`),
  );
  if (gateway && bridge && !othersUseGateway) await ip(["addr", "del", `${gateway}/32`, "dev", bridge], true);
  log.info("guest readdressing removed", { sandbox: sandboxId, podIp, guestIp, gateway });
}
