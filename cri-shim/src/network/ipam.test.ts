// The in-process IPAM: its pure allocation rules in tables, then the real thing on a temporary lease
// directory (host-local's layout), including two processes allocating at once and a kill -9 in the
// middle of allocating.
import test from "ava";
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  Ipam,
  IpamError,
  intToIp,
  ipToInt,
  leaseOwner,
  nextFree,
  rangesOf,
  spanOf,
  type IpRange,
} from "./ipam.js";

const MODULE = fileURLToPath(new URL("./ipam.js", import.meta.url));

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), "sf-ipam-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const n = (ip: string) => ipToInt(ip)!;

test("spanOf: usable addresses, gateway and prefix of a range", (t) => {
  const cases: [IpRange, string, string, string, number][] = [
    [{ subnet: "10.89.0.0/24" }, "10.89.0.1", "10.89.0.254", "10.89.0.1", 24],
    [{ subnet: "10.89.0.77/24" }, "10.89.0.1", "10.89.0.254", "10.89.0.1", 24],
    [{ subnet: "10.0.0.0/30" }, "10.0.0.1", "10.0.0.2", "10.0.0.1", 30],
    [
      {
        subnet: "192.168.0.0/16",
        rangeStart: "192.168.1.10",
        rangeEnd: "192.168.1.20",
        gateway: "192.168.0.1",
      },
      "192.168.1.10",
      "192.168.1.20",
      "192.168.0.1",
      16,
    ],
  ];
  for (const [range, first, last, gateway, prefix] of cases)
    t.deepEqual(spanOf(range), { first: n(first), last: n(last), gateway: n(gateway), prefix }, range.subnet);
});

test("spanOf: bad ranges are config errors", (t) => {
  const bad: [IpRange, RegExp][] = [
    [{ subnet: "10.89.0.0" }, /expected IPv4/],
    [{ subnet: "10.89.0.0/31" }, /expected IPv4/],
    [{ subnet: "fd00::/64" }, /expected IPv4/],
    [{ subnet: "10.89.0.300/24" }, /expected IPv4/],
    [{ subnet: "10.89.0.0/24", rangeStart: "10.89.1.5" }, /rangeStart .* not a host address/],
    [{ subnet: "10.89.0.0/24", rangeEnd: "10.89.0.255" }, /rangeEnd .* not a host address/],
    [{ subnet: "10.89.0.0/24", gateway: "10.89.0.0" }, /gateway .* not a host address/],
    [{ subnet: "10.89.0.0/24", rangeStart: "10.89.0.9", rangeEnd: "10.89.0.8" }, /after rangeEnd/],
  ];
  for (const [range, message] of bad) {
    const err = t.throws(() => spanOf(range), { instanceOf: IpamError, message }, JSON.stringify(range));
    t.is(err?.code, "config");
  }
});

test("rangesOf: host-local's ranges and its legacy flat form; IPv6 ranges are skipped", (t) => {
  t.deepEqual(
    rangesOf({ ranges: [[{ subnet: "10.1.0.0/24" }, { subnet: "fd00::/64" }], [{ subnet: "10.2.0.0/24" }]] }),
    [{ subnet: "10.1.0.0/24" }],
  );
  t.deepEqual(rangesOf({ subnet: "10.3.0.0/24", gateway: "10.3.0.254" }), [
    { subnet: "10.3.0.0/24", rangeStart: undefined, rangeEnd: undefined, gateway: "10.3.0.254" },
  ]);
  t.deepEqual(rangesOf({ type: "host-local" }), []);
});

