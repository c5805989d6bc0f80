// readdress.ts for real, inside two network namespaces this test creates (nothing touches the host's
// own network): "dom0" has the pod bridge with the target node's gateway, "guest" is a veth on that
// bridge configured as a migrated guest (the source node's address and gateway). HTTP to the new pod
// IP reaches the guest, the guest's own connections leave with the pod IP, and removal leaves nothing.
import test from "ava";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
const MODULE = fileURLToPath(new URL("./readdress.js", import.meta.url));
const POD_IP = "10.244.2.5";
const GUEST_IP = "10.244.1.5";
const GUEST_GW = "10.244.1.1";

async function sh(cmd: string): Promise<string> {
  return (await run("sh", ["-c", cmd], { timeout: 30_000 })).stdout.trim();
}

test("a received guest answers on the target pod's IP and its connections leave with it; removal leaves nothing", async (t) => {
  const id = randomBytes(3).toString("hex");
  const dom0 = `sf-ra-d-${id}`;
  const guest = `sf-ra-g-${id}`;
  const inDom0 = (cmd: string) => sh(`ip netns exec ${dom0} sh -c '${cmd.replace(/'/g, `'\\''`)}'`);
  const inGuest = (cmd: string) => sh(`ip netns exec ${guest} sh -c '${cmd.replace(/'/g, `'\\''`)}'`);
  const servers: string[] = [];
  t.teardown(async () => {
    for (const pid of servers) await sh(`kill ${pid} 2>/dev/null || true`);
    await sh(`ip netns del ${dom0} 2>/dev/null; ip netns del ${guest} 2>/dev/null; true`);
  });
  await sh(`ip netns add ${dom0} && ip netns add ${guest}`);
  await inDom0(
    "ip link set lo up && ip link add br0 type bridge && ip addr add 10.244.2.1/24 dev br0 && ip link set br0 up",
  );
  await sh(
    `ip link add vg-${id} type veth peer name vd-${id} && ip link set vg-${id} netns ${guest} && ip link set vd-${id} netns ${dom0}`,
  );
  await inDom0(`ip link set vd-${id} master br0 && ip link set vd-${id} up`);
  await inGuest(
    `ip link set lo up && ip link set vg-${id} name eth0 && ip addr add ${GUEST_IP}/24 dev eth0 && ip link set eth0 up && ip route add default via ${GUEST_GW}`,
  );

  const readdress = (fn: string, args: string) =>
    inDom0(
      `${process.execPath} --input-type=module -e "const m = await import(\\"${MODULE}\\"); await m.${fn}(${args.replace(/"/g, '\\"')});"`,
    );
  await readdress(
    "applyReaddressing",
    `"${"a".repeat(64)}", { podIp: "${POD_IP}", guestIp: "${GUEST_IP}", guestGateway: "${GUEST_GW}", bridge: "br0" }`,
  );
  const rules = await inDom0("iptables -w -t nat -S | grep sf-readdress: || true");
  t.is(rules.split("\n").length, 4, rules);

  // A server in the guest on the address it booted with; dom0 asks the pod IP.
  servers.push(
    await inGuest(
      `socat TCP-LISTEN:8080,bind=${GUEST_IP},fork,reuseaddr SYSTEM:"echo guest-here" >/dev/null 2>&1 & echo $!`,
    ),
  );
  // A server in dom0 that tells who connected; the guest connects to its gateway's side.
  servers.push(
    await inDom0(
      `socat TCP-LISTEN:9090,bind=10.244.2.1,fork,reuseaddr SYSTEM:"echo \\$SOCAT_PEERADDR" >/dev/null 2>&1 & echo $!`,
    ),
  );
  // Both servers listening before anyone connects (a fixed sleep lost this race on a loaded machine).
  for (const [inNs, port] of [
    [inGuest, 8080],
    [inDom0, 9090],
  ] as const) {
    for (let i = 0; !(await inNs(`ss -Hltn "sport = :${port}"`)); i++) {
      if (i > 100) throw new Error(`socat on :${port} never listened`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  t.is(
    await inDom0(`socat -T 5 - TCP:${POD_IP}:8080,connect-timeout=5 </dev/null`),
    "guest-here",
    "the pod IP reaches the guest",
  );
  t.is(
    await inGuest(`socat -T 5 - TCP:10.244.2.1:9090,connect-timeout=5 </dev/null`),
    POD_IP,
    "the guest's connection leaves with the pod IP",
  );

  // Idempotent: applying again does not stack rules.
  await readdress(
    "applyReaddressing",
    `"${"a".repeat(64)}", { podIp: "${POD_IP}", guestIp: "${GUEST_IP}", guestGateway: "${GUEST_GW}", bridge: "br0" }`,
  );
  t.is(await inDom0("iptables -w -t nat -S | grep -c sf-readdress: || true"), "4");

  await readdress("removeReaddressing", `"${"a".repeat(64)}"`);
  t.is(await inDom0("iptables -w -t nat -S | grep -c sf-readdress: || true"), "0", "no NAT rule left");
  t.is(await inDom0(`ip -o route show ${GUEST_IP}/32`), "", "no host route left");
  t.notRegex(
    await inDom0("ip -o addr show dev br0"),
    new RegExp(`${GUEST_GW}/32`),
    "no gateway address left",
  );
  t.is(await inDom0("ip neigh show proxy"), "", "no proxy ARP entry left");
  await readdress("removeReaddressing", `"${"a".repeat(64)}"`); // a second removal is a no-op
});

test("bad input: a non-address is refused before anything changes", async (t) => {
  const { applyReaddressing } = await import("./readdress.js");
  await t.throwsAsync(
    applyReaddressing("b".repeat(64), {
      podIp: "10.0.0.1; reboot",
      guestIp: GUEST_IP,
      guestGateway: GUEST_GW,
      bridge: "br0",
    }),
    { message: /podIp: not an IPv4 address/ },
  );
  await t.throwsAsync(
    applyReaddressing("b".repeat(64), {
      podIp: POD_IP,
      guestIp: GUEST_IP,
      guestGateway: GUEST_GW,
      bridge: "br0 up",
    }),
    { message: /not an interface name/ },
  );
});
