// announce.ts: the RARP frame byte for byte, and for real in a network namespace this test creates:
// a bridge with a guest's vif and an uplink (veth pairs), where the bridge first learned the guest's
// MAC on the uplink (as a target node does from the guest's broadcasts before the move). After the
// announcement the bridge no longer sends that MAC back out of the uplink (it floods it, the vif
// included, until the guest speaks), and the RARP left through the uplink.
import test from "ava";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { guestPorts, rarpFrame } from "./announce.js";

const run = promisify(execFile);
/** By full path: under npm, node_modules/.bin/nft is @vercel/nft (an ava dependency), not nftables. */
const NFT = "/usr/sbin/nft";
const MODULE = fileURLToPath(new URL("./announce.js", import.meta.url));

test("the RARP frame: broadcast from the MAC, reverse request about itself, 60 bytes", (t) => {
  const f = rarpFrame("00:16:3e:5f:00:c8");
  t.is(f.length, 60);
  t.is(f.subarray(0, 6).toString("hex"), "ffffffffffff");
  t.is(f.subarray(6, 12).toString("hex"), "00163e5f00c8");
  t.is(f.readUInt16BE(12), 0x8035);
  t.is(f.subarray(14, 22).toString("hex"), "0001080006040003");
  t.is(f.subarray(22, 28).toString("hex"), "00163e5f00c8");
  t.is(f.readUInt32BE(28), 0);
  t.is(f.subarray(32, 38).toString("hex"), "00163e5f00c8");
  t.is(f.readUInt32BE(38), 0);
  t.throws(() => rarpFrame("00:16:3e:5f:00"), { message: /not a MAC address/ });
  t.throws(() => rarpFrame("zz:16:3e:5f:00:c8"), { message: /not a MAC address/ });
});

test("guestPorts names netback's vifs by domid and position", (t) => {
  t.deepEqual(
    guestPorts(7, [
      { bridge: "xenbr0", mac: "00:16:3e:00:00:01" },
      { bridge: "sfseg", mac: "00:16:3e:00:00:02" },
    ]),
    [
      { ifname: "vif7.0", bridge: "xenbr0", mac: "00:16:3e:00:00:01" },
      { ifname: "vif7.1", bridge: "sfseg", mac: "00:16:3e:00:00:02" },
    ],
  );
});

test("the target's bridge forgets the guest's old port and the RARP leaves by the uplink", async (t) => {
  const ns = `sf-an-${randomBytes(3).toString("hex")}`;
  t.teardown(() => run("ip", ["netns", "del", ns]).catch(() => undefined));
  await run("ip", ["netns", "add", ns]);
  const ip = (...args: string[]) => run("ip", ["-n", ns, ...args]);
  await run("ip", ["netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
  await run("ip", ["netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
  await ip("link", "add", "sfbr", "type", "bridge");
  await ip("link", "add", "vif9.0", "type", "veth", "peer", "name", "guest0");
  await ip("link", "add", "up0", "type", "veth", "peer", "name", "wire0");
  for (const l of ["vif9.0", "up0"]) await ip("link", "set", l, "master", "sfbr");
  const links = ["sfbr", "vif9.0", "guest0", "up0", "wire0"];
  for (const l of links) await ip("link", "set", l, "up");
  // A loaded machine brings links up late, and a frame sent on a link that is not up yet fails:
  // wait until every link is operationally up (a bridge reports UP once a port is).
  for (let i = 0; ; i++) {
    const { stdout } = await ip("-j", "link", "show");
    const state = new Map(
      (JSON.parse(stdout) as { ifname: string; operstate: string }[]).map((l) => [l.ifname, l.operstate]),
    );
    if (links.every((l) => state.get(l) === "UP")) break;
    if (i >= 200) {
      t.fail(`links not up after 10 s: ${JSON.stringify([...state])}`);
      return;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const mac = "00:16:3e:5f:00:c8";
  // Counts only RARPs from the guest's MAC arriving on the segment's end (wire0): any other frame the
  // namespace's links send meanwhile (a loaded machine brings links up late) is not an announcement.
  const nft = (...args: string[]) => run("ip", ["netns", "exec", ns, NFT, ...args]);
  await nft("add", "table", "netdev", "an");
  await nft("add", "chain", "netdev", "an", "c", '{ type filter hook ingress device "wire0" priority 0; }');
  await nft("add", "rule", "netdev", "an", "c", "ether", "type", "0x8035", "ether", "saddr", mac, "counter");
  const script = `
    const m = await import(${JSON.stringify(MODULE)});
    const { execFileSync } = await import("node:child_process");
    const rx = () => JSON.parse(execFileSync(${JSON.stringify(NFT)}, ["-j", "list", "chain", "netdev", "an", "c"], { encoding: "utf8" }))
      .nftables.find((x) => x.rule)?.rule.expr.find((e) => e.counter).counter.packets;
    const fdb = () => execFileSync("bridge", ["fdb", "show", "br", "sfbr"], { encoding: "utf8" })
      .split("\\n").filter((l) => l.startsWith(${JSON.stringify(mac)})).map((l) => l.split(" ")[2]);
    // The segment side: a frame from the guest's MAC comes in over the uplink (the guest on the source).
    m.sendFrame("wire0", m.rarpFrame(${JSON.stringify(mac)}));
    await new Promise((r) => setTimeout(r, 100));
    const out = { before: fdb() };
    const rxBefore = rx();
    m.announceGuest([{ ifname: "vif9.0", bridge: "sfbr", mac: ${JSON.stringify(mac)} }], [0, 20]);
    out.after = fdb();
    await new Promise((r) => setTimeout(r, 200));
    out.uplinkFrames = rx() - rxBefore;
    // The guest speaks on its vif: learned there, and a second announcement leaves that entry alone.
    m.sendFrame("guest0", m.rarpFrame(${JSON.stringify(mac)}));
    await new Promise((r) => setTimeout(r, 100));
    m.announceGuest([{ ifname: "vif9.0", bridge: "sfbr", mac: ${JSON.stringify(mac)} }], [0]);
    out.kept = fdb();
    m.sendFrame("wire0", m.rarpFrame(${JSON.stringify(mac)}));
    await new Promise((r) => setTimeout(r, 100));
    m.announceGuest([{ ifname: "vif8.0", bridge: "sfbr", mac: ${JSON.stringify(mac)} }], [0]);
    out.afterMissing = fdb();
    console.log(JSON.stringify(out));
  `;
  const nodeScript = [process.execPath, "--input-type=module", "-e", script];
  // On failure the assertion carries what the script printed on stderr, not only the command line.
  const { stdout } = await run("ip", ["netns", "exec", ns, ...nodeScript]).catch(
    (err: { stderr?: string; message: string }) => {
      throw new Error(`the namespace's script failed: ${err.stderr?.trim() || err.message}`);
    },
  );
  const out = JSON.parse(stdout.trim().split("\n").pop()!) as Record<string, unknown>;
  t.deepEqual(out.before, ["up0"], "learned on the uplink first");
  t.deepEqual(out.after, [], "the bridge forgot the uplink for the guest's MAC at once");
  t.deepEqual(out.kept, ["vif9.0"], "an entry on the guest's own vif stays");
  t.is(out.uplinkFrames, 2, "both scheduled announcements left through the uplink");
  t.deepEqual(out.afterMissing, ["up0"], "a missing vif changes nothing and throws nothing");
});
