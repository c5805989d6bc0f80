// readdress.ts for real, inside network namespaces this test creates (nothing touches the host's own
// network). "dom0" has the pod bridge with the target node's gateway, strict rp_filter and the
// kernel's default br_netfilter setting; "guest" is a veth on that bridge configured as a migrated
// guest (the source node's address and gateway); "pod" is another pod on the same bridge; "client" is
// a host routed through dom0 (another node). dom0 also carries a Service's DNAT exactly like
// kube-proxy's (nat OUTPUT for dom0's own connections, nat PREROUTING for the others), whose endpoint
// is the pod IP. Everyone reaches the guest through the pod IP and the ClusterIP, the guest's own
// connections leave with the pod IP, and removal leaves nothing.
import test from "ava";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
/** By full path: under npm, node_modules/.bin/nft is @vercel/nft (an ava dependency), not nftables. */
const NFT = "/usr/sbin/nft";
const MODULE = fileURLToPath(new URL("./readdress.js", import.meta.url));
const POD_IP = "10.244.2.5";
const GUEST_IP = "10.244.1.5";
const GUEST_GW = "10.244.1.1";
const NEIGHBOUR_POD_IP = "10.244.2.7";
const CLIENT_IP = "192.168.77.2";
const CLUSTER_IP = "10.96.0.10";
const SANDBOX = "a".repeat(64);
const TABLE = `sf-readdress-${SANDBOX.slice(0, 12)}`;

async function sh(cmd: string): Promise<string> {
  return (await run("sh", ["-c", cmd], { timeout: 30_000 })).stdout.trim();
}