test("nextFree: round robin after the last reservation, skipping the gateway and taken addresses, across ranges", (t) => {
  const spans = [spanOf({ subnet: "10.0.0.0/29" }), spanOf({ subnet: "10.0.1.0/30" })];
  // .1 is each range's gateway: free addresses are 10.0.0.2-6 and 10.0.1.2.
  const cases: [string | undefined, string[], string | undefined][] = [
    [undefined, [], "10.0.0.2"],
    ["10.0.0.2", [], "10.0.0.3"],
    ["10.0.0.5", ["10.0.0.6"], "10.0.1.2"],
    ["10.0.1.2", [], "10.0.0.2"], // wraps to the first range
    ["10.9.9.9", [], "10.0.0.2"], // a last reservation outside every range starts over
    ["10.0.0.3", ["10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.1.2", "10.0.0.2"], "10.0.0.3"], // only itself left
    [undefined, ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.1.2"], undefined],
  ];
  for (const [after, taken, want] of cases) {
    const got = nextFree(spans, new Set(taken.map(n)), after === undefined ? undefined : n(after));
    t.is(got === undefined ? undefined : intToIp(got), want, `after ${after} with ${taken.join(",")}`);
  }
  t.is(nextFree([], new Set()), undefined);
});

test("leaseOwner: host-local's current and legacy lease contents", (t) => {
  t.is(leaseOwner("abc\r\neth0"), "abc");
  t.is(leaseOwner("abc"), "abc");
  t.is(leaseOwner("abc\n"), "abc");
});

test("allocate/release on disk: host-local's layout, gateway excluded, same id same address, idempotent release, exhaustion", async (t) => {
  const dataDir = tempDir(t);
  const ipam = new Ipam({ network: "net1", dataDir, ranges: [{ subnet: "10.5.0.0/29" }] });
  t.deepEqual(ipam.gateway, { gateway: "10.5.0.1", prefixLength: 29 });
  const a = await ipam.allocate("sandbox-a");
  t.deepEqual(a, { ip: "10.5.0.2", prefixLength: 29, gateway: "10.5.0.1" });
  t.is(readFileSync(join(dataDir, "net1", "10.5.0.2"), "utf8"), "sandbox-a\r\neth0", "host-local's file");
  t.is(readFileSync(join(dataDir, "net1", "last_reserved_ip.0"), "utf8"), "10.5.0.2");
  t.deepEqual(await ipam.allocate("sandbox-a"), a, "the same id keeps its address");
  const ips = [a.ip];
  for (const id of ["b", "c", "d", "e"]) ips.push((await ipam.allocate(id)).ip);
  t.deepEqual(ips, ["10.5.0.2", "10.5.0.3", "10.5.0.4", "10.5.0.5", "10.5.0.6"]);
  const full = await t.throwsAsync(ipam.allocate("f"), {
    instanceOf: IpamError,
    message: /no IP addresses available/,
  });
  t.is(full?.code, "exhausted");
  t.is(await ipam.release("c"), 1);
  t.is(await ipam.release("c"), 0, "a second release is a no-op");
  t.is(await ipam.release("never-seen"), 0);
  t.is((await ipam.allocate("f")).ip, "10.5.0.4", "the freed address is reused");
  t.deepEqual(
    readdirSync(join(dataDir, "net1")).sort(),
    ["10.5.0.2", "10.5.0.3", "10.5.0.4", "10.5.0.5", "10.5.0.6", "last_reserved_ip.0"],
    "nothing else in the directory (no temporary files)",
  );
  await t.throwsAsync(ipam.allocate("../etc"), { instanceOf: IpamError, message: /not a valid id/ });
  t.throws(() => new Ipam({ network: "../x", dataDir, ranges: [{ subnet: "10.0.0.0/24" }] }), {
    message: /not a safe directory name/,
  });
  t.throws(() => new Ipam({ network: "x", dataDir, ranges: [] }), { message: /no IPv4 range/ });
});

test("an upgrade from the host-local plugin: its leases (both file formats) are kept, its last reservation continues", async (t) => {
  const dataDir = tempDir(t);
  const dir = join(dataDir, "superfluid");
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "10.89.0.2"), "old-legacy");
  writeFileSync(join(dir, "10.89.0.3"), "old-current\r\neth0");
  writeFileSync(join(dir, "last_reserved_ip.0"), "10.89.0.7");
  writeFileSync(join(dir, "lock"), "");
  writeFileSync(join(dir, ".lease-999999999-deadbeef"), "half"); // what a crash mid-write leaves
  const ipam = new Ipam({ network: "superfluid", dataDir, ranges: [{ subnet: "10.89.0.0/24" }] });
  t.deepEqual([...(await ipam.leases())].sort(), [
    ["10.89.0.2", "old-legacy"],
    ["10.89.0.3", "old-current"],
  ]);
  t.is(
    (await ipam.allocate("old-current")).ip,
    "10.89.0.3",
    "a sandbox from before the upgrade keeps its address",
  );
  t.is(
    (await ipam.allocate("new")).ip,
    "10.89.0.8",
    "allocation continues after host-local's last reservation",
  );
  t.is(await ipam.release("old-legacy"), 1, "a legacy lease is released by its id");
  t.false(readdirSync(dir).includes(".lease-999999999-deadbeef"), "the crash leftover is gone");
  t.true(readdirSync(dir).includes("lock"), "host-local's lock file is left alone");
  t.deepEqual(await ipam.releaseUnowned(new Set(["new"])), ["10.89.0.3"]);
  t.deepEqual([...(await ipam.leases()).keys()], ["10.89.0.8"]);
});

