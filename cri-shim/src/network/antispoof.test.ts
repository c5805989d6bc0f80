// antispoof.ts for real, inside network namespaces this test creates (nothing touches the host's own
// network): "dom0" has a bridge with the gateway address; "guest" is a veth on that bridge whose
// dom0 end is named like a Xen vif (vif7.0); "other" is a second, unguarded port. The guest's real
// IP and MAC reach dom0, a spoofed source IP or MAC does not (ARP included: dom0 never learns the
// spoofed address), the unguarded port is untouched, and unguarding restores the traffic.
import test from "ava";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { guardCommands, unguardCommands } from "./antispoof.js";

const run = promisify(execFile);
/** By full path: under npm, node_modules/.bin/nft is @vercel/nft (an ava dependency), not nftables. */
const NFT = "/usr/sbin/nft";
const MODULE = fileURLToPath(new URL("./antispoof.js", import.meta.url));
const GW = "10.77.0.1";
const GUEST_IP = "10.77.0.5";
const SPOOF_IP = "10.77.0.9";
const OTHER_IP = "10.77.0.6";
const GUEST_MAC = "00:16:3e:0a:0b:0c";
const VIF = "vif7.0";

async function sh(cmd: string): Promise<string> {
  return (await run("sh", ["-c", cmd], { timeout: 30_000 })).stdout.trim();
}
const quoted = (cmd: string) => `'${cmd.replace(/'/g, `'\\''`)}'`;

test("a guarded vif passes the guest's own IP and MAC and drops a spoofed source IP (ARP too) and MAC; other ports are untouched", async (t) => {
  const id = randomBytes(3).toString("hex");
  const ns = { dom0: `sf-as-d-${id}`, guest: `sf-as-g-${id}`, other: `sf-as-o-${id}` };
  const inNs = (name: string) => (cmd: string) => sh(`ip netns exec ${name} sh -c ${quoted(cmd)}`);
  const inDom0 = inNs(ns.dom0);
  const inGuest = inNs(ns.guest);
  const inOther = inNs(ns.other);
  t.teardown(async () => {
    for (const name of Object.values(ns)) await sh(`ip netns del ${name} 2>/dev/null; true`);
  });
  for (const name of Object.values(ns)) await sh(`ip netns add ${name} && ip -n ${name} link set lo up`);
  await inDom0(`ip link add br0 type bridge && ip addr add ${GW}/24 dev br0 && ip link set br0 up`);
  await sh(
    `ip link add vg-${id} type veth peer name ${VIF} && ip link set vg-${id} netns ${ns.guest} && ip link set ${VIF} netns ${ns.dom0}`,
  );
  await sh(
    `ip link add vo-${id} type veth peer name vod-${id} && ip link set vo-${id} netns ${ns.other} && ip link set vod-${id} netns ${ns.dom0}`,
  );
  await inDom0(`ip link set ${VIF} master br0 up && ip link set vod-${id} master br0 up`);
  await inGuest(
    `ip link set vg-${id} address ${GUEST_MAC} && ip addr add ${GUEST_IP}/24 dev vg-${id} && ip addr add ${SPOOF_IP}/24 dev vg-${id} && ip link set vg-${id} up`,
  );
  await inOther(`ip addr add ${OTHER_IP}/24 dev vo-${id} && ip link set vo-${id} up`);

  const call = (fn: string, args: string) =>
    inDom0(
      `${process.execPath} --input-type=module -e "const m = await import(\\"${MODULE}\\"); console.log(JSON.stringify(await m.${fn}(${args.replace(/"/g, '\\"')})));"`,
    );
  // dom0's TCP server answers with the source address it saw; "lost" when nothing came back.
  const ping = async (inSender: (c: string) => Promise<string>, from: string) => {
    const answer = await inSender(
      `socat -T 2 - TCP:${GW}:7000,bind=${from},connect-timeout=2 </dev/null 2>/dev/null || true`,
    );
    return answer === `seen ${from}` ? "ok" : answer === "" ? "lost" : answer;
  };
  const dom0Knows = async (ip: string) => {
    const entry = await inDom0(`ip neigh show ${ip} dev br0`);
    return entry !== "" && !/FAILED|INCOMPLETE/.test(entry);
  };
  // Both sides forget their neighbours, so the next connection starts with ARP.
  const forget = async () => {
    await inDom0("ip neigh flush dev br0");
    await inGuest(`ip neigh flush dev vg-${id}`);
  };

  const server = await inDom0(
    `socat TCP-LISTEN:7000,bind=${GW},fork,reuseaddr SYSTEM:"echo seen \\$SOCAT_PEERADDR" >/dev/null 2>&1 & echo $!`,
  );
  t.teardown(() => sh(`kill ${server} 2>/dev/null || true`));
  for (let i = 0; !(await inDom0('ss -Hltn "sport = :7000"')); i++) {
    if (i > 100) throw new Error("socat in dom0 never listened");
    await new Promise((r) => setTimeout(r, 100));
  }
  // The ports need a moment after coming up; wait until the unguarded guest reaches dom0.
  for (let i = 0; (await ping(inGuest, GUEST_IP)) !== "ok"; i++)
    if (i > 10) throw new Error("the guest never reached dom0 over the bridge");
  await forget();
  // Control: without the guard, the spoofed source works (so a later "lost" is the guard's doing).
  t.is(await ping(inGuest, SPOOF_IP), "ok", "unguarded: spoofed source IP reaches dom0");
  t.true(await dom0Knows(SPOOF_IP), "unguarded: dom0 learned the spoofed address from the guest's ARP");
  await forget();

  await call("guardVif", `"${VIF}", "${GUEST_IP}", "${GUEST_MAC.toUpperCase()}"`);
  t.deepEqual(JSON.parse(await call("guardedVifs", "")), [VIF]);
  t.is(await ping(inGuest, GUEST_IP), "ok", "the guest's own IP and MAC pass");
  t.true(await dom0Knows(GUEST_IP), "dom0 learned the guest's address by ARP");
  await forget();
  t.is(await ping(inGuest, SPOOF_IP), "lost", "a spoofed source IP is dropped");
  t.false(await dom0Knows(SPOOF_IP), "ARP with a spoofed sender IP is dropped: dom0 never learned it");
  t.is(await ping(inOther, OTHER_IP), "ok", "an unguarded port is untouched");

  // A spoofed MAC with the right IP.
  await forget();
  await inGuest(`ip link set vg-${id} address 00:16:3e:66:66:66`);
  t.is(await ping(inGuest, GUEST_IP), "lost", "a spoofed source MAC is dropped");
  await inGuest(`ip link set vg-${id} address ${GUEST_MAC}`);
  t.is(await ping(inGuest, GUEST_IP), "ok", "and the real one passes again");

  // One table; a guarded vif is set elements in it, not a chain of its own.
  const table = await inDom0(`${NFT} list table bridge sf-antispoof`);
  t.regex(table, /"vif7\.0" \. 00:16:3e:0a:0b:0c \. 10\.77\.0\.5/);
  t.notRegex(table, /chain port-/);

  // Guarding again with another address replaces the old one (a vif name reused by a new domain).
  await forget();
  await call("guardVif", `"${VIF}", "${SPOOF_IP}", "${GUEST_MAC}"`);
  t.is(await ping(inGuest, SPOOF_IP), "ok", "the new address passes");
  t.is(await ping(inGuest, GUEST_IP), "lost", "the old address no longer does");

  await call("unguardVif", `"${VIF}"`);
  await call("unguardVif", `"${VIF}"`); // idempotent
  t.deepEqual(JSON.parse(await call("guardedVifs", "")), []);
  t.is(await ping(inGuest, GUEST_IP), "ok", "unguarded again: everything passes");
  t.notRegex(await inDom0(`${NFT} list table bridge sf-antispoof`), /vif7\.0/, "its elements are gone");

  // unguardDomainVifs finds a domain's vifs by name; pruneGuards drops the guards of vifs gone.
  await call("guardVif", `"${VIF}", "${GUEST_IP}", "${GUEST_MAC}"`);
  await call("guardVif", `"vif8.0", "10.77.0.8", "00:16:3e:00:00:08"`);
  await call("unguardDomainVifs", "7");
  t.deepEqual(JSON.parse(await call("guardedVifs", "")), ["vif8.0"]);
  t.deepEqual(JSON.parse(await call("pruneGuards", "")), ["vif8.0"], "vif8.0 does not exist in dom0");
  t.deepEqual(JSON.parse(await call("guardedVifs", "")), []);
});

