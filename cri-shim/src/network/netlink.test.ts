// netlink.ts for real, in a network namespace this test creates: a bridge made, addressed and brought
// up, a vif-like veth attached the way vif-bridge does it and detached again, addresses listed and
// removed, a neighbour entry dropped; errors carry the kernel's errno.
import test from "ava";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { nodeInNetns } from "../testing/netns.js";

const run = promisify(execFile);
const MODULE = fileURLToPath(new URL("./netlink.js", import.meta.url));

test("bridge, addresses, vif attach/detach and neighbours over rtnetlink", async (t) => {
  const ns = `sf-nl-${randomBytes(3).toString("hex")}`;
  t.teardown(() => run("ip", ["netns", "del", ns]).catch(() => undefined));
  await run("ip", ["netns", "add", ns]);
  await run("ip", ["-n", ns, "link", "add", "vif3.0", "type", "veth", "peer", "name", "guest0"]);
  await run("ip", ["-n", ns, "link", "set", "lo", "up"]);
  const script = `
    const m = await import(${JSON.stringify(MODULE)});
    const out = {};
    out.before = m.linkIndex("sfbr9") ?? null;
    m.addBridge("sfbr9");
    try { m.addBridge("sfbr9"); } catch (e) { out.again = e.errno; }
    m.addAddress("sfbr9", "10.66.0.1", 24);
    m.addAddress("sfbr9", "10.65.0.1", 32);
    try { m.addAddress("sfbr9", "10.66.0.1", 24); } catch (e) { out.dupAddress = e.errno; }
    m.setLinkUp("sfbr9");
    out.addresses = m.addresses("sfbr9");
    m.deleteAddress("sfbr9", "10.65.0.1", 32);
    out.after = m.addresses("sfbr9");
    m.attachToBridge("vif3.0", "sfbr9");
    out.attached = (await import("node:fs")).readFileSync("/sys/class/net/vif3.0/address", "utf8").trim();
    out.neighbourGone = m.deleteNeighbour("sfbr9", "10.66.0.7");
    try { m.setLinkUp("nope0"); } catch (e) { out.missing = e.errno; }
    console.log(JSON.stringify(out));
  `;
  const stdout = await nodeInNetns(ns, script);
  const out = JSON.parse(stdout) as Record<string, unknown>;
  t.is(out.before, null);
  t.is(out.again, 17, "EEXIST for a second bridge of that name");
  t.is(out.dupAddress, 17);
  t.deepEqual(out.addresses, [
    { ip: "10.66.0.1", prefix: 24 },
    { ip: "10.65.0.1", prefix: 32 },
  ]);
  t.deepEqual(out.after, [{ ip: "10.66.0.1", prefix: 24 }]);
  t.is(out.attached, "fe:ff:ff:ff:ff:ff");
  t.false(out.neighbourGone, "no entry to drop");
  t.is(out.missing, 19, "ENODEV for a missing interface");
  const link = (await run("ip", ["-n", ns, "-o", "link", "show", "vif3.0"])).stdout;
  t.regex(link, /master sfbr9/);
  t.regex(link, /<[^>]*\bUP\b[^>]*>/);
  t.regex((await run("ip", ["-n", ns, "-o", "link", "show", "sfbr9"])).stdout, /<[^>]*\bUP\b[^>]*>/);
  t.regex(
    (await run("ip", ["-n", ns, "-o", "-4", "addr", "show", "dev", "sfbr9"])).stdout,
    /10\.66\.0\.1\/24/,
  );

  // A vif's queue: a plain FIFO set while it is down stays when it comes up (no default made).
  await run("ip", ["-n", ns, "tuntap", "add", "dev", "vif4.0", "mode", "tap"]);
  const fifo = `const m = await import(${JSON.stringify(MODULE)}); m.useFifoQdisc("vif4.0"); try { m.useFifoQdisc("vif98.0"); } catch (e) { console.log(e.errno); }`;
  const fifoOut = await nodeInNetns(ns, fifo);
  t.is(fifoOut.trim(), "19", "ENODEV for a missing interface");
  await run("ip", ["-n", ns, "link", "set", "vif4.0", "up"]);
  const qdiscs = (await run("ip", ["netns", "exec", ns, "tc", "qdisc", "show", "dev", "vif4.0"])).stdout;
  t.regex(qdiscs, /^qdisc pfifo [0-9a-f]+: root/m);
  t.notRegex(qdiscs, /fq_codel|pfifo_fast|mq/);

  const detach = `const m = await import(${JSON.stringify(MODULE)}); m.detachFromBridge("vif3.0"); m.detachFromBridge("vif99.0");`;
  await nodeInNetns(ns, detach);
  const detached = (await run("ip", ["-n", ns, "-o", "link", "show", "vif3.0"])).stdout;
  t.notRegex(detached, /master/);
  t.notRegex(detached, /<[^>]*\bUP\b[^>]*>/);
});
