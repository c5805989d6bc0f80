// The shim's default backend (lean) across restarts, in an emulated Xen node: a shim killed with
// SIGKILL comes back and adopts its domains from its store and XenStore (a running hello keeps
// counting into its CRI log, a created-but-not-started one whose vif the dead process never put on
// the bridge gets it attached and starts), the pool's shells the dead process left are destroyed and
// new ones made; a graceful stop leaves no shell; and `--hypervisor libxl` still runs a pod.
import test, { type ExecutionContext } from "ava";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { k8sBinary } from "../../lib/paths.js";
import { startRegistry, type TestRegistry } from "../../e2e/harness/registry.js";
import { pushExampleImages } from "../../e2e/cluster/images.js";
import { SHIM_SOCKET } from "../../e2e/cluster/kubelet.js";
import { startShim, type Shim } from "../../e2e/cluster/shim.js";
import { startXenNode, type XenNode } from "../../e2e/xen-node/index.js";
import { guestDomainsFromXl, XL_LIST_VERBOSE } from "../../e2e/xen-node/xl-domains.js";
import { SHELL_UUID_PREFIX } from "./hypervisor/xen-lean/sfxen-names.js";

const ctx = {} as { node: XenNode; registry: TestRegistry; shim: Shim; hello: string };
const CRICTL = `${k8sBinary("crictl")} --runtime-endpoint unix://${SHIM_SOCKET} --image-endpoint unix://${SHIM_SOCKET} --timeout 300s`;

async function sh(cmd: string, timeoutMs = 400_000): Promise<string> {
  const r = await ctx.node.exec(cmd, { timeoutMs });
  if (r.code !== 0)
    throw new Error(
      `dom0: ${cmd}\nexit ${r.code}\n${r.stderr}${r.stdout}\n--- shim log:\n${ctx.shim?.log(40)}`,
    );
  return r.stdout.trim();
}
const crictl = (args: string) => sh(`${CRICTL} ${args}`);

function podFiles(name: string): { pod: string; ctr: string } {
  const write = (f: string, v: unknown) => {
    writeFileSync(join(ctx.node.hostDir, f), JSON.stringify(v));
    return `${ctx.node.dom0HostDir}/${f}`;
  };
  return {
    pod: write(`pod-${name}.json`, {
      metadata: { name, namespace: "default", uid: `uid-${name}`, attempt: 0 },
      hostname: name,
      log_directory: `/var/log/pods/${name}`,
    }),
    ctr: write(`ctr-${name}.json`, {
      metadata: { name: "main" },
      image: { image: ctx.hello },
      log_path: "main/0.log",
    }),
  };
}

/** runp + create (+ start): the CRI ids. */
async function runHello(name: string, start: boolean): Promise<{ pod: string; ctr: string }> {
  const f = podFiles(name);
  const pod = await crictl(`runp ${f.pod}`);
  const ctr = await crictl(`create ${pod} ${f.ctr} ${f.pod}`);
  if (start) await crictl(`start ${ctr}`);
  return { pod, ctr };
}

async function waitFor(what: string, probe: () => Promise<boolean>, timeoutMs = 180_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe().catch(() => false))) {
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}\n--- shim log:\n${ctx.shim.log(40)}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}

const lastTick = (log: string) => Math.max(0, ...[...log.matchAll(/tick (\d+)/g)].map((m) => Number(m[1])));
const backendOf = (shim: Shim) => /"hypervisor":"([^"]+)"/.exec(shim.log(100_000))?.[1];
/** The backend a shim without --hypervisor runs: lean, unless the run's environment chose (see e2e/cluster/shim.ts). */
const DEFAULT_BACKEND = `xen-${process.env.SUPERFLUID_HYPERVISOR || "lean"}`;

/** Pool shells in `xl list -v`: their uuids. */
async function shells(): Promise<string[]> {
  const out = await sh(XL_LIST_VERBOSE);
  return out
    .split("\n")
    .map((l) => l.trim().split(/\s+/)[6] ?? "")
    .filter((u) => u.startsWith(SHELL_UUID_PREFIX))
    .sort();
}
const guests = async () =>
  guestDomainsFromXl(await sh(XL_LIST_VERBOSE))
    .map((d) => d.name)
    .sort();

function setupDone(t: ExecutionContext): void {
  t.timeout(1_200_000);
  if (!ctx.shim) throw new Error("setup failed; see the first test");
}

test.serial("setup: registry, an emulated Xen node, the shim with no --hypervisor flag", async (t) => {
  t.timeout(1_500_000);
  ctx.registry = await startRegistry();
  const pushed = await pushExampleImages(ctx.registry);
  ctx.node = await startXenNode({ name: "restart", memoryMiB: 2048, bootTimeoutMs: 1_200_000 });
  ctx.hello = pushed.hello!.hostRef.replace(
    ctx.registry.host,
    `${ctx.node.hostIpFromDom0}:${ctx.registry.port}`,
  );
  ctx.shim = await startShim(ctx.node, { args: shimArgs() });
  await crictl(`pull ${ctx.hello}`);
  t.is(backendOf(ctx.shim), DEFAULT_BACKEND, "lean is the default backend");
});