const quoted = (cmd: string) => `'${cmd.replace(/'/g, `'\\''`)}'`;

test("a received guest answers on the pod IP and the ClusterIP from everywhere (dom0 itself too), leaves with the pod IP; removal leaves nothing", async (t) => {
  const id = randomBytes(3).toString("hex");
  const ns = { dom0: `sf-ra-d-${id}`, guest: `sf-ra-g-${id}`, pod: `sf-ra-p-${id}`, client: `sf-ra-c-${id}` };
  const inNs = (name: string) => (cmd: string) => sh(`ip netns exec ${name} sh -c ${quoted(cmd)}`);
  const inDom0 = inNs(ns.dom0);
  const inGuest = inNs(ns.guest);
  const inPod = inNs(ns.pod);
  const inClient = inNs(ns.client);
  const servers: string[] = [];
  t.teardown(async () => {
    for (const pid of servers) await sh(`kill ${pid} 2>/dev/null || true`);
    for (const name of Object.values(ns)) await sh(`ip netns del ${name} 2>/dev/null; true`);
  });
  for (const name of Object.values(ns)) await sh(`ip netns add ${name} && ip -n ${name} link set lo up`);
  await inDom0(
    "sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=1 net.ipv4.conf.default.rp_filter=1 && " +
      "ip link add br0 type bridge && ip addr add 10.244.2.1/24 dev br0 && ip link set br0 up",
  );
  // One veth per other namespace: "<x>d" is dom0's end.
  for (const [name, short] of [
    [ns.guest, "g"],
    [ns.pod, "p"],
    [ns.client, "c"],
  ] as const)
    await sh(
      `ip link add v${short}-${id} type veth peer name v${short}d-${id} && ip link set v${short}-${id} netns ${name} && ip link set v${short}d-${id} netns ${ns.dom0}`,
    );
  await inDom0(
    `ip link set vgd-${id} master br0 up && ip link set vpd-${id} master br0 up && ` +
      `ip addr add 192.168.77.1/24 dev vcd-${id} && ip link set vcd-${id} up && ip route add default via ${CLIENT_IP}`,
  );
  await inGuest(
    `ip addr add ${GUEST_IP}/24 dev vg-${id} && ip link set vg-${id} up && ip route add default via ${GUEST_GW}`,
  );
  await inPod(
    `ip addr add ${NEIGHBOUR_POD_IP}/24 dev vp-${id} && ip link set vp-${id} up && ip route add default via 10.244.2.1`,
  );
  await inClient(
    `ip addr add ${CLIENT_IP}/24 dev vc-${id} && ip link set vc-${id} up && ip route add default via 192.168.77.1`,
  );
  // The Service, as kube-proxy writes it: ClusterIP:80 -> pod IP:8080.
  for (const chain of ["OUTPUT", "PREROUTING"])
    await inDom0(
      `iptables -w -t nat -A ${chain} -d ${CLUSTER_IP}/32 -p tcp --dport 80 -j DNAT --to-destination ${POD_IP}:8080`,
    );
  const guestMac = await inGuest(`cat /sys/class/net/vg-${id}/address`);
  // With br_netfilter on, bridged frames meet conntrack before dom0's own stack does: the case that
  // rules out a translation on the bridge device's ingress (tc, netdev hook).
  t.log(
    `bridge-nf-call-iptables in dom0: ${await inDom0("cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null || echo absent")}`,
  );

  const readdress = (fn: string, args: string) =>
    inDom0(
      `${process.execPath} --input-type=module -e "const m = await import(\\"${MODULE}\\"); await m.${fn}(${args.replace(/"/g, '\\"')});"`,
    );
  const apply = () =>
    readdress(
      "applyReaddressing",
      `"${SANDBOX}", { podIp: "${POD_IP}", guestIp: "${GUEST_IP}", guestGateway: "${GUEST_GW}", guestMac: "${guestMac}", bridge: "br0" }`,
    );
  await apply();
  const tables = () => inDom0(`${NFT} list tables bridge | grep -c sf-readdress- || true`);
  t.is(await tables(), "1", "one table for the sandbox");

  // The guest's server on the address it booted with tells who connected; so does the client's.
  servers.push(
    await inGuest(
      `socat TCP-LISTEN:8080,bind=${GUEST_IP},fork,reuseaddr SYSTEM:"echo guest-sees \\$SOCAT_PEERADDR" >/dev/null 2>&1 & echo $!`,
    ),
  );
  servers.push(
    await inClient(
      `socat TCP-LISTEN:9090,bind=${CLIENT_IP},fork,reuseaddr SYSTEM:"echo client-sees \\$SOCAT_PEERADDR" >/dev/null 2>&1 & echo $!`,
    ),
  );
  for (const [inServer, port] of [
    [inGuest, 8080],
    [inClient, 9090],
  ] as const) {
    for (let i = 0; !(await inServer(`ss -Hltn "sport = :${port}"`)); i++) {
      if (i > 100) throw new Error(`socat on :${port} never listened`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const get = (inClientNs: (cmd: string) => Promise<string>, to: string) =>
    inClientNs(`socat -T 5 - TCP:${to},connect-timeout=5 </dev/null`).catch((err: unknown) => String(err));

  t.is(await get(inClient, `${POD_IP}:8080`), `guest-sees ${CLIENT_IP}`, "another node -> pod IP");
  t.is(await get(inClient, `${CLUSTER_IP}:80`), `guest-sees ${CLIENT_IP}`, "another node -> ClusterIP");
  t.is(await get(inDom0, `${POD_IP}:8080`), "guest-sees 10.244.2.1", "dom0 -> pod IP");
  t.is(
    await get(inDom0, `${CLUSTER_IP}:80`),
    "guest-sees 192.168.77.1",
    "dom0 itself -> ClusterIP (kube-proxy's DNAT in nat OUTPUT)",
  );
  t.is(
    await get(inPod, `${POD_IP}:8080`),
    `guest-sees ${NEIGHBOUR_POD_IP}`,
    "a pod on the same bridge -> pod IP",
  );
  t.is(
    await get(inGuest, `${CLIENT_IP}:9090`),
    `client-sees ${POD_IP}`,
    "the guest's own connection leaves with the pod IP",
  );

  // Idempotent: applying again replaces the table instead of adding one.
  const rules = await inDom0(`${NFT} list table bridge ${TABLE}`);
  await apply();
  t.is(await tables(), "1");
  t.is(await inDom0(`${NFT} list table bridge ${TABLE}`), rules, "the same rules after a second apply");
  t.is(await get(inDom0, `${CLUSTER_IP}:80`), "guest-sees 192.168.77.1", "and it still works");

  await readdress("removeReaddressing", `"${SANDBOX}"`);
  t.is(await tables(), "0", "no table left");
  t.is(await inDom0(`ip neigh show ${POD_IP} dev br0`), "", "no neighbour entry for the pod IP left");
  t.notRegex(
    await inDom0("ip -o addr show dev br0"),
    new RegExp(`${GUEST_GW}/32`),
    "no gateway address left",
  );
  t.is(await inDom0(`ip -o route show ${GUEST_IP}/32`), "", "no host route");
  t.not(
    await get(inClient, `${POD_IP}:8080`),
    `guest-sees ${CLIENT_IP}`,
    "the pod IP no longer reaches the guest",
  );
  await readdress("removeReaddressing", `"${SANDBOX}"`); // a second removal is a no-op
  t.is(await tables(), "0");
});

test("bad input: a non-address, MAC, bridge or sandbox id is refused before anything changes", async (t) => {
  const { applyReaddressing } = await import("./readdress.js");
  const good = {
    podIp: POD_IP,
    guestIp: GUEST_IP,
    guestGateway: GUEST_GW,
    guestMac: "00:16:3e:00:00:01",
    bridge: "br0",
  };
  const before = await sh(`${NFT} list tables bridge 2>/dev/null | grep -c sf-readdress-b || true`);
  await t.throwsAsync(applyReaddressing("b".repeat(64), { ...good, podIp: "10.0.0.1; reboot" }), {
    message: /podIp: not an IPv4 address/,
  });
  await t.throwsAsync(applyReaddressing("b".repeat(64), { ...good, guestMac: "00:16:3e:00:00:01 }" }), {
    message: /guestMac: not a MAC address/,
  });
  await t.throwsAsync(applyReaddressing("b".repeat(64), { ...good, bridge: "br0 up" }), {
    message: /not an interface name/,
  });
  await t.throwsAsync(applyReaddressing("x; flush ruleset", good), {
    message: /does not start with a name-safe prefix/,
  });
  t.is(
    await sh(`${NFT} list tables bridge 2>/dev/null | grep -c sf-readdress-b || true`),
    before,
    "no table made",
  );
});