test("an earlier shim's chain per vif is taken over, and a view of the table gone stale is read again", async (t) => {
  const ns = `sf-as-l-${randomBytes(3).toString("hex")}`;
  await sh(`ip netns add ${ns}`);
  t.teardown(() => sh(`ip netns del ${ns} 2>/dev/null; true`));
  const nft = (cmds: string) => sh(`ip netns exec ${ns} ${NFT} -f - <<'EOF'\n${cmds}\nEOF`);
  const list = () => sh(`ip netns exec ${ns} ${NFT} list table bridge sf-antispoof`);
  // The layout before sets: a map to a chain per vif.
  await nft(`table bridge sf-antispoof {
    map ports { type ifname : verdict; }
    chain guard { type filter hook prerouting priority -350; policy accept; iifname vmap @ports; }
    chain port-vif3.0 { ether saddr != 00:16:3e:00:00:03 drop; drop; }
    chain port-vif4.0 { drop; }
    }
    add element bridge sf-antispoof ports { "vif3.0" : jump port-vif3.0, "vif4.0" : jump port-vif4.0 }`);
  // One process: the legacy guards are replaced and removed; then another process (nft here)
  // frees vif5.0 behind its back, and guarding vif5.0 again still leaves exactly its new address.
  const script = `
    const m = await import(${JSON.stringify(MODULE)});
    await m.guardVif("vif3.0", "10.1.0.3", "00:16:3e:00:00:03");
    await m.unguardVif("vif4.0");
    await m.guardVif("vif5.0", "10.1.0.5", "00:16:3e:00:00:05");
    const { execFileSync } = await import("node:child_process");
    execFileSync(${JSON.stringify(NFT)}, ["-f", "-"], { input: [
      'delete element bridge sf-antispoof ports { "vif5.0" }',
      'delete element bridge sf-antispoof addrs { "vif5.0" . 00:16:3e:00:00:05 . 10.1.0.5 }',
    ].join("\\n") });
    await m.guardVif("vif5.0", "10.1.0.55", "00:16:3e:00:00:55");
    console.log(JSON.stringify(await m.guardedVifs()));
  `;
  const out = await sh(`ip netns exec ${ns} ${process.execPath} --input-type=module -e ${quoted(script)}`);
  t.deepEqual(JSON.parse(out), ["vif3.0", "vif5.0"]);
  const table = await list();
  t.notRegex(table, /chain port-/, "the legacy chains are gone");
  t.regex(table, /"vif3\.0" \. 00:16:3e:00:00:03 \. 10\.1\.0\.3/);
  t.regex(table, /"vif5\.0" \. 00:16:3e:00:00:55 \. 10\.1\.0\.55/);
  t.notRegex(table, /10\.1\.0\.5[^5]/, "nothing of vif5.0's old address is left");
  t.notRegex(table, /vif4\.0/);
});

