// Runs INSIDE dom0 (xen-lean.xen.test.ts starts it): drives the lean backend through a warm and a
// cold create of `hello` with one vif, its console line, destroy, a PVH create, save and restore
// (libxl's build, the vif joined in-process), creates destroyed at once (the remnant sweep), bad
// input, and a shim killed mid-prepare; prints one JSON report on stdout. The test asserts on it.
//   node lean-selftest.mjs --kernel K --bridge B            the scenario
//   node lean-selftest.mjs --prepare-forever                 (child) fills a pool until killed
import { execFileSync, spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { parseArgs } from "node:util";
import { XenLibxl } from "../xen-libxl.js";
import { XenStore } from "../xenstore.js";
import { type DomainInfo, HypervisorError } from "../types.js";
import { isShell, XenLean } from "./xen-lean.js";

const { values } = parseArgs({
  options: {
    kernel: { type: "string" },
    bridge: { type: "string" },
    "prepare-forever": { type: "boolean" },
  },
});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

if (values["prepare-forever"]) {
  // A shim whose pool is filling: the parent SIGKILLs it part-way through a prepare.
  const lean = await XenLean.open(XenLibxl.open(), {
    poolDepth: 50,
    poolMaxMiB: 400,
    poolShapes: [{ memoryMiB: 4, maxMemoryMiB: 4, vcpus: 1, maxVcpus: 1 }],
  });
  lean.pool.depths();
  console.log("filling");
  await new Promise(() => undefined);
}

const kernel = values.kernel!;
const bridge = values.bridge!;
const xs = XenStore.open();
const errOf = (e: unknown) =>
  e instanceof HypervisorError ? { code: e.code, message: e.message } : { message: String(e) };

async function leftovers(domid: number) {
  return {
    domain: (await libxl.info(domid)) !== undefined,
    xenstore: (await xs.list(`/local/domain/${domid}`)) !== undefined,
    backend: (await xs.list(`/local/domain/0/backend/vif/${domid}`)) !== undefined,
    vif: existsSync(`/sys/class/net/vif${domid}.0`),
  };
}

/** dom0's XenStore directories and kernel xenbus devices of domids Xen does not have. Xen's list
 *  comes last: a domain's nodes and devices come after Xen made it, so one built meanwhile is live. */
async function orphans() {
  const dirs: string[] = [];
  for (const p of ["/local/domain", "/local/domain/0/backend/vif", "/local/domain/0/error/backend/vif"])
    for (const c of (await xs.list(p)) ?? []) dirs.push(`${p}/${c}`);
  const devs = readdirSync("/sys/bus/xen-backend/devices");
  const live = new Set((await libxl.list()).map((d) => String(d.domid)));
  return {
    xenstore: dirs.filter((d) => !live.has(d.split("/").pop()!)),
    devices: devs.filter((n) => !live.has(/-(\d+)-\d+$/.exec(n)?.[1] ?? "0")),
  };
}

async function waitGone(domid: number, ms = 15_000) {
  const until = Date.now() + ms;
  let l = await leftovers(domid);
  while ((l.domain || l.xenstore || l.backend || l.vif) && Date.now() < until) {
    await sleep(100);
    l = await leftovers(domid);
  }
  return l;
}

async function waitLine(name: string, pattern: RegExp, ms = 60_000): Promise<string | undefined> {
  const path = `/var/log/xen/console/guest-${name}.log`;
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const line = existsSync(path)
      ? readFileSync(path, "utf8")
          .split("\n")
          .find((l) => pattern.test(l))
      : undefined;
    if (line) return line;
    await sleep(50);
  }
  return undefined;
}