test("concurrent allocations inside one process get distinct addresses", async (t) => {
  const ipam = new Ipam({ network: "n", dataDir: tempDir(t), ranges: [{ subnet: "10.6.0.0/24" }] });
  const ids = Array.from({ length: 60 }, (_, i) => `s${i}`);
  const leases = await Promise.all(ids.map((id) => ipam.allocate(id)));
  t.is(new Set(leases.map((l) => l.ip)).size, ids.length);
  await Promise.all(ids.map((id) => ipam.release(id)));
  t.is((await ipam.leases()).size, 0);
});

test("each lease file is read once while it exists, not at every allocation", async (t) => {
  const dataDir = tempDir(t);
  const ipam = new Ipam({ network: "n", dataDir, ranges: [{ subnet: "10.6.0.0/22" }] });
  for (let i = 0; i < 200; i++) await ipam.allocate(`s${i}`);
  // Before: every allocation read every lease (0 + 1 + ... + 199 = 19,900 reads).
  t.true(ipam.leaseReads <= 200, `${ipam.leaseReads} lease reads for 200 allocations`);
  // What the cache answers is what is on disk: the same id keeps its address, a released one is free.
  const again = await ipam.allocate("s7");
  t.is(readFileSync(join(dataDir, "n", again.ip), "utf8").split("\r\n")[0], "s7");
  t.is(await ipam.release("s7"), 1);
  t.false((await ipam.leases()).has(again.ip));
  // A lease another writer adds is read (once) and respected.
  const leases = await ipam.leases();
  const free = Array.from({ length: 1000 }, (_, i) => `10.6.${1 + (i >> 8)}.${i & 255}`).find(
    (ip) => !leases.has(ip) && !ip.endsWith(".0") && !ip.endsWith(".255"),
  )!;
  writeFileSync(join(dataDir, "n", free), "other\r\neth0");
  t.is((await ipam.leases()).get(free), "other");
});

/** A child process that allocates `count` leases with ids `<prefix>-<i>`, printing "id ip" per lease. */
function allocator(dataDir: string, prefix: string, count: number) {
  const script = `
    const { Ipam } = await import(${JSON.stringify(MODULE)});
    const ipam = new Ipam({ network: "n", dataDir: ${JSON.stringify(dataDir)}, ranges: [{ subnet: "10.7.0.0/22" }] });
    for (let i = 0; i < ${count}; i++) {
      const l = await ipam.allocate("${prefix}-" + i);
      process.stdout.write("${prefix}-" + i + " " + l.ip + "\\n");
    }`;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const lines: string[] = [];
  let buf = "";
  child.stdout.on("data", (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split("\n");
    buf = parts.pop()!;
    lines.push(...parts);
  });
  const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  return { child, lines, exited };
}

function leasesOnDisk(dataDir: string): Map<string, string> {
  const dir = join(dataDir, "n");
  return new Map(
    readdirSync(dir)
      .filter((f) => ipToInt(f) !== undefined)
      .map((f) => [f, readFileSync(join(dir, f), "utf8")] as const),
  );
}

test("two processes allocating in one directory never share an address", async (t) => {
  const dataDir = tempDir(t);
  const a = allocator(dataDir, "a", 80);
  const b = allocator(dataDir, "b", 80);
  t.deepEqual(await Promise.all([a.exited, b.exited]), [0, 0]);
  const all = [...a.lines, ...b.lines].map((l) => l.split(" ")[1]);
  t.is(all.length, 160);
  t.is(new Set(all).size, 160, "no address handed out twice");
  t.is(leasesOnDisk(dataDir).size, 160);
});

test("kill -9 in the middle of allocating: every lease on disk is whole, none is doubled, a restart continues cleanly", async (t) => {
  const dataDir = tempDir(t);
  const run = allocator(dataDir, "k", 1000);
  while (run.lines.length < 40) await new Promise((r) => setTimeout(r, 5));
  run.child.kill("SIGKILL");
  await run.exited;
  const reported = new Map(run.lines.map((l) => l.split(" ") as [string, string]));
  const disk = leasesOnDisk(dataDir);
  t.true(disk.size >= reported.size, "every lease reported before the kill is on disk");
  for (const [id, ip] of reported) t.is(disk.get(ip), `${id}\r\neth0`, `${id}'s lease`);
  for (const [ip, content] of disk) t.regex(content, /^k-\d+\r\neth0$/, `${ip} is a whole lease`);
  const owners = [...disk.values()];
  t.is(new Set(owners).size, owners.length, "no id holds two addresses");

  // The restarted shim: sandboxes it knows keep their addresses, new ones get free ones, and the
  // recovery's sweep releases the leases of sandboxes it has no record of.
  const ipam = new Ipam({ network: "n", dataDir, ranges: [{ subnet: "10.7.0.0/22" }] });
  const [someId, someIp] = [...reported][0]!;
  t.is((await ipam.allocate(someId)).ip, someIp);
  const fresh = await ipam.allocate("after-restart");
  t.false(disk.has(fresh.ip), "a new sandbox gets an address nobody holds");
  const known = new Set([someId, "after-restart"]);
  const released = await ipam.releaseUnowned(known);
  t.is(released.length, disk.size - 1);
  t.deepEqual([...(await ipam.leases()).values()].sort(), [...known].sort());
  t.deepEqual(
    readdirSync(join(dataDir, "n")).filter((f) => f.startsWith(".")),
    [],
    "no temporary file left after a pass over the directory",
  );
});