test("bad input is refused before anything is built", (t) => {
  const good = { ifname: "vif1.0", ip: "10.0.0.2", mac: "00:16:3e:00:00:01" };
  const cases: [Partial<typeof good>, RegExp][] = [
    [{ ifname: "vif1.0; flush ruleset" }, /not an interface name/],
    [{ ifname: "a".repeat(16) }, /not an interface name/],
    [{ ip: "10.0.0.2 }" }, /not a unicast IPv4/],
    [{ ip: "0.0.0.0" }, /not a unicast IPv4/],
    [{ ip: "10.0.0.256" }, /not a unicast IPv4/],
    [{ mac: "00:16:3e:00:00:01 drop" }, /not a unicast MAC/],
    [{ mac: "01:00:5e:00:00:01" }, /not a unicast MAC/],
  ];
  for (const [bad, message] of cases)
    t.throws(() => guardCommands([{ ...good, ...bad }]), { message }, JSON.stringify(bad));
  t.throws(() => unguardCommands(['x" }']), { message: /not an interface name/ });
  // One transaction for several vifs; the MAC is normalised to lower case.
  const text = guardCommands([good, { ifname: "vif2.0", ip: "10.0.0.3", mac: "00:16:3E:00:00:02" }]);
  t.is(text.match(/^add element bridge sf-antispoof ports/gm)?.length, 2);
  t.regex(text, /addrs \{ "vif2\.0" \. 00:16:3e:00:00:02 \. 10\.0\.0\.3 \}/);
  // Guarding a vif again deletes what guarded it before, in the same transaction.
  const again = guardCommands(
    [good],
    new Map([["vif1.0", { port: "check", addrs: ["00:16:3e:00:00:09 . 10.0.0.9"], arps: [] }]]),
  );
  t.regex(
    again,
    /delete element bridge sf-antispoof addrs \{ "vif1\.0" \. 00:16:3e:00:00:09 \. 10\.0\.0\.9 \}[^]*add element bridge sf-antispoof addrs \{ "vif1\.0"/,
  );
});