function shimArgs(extra: string[] = []): string[] {
  const n = ctx.node;
  return [
    "--bridge",
    n.bridge,
    "--pod-cidr",
    n.podCidr,
    "--plain-http-registries",
    n.hostIpFromDom0,
    ...extra,
  ];
}

test.after.always(async () => {
  await ctx.shim?.stop();
  await ctx.node?.stop();
  await ctx.registry?.stop();
});

test.serial(
  "kill -9 of a lean shim: the restarted shim adopts a running and a created domain, re-attaches a vif, and replaces the dead process's shells",
  async (t) => {
    setupDone(t);
    if (DEFAULT_BACKEND !== "xen-lean")
      return t.pass(`runs against the lean backend only (${DEFAULT_BACKEND})`);
    const running = await runHello("running", true);
    const created = await runHello("created", false);
    await waitFor(
      "the running hello to tick",
      async () => lastTick(await crictl(`logs ${running.ctr}`)) >= 2,
    );
    await waitFor("the pool to refill", async () => (await shells()).length >= 2);
    const oldShells = await shells();
    const domid = Number(await sh(`xl domid sf-${created.pod.slice(0, 12)}`));
    const vif = `vif${domid}.0`;
    t.is(await sh(`basename $(readlink /sys/class/net/${vif}/master)`), ctx.node.bridge);

    await sh(`kill -9 $(cat ${ctx.node.dom0HostDir}/shim/shim.pid); rm -f ${SHIM_SOCKET}`);
    // What a process killed between createPaused and its vif attach leaves: netback's interface off
    // the bridge and no hotplug-status (so the guest's netfront would never connect).
    await sh(
      `ip link set ${vif} nomaster && xenstore-rm /local/domain/0/backend/vif/${domid}/0/hotplug-status`,
    );
    const tickAtKill = lastTick(await crictl(`logs ${running.ctr}`).catch(() => ""));
    ctx.shim = await startShim(ctx.node, { args: shimArgs() });

    t.deepEqual(
      (await shells()).filter((u) => oldShells.includes(u)),
      [],
      "the killed process's shells are destroyed",
    );
    await waitFor("new shells in the pool", async () => (await shells()).length >= 1);
    t.deepEqual(await guests(), [`sf-${created.pod.slice(0, 12)}`, `sf-${running.pod.slice(0, 12)}`].sort());
    t.is(
      await sh(`basename $(readlink /sys/class/net/${vif}/master)`),
      ctx.node.bridge,
      "the adopted domain's vif is on the bridge again",
    );
    t.is(await sh(`xenstore-read /local/domain/0/backend/vif/${domid}/0/hotplug-status`), "connected");

    await crictl(`start ${created.ctr}`);
    await waitFor("the adopted created hello to start", async () =>
      (await crictl(`logs ${created.ctr}`)).includes("hello: ready in"),
    );
    await waitFor(
      "the adopted running hello to keep counting into its CRI log",
      async () => lastTick(await crictl(`logs ${running.ctr}`)) > tickAtKill + 1,
    );
    const ps = JSON.parse(await crictl("ps -o json")) as { containers: { state: string }[] };
    t.deepEqual(
      ps.containers.map((c) => c.state),
      ["CONTAINER_RUNNING", "CONTAINER_RUNNING"],
    );
    for (const p of [running, created]) await crictl(`rmp -f ${p.pod}`);
    t.deepEqual(await guests(), [], "removal leaves no guest domain");
  },
);

test.serial("a graceful stop (SIGTERM) of a lean shim destroys the pool's shells", async (t) => {
  setupDone(t);
  if (DEFAULT_BACKEND !== "xen-lean")
    return t.pass(`runs against the lean backend only (${DEFAULT_BACKEND})`);
  await waitFor("shells in the pool", async () => (await shells()).length >= 1);
  await ctx.shim.stop();
  t.deepEqual(await shells(), []);
  t.deepEqual(await guests(), []);
});

test.serial("--hypervisor libxl stays selectable: hello runs and is removed without a trace", async (t) => {
  setupDone(t);
  await ctx.shim.stop();
  await sh(`rm -f ${SHIM_SOCKET}`);
  ctx.shim = await startShim(ctx.node, { args: shimArgs(["--hypervisor", "libxl"]) });
  t.is(backendOf(ctx.shim), "xen-libxl");
  const p = await runHello("libxl", true);
  await waitFor("hello's ready line", async () =>
    (await crictl(`logs ${p.ctr}`)).includes("hello: ready in"),
  );
  t.deepEqual(await shells(), [], "libxl keeps no pool");
  t.deepEqual(await guests(), [`sf-${p.pod.slice(0, 12)}`]);
  await crictl(`rmp -f ${p.pod}`);
  t.deepEqual(await guests(), []);
  t.is(await crictl("pods -q"), "");
});
