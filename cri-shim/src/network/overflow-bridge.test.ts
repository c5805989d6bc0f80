// Past one bridge's ports: in network namespaces this test makes, the shim's pod network (cni.ts)
// puts guests beyond the figure per bridge on overflow bridges chained to the pod bridge by veth
// pairs, and a "guest" on an overflow bridge reaches dom0's gateway address across the chain. A
// second shim process on the same namespace finds the chain made and the same bridges; an address
// past the last overflow bridge is refused and its lease given back.
import test from "ava";
import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { nodeInNetns } from "../testing/netns.js";

const run = promisify(execFile);
const CNI = fileURLToPath(new URL("./cni.js", import.meta.url));
const NETLINK = fileURLToPath(new URL("./netlink.js", import.meta.url));

/** Runs `body` in a fresh node process inside namespace `ns`, with `net` a CniNetwork on sfbr7. */
async function inNs(ns: string, dataDir: string, perBridge: number, body: string): Promise<unknown> {
  const script = `
    const { CniNetwork, bridgeNetworkConfig } = await import(${JSON.stringify(CNI)});
    const nl = await import(${JSON.stringify(NETLINK)});
    const config = bridgeNetworkConfig("sfbr7", "10.77.0.0/24", ${JSON.stringify(dataDir)});
    const net = new CniNetwork({ config, ipamDataDir: ${JSON.stringify(dataDir)}, manageBridge: true, guestsPerBridge: ${perBridge} });
    await net.init();
    const out = {};
    ${body}
    console.log(JSON.stringify(out));
  `;
  const stdout = await nodeInNetns(ns, script);
  return JSON.parse(stdout.trim().split("\n").pop()!);
}

const master = async (ns: string, ifname: string) =>
  /master (\S+)/.exec((await run("ip", ["-n", ns, "-o", "link", "show", ifname])).stdout)?.[1];