/** The owner of the first vif's frontend `state` node (`xenstore-ls -p`: "(n<owner>,...)"). */
function frontendOwner(domid: number): number | undefined {
  const out = execFileSync("xenstore-ls", ["-p", `/local/domain/${domid}/device/vif/0`], {
    encoding: "utf8",
  });
  const line = out.split("\n").find((l) => /^state = /.test(l.trim()));
  const m = line && /\(n(\d+)/.exec(line);
  return m ? Number(m[1]) : undefined;
}

/** What dom0 shows of a domain's first vif: its bridge, a hotplug script if one was set, netback's
 *  go-ahead, and whether libxl recorded the vif as one of its devices. */
async function vifState(domid: number) {
  const be = `/local/domain/0/backend/vif/${domid}/0`;
  let master: string | undefined;
  try {
    master = readlinkSync(`/sys/class/net/vif${domid}.0/master`).split("/").pop();
  } catch {
    master = undefined;
  }
  return {
    master,
    script: await xs.read(`${be}/script`),
    hotplugStatus: await xs.read(`${be}/hotplug-status`),
    libxlDevice: (await xs.list(`/libxl/${domid}/device/vif`)) !== undefined,
    // netfront writes its state and rings there: the guest must own its frontend's nodes.
    frontendOwnedByGuest: frontendOwner(domid) === domid,
  };
}

const spec = (name: string, memoryMiB: number, br = bridge, k = kernel) => ({
  name,
  kernelPath: k,
  cmdline: "",
  memoryMiB,
  vcpus: 1,
  guestType: "pv" as const,
  vifs: [{ bridge: br, mac: "00:16:3e:00:00:01" }],
});

const libxl = XenLibxl.open();
const report: Record<string, unknown> = {};
try {
  const lean = await XenLean.open(libxl, {
    poolDepth: 1,
    poolMaxMiB: 64,
    poolShapes: [{ memoryMiB: 4, maxMemoryMiB: 4, vcpus: 1, maxVcpus: 1 }],
  });
  await lean.pool.idle();
  report.poolAfterFill = Object.fromEntries(lean.pool.depths());
  report.shellsInXen = (await libxl.list()).filter(isShell).length;

  // Warm: a shell of the shape is ready.
  let t0 = performance.now();
  const warm = await lean.createPaused(spec("lean-warm", 4));
  const warmMs = performance.now() - t0;
  await lean.vifsAttached(warm);
  const attachedMs = performance.now() - t0;
  const vifMaster = (() => {
    try {
      return readlinkSync(`/sys/class/net/vif${warm}.0/master`).split("/").pop();
    } catch {
      return undefined;
    }
  })();
  const state = (await lean.info(warm))?.state;
  // The lean list (one hypercall) against libxl's, with dom0, the paused guest and the pool's shells.
  const shape = (ds: DomainInfo[]) =>
    ds
      .filter((d) => !isShell(d))
      .map(({ domid, name, uuid, state, memoryKiB, maxMemoryKiB, vcpus, maxVcpus }) => ({
        ...{ domid, name, uuid, state, memoryKiB, maxMemoryKiB, vcpus, maxVcpus },
      }));
  report.lists = {
    lean: shape(await lean.list()),
    libxl: shape(await libxl.list()),
    found: (await lean.findByName("lean-warm"))?.domid,
    warm,
    missing: (await lean.findByName("lean-no-such-domain")) ?? null,
  };
  await lean.unpause(warm);
  const ready = await waitLine("lean-warm", /hello: ready/);
  t0 = performance.now();
  await lean.destroy(warm);
  const destroyMs = performance.now() - t0;
  report.warm = { ms: warmMs, attachedMs, state, vifMaster, ready, destroyMs, after: await waitGone(warm) };
  await lean.pool.idle();

  // Cold: a shape the pool does not hold.
  t0 = performance.now();
  const cold = await lean.createPaused(spec("lean-cold", 6));
  const coldMs = performance.now() - t0;
  await lean.unpause(cold);
  const coldReady = await waitLine("lean-cold", /hello: ready/);
  await lean.destroy(cold);
  report.cold = { ms: coldMs, ready: coldReady, after: await waitGone(cold) };
  await lean.pool.idle();

  // PVH: libxl builds it with no nic; the vif is wired in-process (XenStore, the bridge join) while
  // libxl builds, after a create and during a restore alike, before the guest runs.
  const pvhSpec = { ...spec("lean-pvh", 32), guestType: "pvh" as const };
  const pvh = await lean.createPaused(pvhSpec);
  await lean.unpause(pvh);
  const created = await vifState(pvh);
  const pvhReady = await waitLine("lean-pvh", /hello: ready/);
  const image = "/tmp/lean-pvh.save";
  let fd = openSync(image, "w");
  await lean.save(pvh, fd).finally(() => closeSync(fd));
  const savedAfter = await waitGone(pvh);
  fd = openSync(image, "r");
  t0 = performance.now();
  const back = await lean.restore(pvhSpec, fd, { paused: true }).finally(() => closeSync(fd));
  const restoreMs = performance.now() - t0;
  await lean.vifsAttached(back);
  const restored = { ...(await vifState(back)), state: (await lean.info(back))?.state };
  await lean.unpause(back);
  const resumed = await waitLine("lean-pvh", /hello: resumed/);
  await lean.destroy(back);
  rmSync(image, { force: true });
  report.pvh = {
    created,
    ready: pvhReady,
    restored,
    restoreMs,
    resumed,
    savedAfter,
    after: await waitGone(back),
  };

  // Churn: creates destroyed at once, while netback probes their vifs and xenconsoled maps their
  // consoles; what those write after the destroy is swept (remnants.ts).
  const removedBefore = (await lean.metrics.remnants.get()).values.find(
    (v) => v.labels.outcome === "removed",
  );
  let churned = 0;
  for (let i = 0; i < 4; i++, churned++)
    await lean.destroy(await lean.createPaused(spec(`lean-churn${i}`, 4)));
  await lean.pool.idle();
  t0 = performance.now();
  await lean.remnants.settled();
  const removed = (await lean.metrics.remnants.get()).values.find((v) => v.labels.outcome === "removed");
  report.churn = {
    churned,
    settledMs: Math.round(performance.now() - t0),
    removedAgain: (removed?.value ?? 0) - (removedBefore?.value ?? 0),
    ...(await orphans()),
  };

  // Bad input: each must fail clearly and leave no domain behind.
  const before = (await libxl.list()).map((d) => d.domid);
  const bad: Record<string, unknown> = {};
  for (const [what, s] of [
    ["notAKernel", spec("lean-bad1", 4, bridge, "/bin/true")],
    ["tooBig", spec("lean-bad2", 900_000)],
    ["noBridge", spec("lean-bad3", 4, "nosuchbr0")],
    ["pvhNoBridge", { ...spec("lean-bad4", 32, "nosuchbr0"), guestType: "pvh" as const }],
  ] as const) {
    bad[what] = await lean.createPaused(s).then(
      (d) => ({ unexpectedDomid: d }),
      (e: unknown) => errOf(e),
    );
  }
  await lean.pool.idle();
  // A destroyed domain stays "dying" until xenstored and xenconsoled drop their mappings of it.
  const leaked = async () => (await libxl.list()).filter((d) => !before.includes(d.domid) && !isShell(d));
  for (let i = 0; i < 150 && (await leaked()).length > 0; i++) await sleep(100);
  const after = await libxl.list();
  report.bad = bad;
  report.badLeftovers = after.filter((d) => !before.includes(d.domid) && !isShell(d)).map((d) => d.name);
  await lean.remnants.settled();
  const o = await orphans();
  report.badXenstore = o.xenstore;
  report.badDevices = o.devices;
  await lean.pool.close(); // not lean.close(): that closes the libxl ctx this script still uses
  report.shellsAfterClose = (await libxl.list()).filter(isShell).length;

  // A shim killed while its pool fills: the next start's recovery leaves nothing of it.
  const child = spawn(process.execPath, [process.argv[1]!, "--prepare-forever"], { stdio: "ignore" });
  let seen = 0;
  for (let i = 0; i < 300 && seen < 3; i++) {
    await sleep(20);
    seen = (await libxl.list()).filter(isShell).length;
  }
  child.kill("SIGKILL");
  await new Promise((r) => child.once("exit", r));
  const shellsAfterKill = (await libxl.list()).filter(isShell).map((d) => d.domid);
  const again = await XenLean.open(libxl, { poolDepth: 0, poolMaxMiB: 0 });
  const remaining = (await libxl.list()).filter(isShell).map((d) => d.domid);
  const gone = await Promise.all(shellsAfterKill.map((d) => waitGone(d)));
  report.kill = {
    shellsAfterKill: shellsAfterKill.length,
    remaining: remaining.length,
    nodesLeft: gone.filter((g) => g.domain || g.xenstore || g.backend || g.vif).length,
  };
  await again.pool.close();
  await again.remnants.settled();
  report.finalOrphans = await orphans();
} catch (err) {
  report.fatal = err instanceof Error ? (err.stack ?? err.message) : String(err);
}
xs.close();
await libxl.close();
console.log(JSON.stringify(report));
process.exit(0);
