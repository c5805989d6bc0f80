// The http guest on an emulated Xen node: `xl create` with a vif on the node's pod bridge, the guest
// configures its IP from the kernel command line, prints its ready line on the Xen console and
// answers HTTP from dom0; `xl shutdown` powers it off; a bad command line makes it power itself off.
// (busybox wget without -T: Debian's static busybox 1.35 segfaults with it; exec's timeout bounds it.)
import test, { type ExecutionContext } from "ava";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { startXenNode, type XenNode } from "../xen-node/index.js";
import {
  HTTP_GUEST_DEFAULT_MEMORY_MIB,
  ensureHttpGuestImage,
  httpGuestCmdline,
  httpGuestXlConfig,
  parseFatalLine,
  parseReadyLine,
  type HttpGuestStatus,
} from "./http-guest.js";

let node: XenNode | undefined;

test.before(async () => {
  await ensureHttpGuestImage();
  node = await startXenNode({ name: "http-guest" });
});
test.after.always(async () => {
  await node?.stop();
});

function theNode(): XenNode {
  if (!node) throw new Error("the Xen node did not start");
  return node;
}

async function dom0(cmd: string, timeoutMs = 120_000): Promise<string> {
  const r = await theNode().exec(cmd, { timeoutMs });
  if (r.code !== 0) throw new Error(`dom0: '${cmd}' exited ${r.code}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

const consoleLog = (domain: string): Promise<string> =>
  dom0(`cat /var/log/xen/console/guest-${domain}.log 2>/dev/null || true`);
const domainExists = async (domain: string): Promise<boolean> =>
  (await theNode().exec(`xl domid ${domain}`)).code === 0;

/** Writes the config to the share and runs `xl create`; returns how long xl took. */
async function create(domain: string, cmdline: string, guestType: "pv" | "pvh" = "pv"): Promise<number> {
  const n = theNode();
  writeFileSync(
    join(n.hostDir, `${domain}.cfg`),
    httpGuestXlConfig({ name: domain, cmdline, bridge: n.bridge, guestType }),
  );
  const started = Date.now();
  // Domain build alone (decompressing the bzImage in xl) takes 15-50 s under emulation on a busy host.
  await dom0(`xl create ${n.dom0HostDir}/${domain}.cfg`, 300_000);
  return Date.now() - started;
}

async function poll<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = await probe();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(500);
  }
}

/** The pod-bridge address .<host> for `domain`, its command line (port 8080), and its destroy at the end. */
function guestOnPodBridge(
  t: ExecutionContext,
  domain: string,
  host: number,
  appArgs: string[],
): { ip: string; cmdline: string } {
  const n = theNode();
  const [net, prefix] = n.podCidr.split("/");
  const ip = net!.replace(/\.0$/, `.${host}`);
  t.teardown(async () => {
    if (node && (await domainExists(domain))) await node.exec(`xl destroy ${domain}`);
  });
  return {
    ip,
    cmdline: httpGuestCmdline({
      ip: `${ip}/${prefix}`,
      gateway: n.dom0Ip,
      port: 8080,
      hostname: domain,
      appArgs,
    }),
  };
}

test.serial(
  "the guest boots with xl create, gets its IP on the pod bridge and answers HTTP from dom0",
  async (t) => {
    const n = theNode();
    const domain = "http-a";
    const { ip, cmdline } = guestOnPodBridge(t, domain, 10, ["mode=demo"]);
    const started = Date.now();
    const createMs = await create(domain, cmdline);

    const ready = await poll("the ready line", 240_000, async () => parseReadyLine(await consoleLog(domain)));
    const readyWallMs = Date.now() - started;
    t.deepEqual([ready.ip, ready.port], [ip, 8080]);

    const health = await dom0(`busybox wget -q -O - http://${ip}:8080/healthz`);
    const answeredWallMs = Date.now() - started;
    t.is(health, "ok\n");
    const status = JSON.parse(await dom0(`busybox wget -q -O - http://${ip}:8080/`)) as HttpGuestStatus;
    t.is(status.hostname, domain);
    t.is(status.address, `${ip}:8080`);
    t.deepEqual(status.bootArgs, ["mode=demo"]);
    t.is(status.requests, 2);
    // The address really is the guest's: dom0 resolved it to the guest vif's MAC on the bridge.
    t.regex(await dom0(`ip neigh show ${ip} dev ${n.bridge}`), /lladdr 00:16:3e:/);

    const list = await dom0(`xl list ${domain}`);
    t.regex(list, new RegExp(`^${domain}\\s+\\d+\\s+${HTTP_GUEST_DEFAULT_MEMORY_MIB}\\s+1\\s`, "m"));

    const shutdownStarted = Date.now();
    // -w returns once the guest has powered off (through /sbin/poweroff = its init); the xl process
    // that watches the domain then applies on_poweroff=destroy, a moment later.
    await dom0(`xl shutdown -w ${domain}`, 180_000);
    const shutdownMs = Date.now() - shutdownStarted;
    await poll("the domain to be destroyed", 60_000, async () =>
      (await domainExists(domain)) ? undefined : true,
    );
    t.false(await domainExists(domain));
    t.log(
      `memory ${HTTP_GUEST_DEFAULT_MEMORY_MIB} MiB; xl create ${createMs} ms; ready ${ready.bootMs} ms after kernel start ` +
        `(${readyWallMs} ms wall from xl create); first HTTP answer ${answeredWallMs} ms wall; xl shutdown -w ${shutdownMs} ms`,
    );
  },
);

test.serial("a bad ip= makes the guest print why and power itself off, leaving no domain", async (t) => {
  const domain = "http-bad";
  t.teardown(async () => {
    if (node && (await domainExists(domain))) await node.exec(`xl destroy ${domain}`);
  });
  await create(domain, "ip=10.244.1.300/24 port=8080");
  const fatal = await poll("the fatal line", 240_000, async () => parseFatalLine(await consoleLog(domain)));
  t.is(fatal, "bad ip='10.244.1.300/24': not an IPv4 address");
  await poll("the domain to go away", 60_000, async () => ((await domainExists(domain)) ? undefined : true));
  t.false(await domainExists(domain));
  t.is(parseReadyLine(await consoleLog(domain)), undefined);
});

test.serial("the same kernel boots as PVH (its PHYS32_ENTRY) and answers HTTP", async (t) => {
  const domain = "http-pvh";
  const { ip, cmdline } = guestOnPodBridge(t, domain, 12, []);
  const createMs = await create(domain, cmdline, "pvh");
  const ready = await poll("the PVH ready line", 240_000, async () =>
    parseReadyLine(await consoleLog(domain)),
  );
  t.is(ready.ip, ip);
  t.is(await dom0(`busybox wget -q -O - http://${ip}:8080/healthz`), "ok\n");
  t.regex(await dom0(`xl list -l ${domain}`), /"type": "pvh"/);
  t.log(`PVH: xl create ${createMs} ms; ready ${ready.bootMs} ms after kernel start`);
  await dom0(`xl destroy ${domain}`);
});