test("interchangeable with Debian's host-local plugin: each sees and releases the other's leases", async (t) => {
  const plugin = "/usr/lib/cni/host-local";
  const dataDir = tempDir(t);
  const conf = JSON.stringify({
    cniVersion: "1.0.0",
    name: "n",
    type: "bridge",
    ipam: { type: "host-local", ranges: [[{ subnet: "10.8.0.0/29" }]], dataDir },
  });
  const hostLocal = (command: "ADD" | "DEL", id: string) =>
    new Promise<string>((resolve, reject) => {
      const child = spawn(plugin, [], {
        env: {
          CNI_COMMAND: command,
          CNI_CONTAINERID: id,
          CNI_NETNS: "/nonexistent",
          CNI_IFNAME: "eth0",
          CNI_PATH: "/usr/lib/cni",
        },
      });
      let out = "";
      child.stdout.on("data", (d: Buffer) => (out += d.toString()));
      child.on("error", reject);
      child.on("close", (code) =>
        code === 0 ? resolve(out) : reject(new Error(`host-local ${command}: ${out}`)),
      );
      child.stdin.end(conf);
    });
  const ipam = new Ipam({ network: "n", dataDir, ranges: [{ subnet: "10.8.0.0/29" }] });
  const theirs = (JSON.parse(await hostLocal("ADD", "from-plugin")) as { ips: { address: string }[] }).ips[0]!
    .address;
  t.deepEqual(
    [...(await ipam.leases())],
    [[theirs.split("/")[0], "from-plugin"]],
    "we read the plugin's lease",
  );
  const ours = await ipam.allocate("from-shim");
  t.not(`${ours.ip}/29`, theirs);
  const next = (JSON.parse(await hostLocal("ADD", "plugin-2")) as { ips: { address: string }[] }).ips[0]!
    .address;
  t.false([theirs, `${ours.ip}/29`].includes(next), "the plugin skips our lease");
  await hostLocal("DEL", "from-shim");
  t.false((await ipam.leases()).has(ours.ip), "the plugin releases our lease");
  t.is(await ipam.release("from-plugin"), 1, "we release the plugin's");
});

test("allocations choose from memory; a name another writer took since is noticed at the link and skipped", async (t) => {
  const dataDir = tempDir(t);
  const ipam = new Ipam({ network: "n", dataDir, ranges: [{ subnet: "10.8.0.0/29" }] });
  t.is((await ipam.allocate("a")).ip, "10.8.0.2");
  // Behind this process's back: the next address in round-robin order is taken on disk.
  writeFileSync(join(dataDir, "n", "10.8.0.3"), "stranger\r\neth0");
  t.is((await ipam.allocate("b")).ip, "10.8.0.4", "the taken name is skipped, not shared");
  t.is(
    readFileSync(join(dataDir, "n", "10.8.0.3"), "utf8"),
    "stranger\r\neth0",
    "the stranger's lease is intact",
  );
  t.is((await ipam.leases()).get("10.8.0.3"), "stranger");
  // 20 at once on a /27: all distinct, all on disk, no temporary file left.
  const big = new Ipam({ network: "m", dataDir, ranges: [{ subnet: "10.9.0.0/27" }] });
  const leases = await Promise.all(Array.from({ length: 20 }, (_, i) => big.allocate(`s${i}`)));
  t.is(new Set(leases.map((l) => l.ip)).size, 20);
  const files = readdirSync(join(dataDir, "m"));
  t.is(files.filter((f) => ipToInt(f) !== undefined).length, 20);
  t.false(
    files.some((f) => f.startsWith(".lease-")),
    `temporary files left: ${files.join(" ")}`,
  );
  // Chosen in order .2 to .21: the file holds the newest, written once or twice for the burst.
  t.is(readFileSync(join(dataDir, "m", "last_reserved_ip.0"), "utf8"), "10.9.0.21");
});