test("guests past the figure per bridge go to overflow bridges that are one segment with the pod bridge", async (t) => {
  const tag = randomBytes(3).toString("hex");
  const ns = `sf-ovf-${tag}`;
  const guest = `sf-ovg-${tag}`;
  const dataDir = mkdtempSync(join(tmpdir(), "sf-ovf-"));
  t.teardown(async () => {
    await run("ip", ["netns", "del", ns]).catch(() => undefined);
    await run("ip", ["netns", "del", guest]).catch(() => undefined);
    rmSync(dataDir, { recursive: true, force: true });
  });
  await run("ip", ["netns", "add", ns]);
  await run("ip", ["netns", "add", guest]);

  // Two guests per bridge; 10.77.0.1 (ordinal 0) is the gateway, so .2 is the pod bridge's last.
  const first = (await inNs(
    ns,
    dataDir,
    2,
    `
    out.nets = [];
    for (const id of ["a1", "a2", "a3", "a4"]) out.nets.push(await net.setUp(id + "0".repeat(62)));
  `,
  )) as { nets: { ip: string; bridge: string }[] };
  t.deepEqual(
    first.nets.map((n) => [n.ip, n.bridge]),
    [
      ["10.77.0.2", "sfbr7"],
      ["10.77.0.3", "sfbr7-1"],
      ["10.77.0.4", "sfbr7-1"],
      ["10.77.0.5", "sfbr7-2"],
    ],
  );
  for (const k of [1, 2]) {
    t.is(await master(ns, `sfbr7-${k}u`), "sfbr7", `overflow ${k}'s uplink is on the pod bridge`);
    t.is(await master(ns, `sfbr7-${k}d`), `sfbr7-${k}`, `overflow ${k}'s downlink is on its bridge`);
    t.regex((await run("ip", ["-n", ns, "-o", "link", "show", `sfbr7-${k}`])).stdout, /state UP/);
  }

  // A "guest" on overflow bridge 1 (a veth whose far end is in another namespace, joined the way a
  // vif is) reaches dom0's gateway address, which lives on the pod bridge.
  await run("ip", [
    "-n",
    ns,
    "link",
    "add",
    "vif9.0",
    "type",
    "veth",
    "peer",
    "name",
    "eth0",
    "netns",
    guest,
  ]);
  await inNs(ns, dataDir, 2, `nl.attachToBridge("vif9.0", "sfbr7-1");`);
  await run("ip", ["-n", guest, "addr", "add", "10.77.0.3/24", "dev", "eth0"]);
  await run("ip", ["-n", guest, "link", "set", "eth0", "up"]);
  // dom0 listens on the gateway address; the guest connects (TCP: no ping on every host).
  const server = spawn(
    "ip",
    [
      "netns",
      "exec",
      ns,
      process.execPath,
      "-e",
      `require("net").createServer((s) => s.end("across\\n")).listen(7777, "10.77.0.1", () => console.log("listening"))`,
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  t.teardown(() => void server.kill());
  await new Promise((resolve) => server.stdout.once("data", resolve));
  const client = `const s = require("net").connect(7777, "10.77.0.1"); s.setTimeout(5000, () => { console.log("timeout"); process.exit(1); }); s.on("data", (d) => { process.stdout.write(d); process.exit(0); });`;
  const answer = await run("ip", ["netns", "exec", guest, process.execPath, "-e", client]).then(
    (r) => r.stdout,
    (e: { stdout?: string }) => `failed: ${e.stdout ?? ""}`,
  );
  t.is(answer.trim(), "across", "dom0's gateway address answers across the chain");

  // A second process: the same sandbox keeps its address and bridge, the chain is left as it is.
  const again = (await inNs(
    ns,
    dataDir,
    2,
    `
    out.net = await net.setUp("a3" + "0".repeat(62));
    out.next = await net.setUp("a5" + "0".repeat(62));
  `,
  )) as { net: { ip: string; bridge: string }; next: { ip: string; bridge: string } };
  t.deepEqual([again.net.ip, again.net.bridge], ["10.77.0.4", "sfbr7-1"]);
  t.deepEqual([again.next.ip, again.next.bridge], ["10.77.0.6", "sfbr7-2"]);
  t.is(await master(ns, "sfbr7-1u"), "sfbr7");
});

test("an address past the last overflow bridge is refused, and its lease given back", async (t) => {
  const ns = `sf-ovx-${randomBytes(3).toString("hex")}`;
  const dataDir = mkdtempSync(join(tmpdir(), "sf-ovx-"));
  t.teardown(async () => {
    await run("ip", ["netns", "del", ns]).catch(() => undefined);
    rmSync(dataDir, { recursive: true, force: true });
  });
  await run("ip", ["netns", "add", ns]);
  // One guest per bridge: ordinals 1..20 fit (the pod bridge has only the gateway's ordinal 0),
  // ordinal 21 (10.77.0.22) would need a 21st overflow bridge.
  const out = (await inNs(
    ns,
    dataDir,
    1,
    `
    for (let i = 1; i <= 20; i++) await net.setUp("a" + String(i).padStart(63, "0"));
    try { await net.setUp("b" + "0".repeat(63)); } catch (e) { out.code = e.code; out.message = e.message; }
  `,
  )) as { code: string; message: string };
  t.is(out.code, "ResourceExhausted");
  t.regex(out.message, /no bridge port for 10\.77\.0\.22: .*at most 20/);
  const leases = readdirSync(join(dataDir, "superfluid")).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f));
  t.is(leases.length, 20, "the refused sandbox holds no address");
  t.false(leases.includes("10.77.0.22"));
});

test("an overflow bridge that cannot be made fails the sandbox with the reason, and its lease is given back", async (t) => {
  const ns = `sf-ovm-${randomBytes(3).toString("hex")}`;
  const dataDir = mkdtempSync(join(tmpdir(), "sf-ovm-"));
  t.teardown(async () => {
    await run("ip", ["netns", "del", ns]).catch(() => undefined);
    rmSync(dataDir, { recursive: true, force: true });
  });
  await run("ip", ["netns", "add", ns]);
  // Something else already holds the first overflow bridge's name, and it is no bridge.
  await run("ip", ["-n", ns, "link", "add", "sfbr7-1", "type", "veth", "peer", "name", "other0"]);
  const out = (await inNs(
    ns,
    dataDir,
    2,
    `
    out.first = (await net.setUp("c1" + "0".repeat(62))).bridge;
    try { await net.setUp("c2" + "0".repeat(62)); } catch (e) { out.code = e.code; out.message = e.message; }
  `,
  )) as { first: string; code: string; message: string };
  t.is(out.first, "sfbr7", "10.77.0.2 stays on the pod bridge");
  t.is(out.code, "Internal");
  t.regex(out.message, /overflow bridge for 10\.77\.0\.3: .*sfbr7-1/);
  const leases = readdirSync(join(dataDir, "superfluid")).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f));
  t.deepEqual(leases, ["10.77.0.2"], "the failed sandbox holds no address");
});
