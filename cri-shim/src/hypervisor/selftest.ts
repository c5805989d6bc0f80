// Runs in dom0 of an emulated Xen node (xen-libxl.xen.test.ts starts it): drives the libxl driver
// through a domain's whole life and records what the world looked like after each step (domain
// list, states, console lines, files), plus timings and the same steps done by the `xl` CLI for
// comparison. It asserts nothing itself: it prints one JSON report on stdout for the test to check.
//   node dist/cri-shim/src/hypervisor/selftest.js --kernel <hello> [--bridge xenbr0]
import { execFile } from "node:child_process";
import { closeSync, mkdtempSync, openSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { promisify } from "node:util";
import { ConsoleTail, guestConsoleLogPath } from "./console.js";
import { XenLibxl } from "./xen-libxl.js";
import { XenStore } from "./xenstore.js";
import { type DomainSpec, HypervisorError } from "./types.js";

const run = promisify(execFile);
const { values: args } = parseArgs({
  options: { kernel: { type: "string" }, bridge: { type: "string" }, rounds: { type: "string" } },
});
if (!args.kernel) throw new Error("--kernel is required");
const kernel = args.kernel;
const rounds = Number(args.rounds ?? 3);

const report: Record<string, unknown> = {};
const workdir = mkdtempSync("/tmp/sf-selftest-");
const hv = XenLibxl.open();
const xs = XenStore.open();
const names = async (): Promise<string[]> => (await hv.list()).map((d) => d.name).sort();
const ms = (t0: number): number => Math.round(performance.now() - t0);
const sleep = (t: number): Promise<void> => new Promise((r) => setTimeout(r, t));

/** Largest gap between 10 ms timer ticks while `work` runs: proves the event loop stayed free. */
async function withLoopLag<T>(work: () => Promise<T>): Promise<{ result: T; maxLagMs: number }> {
  let last = performance.now();
  let maxLagMs = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    maxLagMs = Math.max(maxLagMs, now - last - 10);
    last = now;
  }, 10);
  try {
    return { result: await work(), maxLagMs: Math.round(maxLagMs) };
  } finally {
    clearInterval(timer);
  }
}

async function errorOf(work: () => Promise<unknown>): Promise<{ code?: string; message: string } | null> {
  try {
    await work();
    return null;
  } catch (err) {
    return err instanceof HypervisorError
      ? { code: err.code, message: err.message }
      : { message: String(err) };
  }
}

async function waitForState(domid: number, states: string[], timeoutMs: number): Promise<string | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const d = await hv.info(domid);
    const state = d ? `${d.state}${d.shutdownReason ? `:${d.shutdownReason}` : ""}` : "gone";
    if (states.includes(state) || Date.now() > deadline) return state;
    await sleep(100);
  }
}

/** The guest every step uses; no vif, so nothing depends on vif-bridge (see the vif step). */
function spec(name: string, memoryMiB = 32): DomainSpec {
  return {
    name,
    kernelPath: kernel,
    cmdline: "selftest ARG=1",
    memoryMiB,
    maxMemoryMiB: memoryMiB,
    vcpus: 1,
    guestType: "pv",
    vifs: [],
  };
}

const bridgePorts = async (bridge: string): Promise<string[]> =>
  (await run("ip", ["-o", "link", "show", "master", bridge])).stdout
    .split("\n")
    .map((l) => l.split(":")[1]?.trim().split("@")[0] ?? "")
    .filter((n) => n.length > 0);

try {
  report.host = await hv.host();
  report.namesBefore = await names();
  // The event-loop stall of an idle wait of similar length: what the machine alone causes.
  report.idleLoopLagMs = (await withLoopLag(() => sleep(3000))).maxLagMs;

  // ---- lifecycle through the driver ----
  const name = `sf-selftest-${process.pid}`;
  const tail = await new ConsoleTail(guestConsoleLogPath(name), { pollMs: 20 }).start();
  const lines: string[] = [];
  tail.on("line", (l) => lines.push(l));
  /** A line seen already, or the next one to match. */
  const seen = (pattern: RegExp, timeoutMs: number): Promise<string> => {
    const found = lines.find((l) => pattern.test(l));
    return found !== undefined ? Promise.resolve(found) : tail.waitFor(pattern, timeoutMs);
  };
  let t0 = performance.now();
  const created = await withLoopLag(() => hv.createPaused(spec(name)));
  const domid = created.result;
  report.create = { domid, ms: ms(t0), maxLoopLagMs: created.maxLagMs };
  report.afterCreate = {
    uuid: await xs.read(`/vm/${(await hv.info(domid))?.uuid ?? ""}/uuid`).catch(() => undefined),
    info: await hv.info(domid),
    byName: (await hv.findByName(name))?.domid,
    names: await names(),
  };
  await sleep(500);
  report.consoleWhilePaused = [...lines];

  const ready = tail.waitFor(/hello: ready/, 60_000);
  t0 = performance.now();
  await hv.unpause(domid);
  const unpauseMs = ms(t0);
  const readyLine = await ready;
  report.unpause = { ms: unpauseMs, readyAfterMs: ms(t0), readyLine, state: (await hv.info(domid))?.state };
  report.consolePath = await hv.consolePath(domid);
  report.stats = { running: await hv.stats(domid), unknown: (await hv.stats(4000)) ?? null };

  await seen(/hello: tick \d+$/, 30_000);
  t0 = performance.now();
  await hv.pause(domid);
  const pauseMs = ms(t0);
  const p1 = await hv.info(domid);
  // xenconsoled and our poll deliver a line printed just before the pause a little later: settle first.
  await sleep(1000);
  const linesAtPause = lines.length;
  await sleep(2500);
  const p2 = await hv.info(domid);
  report.pause = {
    ms: pauseMs,
    state: p1?.state,
    cpuTimeBefore: String(p1?.cpuTimeNs),
    cpuTimeAfter2s: String(p2?.cpuTimeNs),
    newLinesWhilePaused: lines.length - linesAtPause,
  };
  const nextTick = tail.waitFor(/hello: tick/, 30_000);
  await hv.unpause(domid);
  await nextTick;
  report.resumed = { state: (await hv.info(domid))?.state };

  const before = await hv.info(domid);
  await hv.setMemory(domid, 24);
  const after = await hv.info(domid);
  report.setMemory = {
    maxMemoryKiBBefore: before?.maxMemoryKiB,
    maxMemoryKiBAfter: after?.maxMemoryKiB,
    xenstoreTarget: await xs.read(`/local/domain/${domid}/memory/target`),
    tooBig: await errorOf(() => hv.setMemory(domid, 4096)),
  };
  report.xenstore = {
    name: await xs.read(`/local/domain/${domid}/name`),
    controlKeys: await xs.list(`/local/domain/${domid}/control`),
    missing: (await xs.read(`/local/domain/${domid}/no-such-key`)) ?? null,
  };
  report.setVcpus = {
    one: await errorOf(() => hv.setVcpus(domid, 1)),
    vcpus: (await hv.info(domid))?.vcpus,
    aboveMax: await errorOf(() => hv.setVcpus(domid, 4)),
  };

  // ---- save / restore through a file descriptor ----
  const savePath = join(workdir, "save.img");
  let fd = openSync(savePath, "w");
  t0 = performance.now();
  const saved = await withLoopLag(() => hv.save(domid, fd));
  closeSync(fd);
  report.save = {
    ms: ms(t0),
    bytes: statSync(savePath).size,
    maxLoopLagMs: saved.maxLagMs,
    infoAfter: (await hv.info(domid)) ?? null,
    names: await names(),
    suspendLine: lines.find((l) => l.includes("suspending")),
  };
  fd = openSync(savePath, "r");
  const resumedLine = tail.waitFor(/hello: resumed/, 60_000);
  t0 = performance.now();
  const restoredId = await hv.restore(spec(name), fd);
  closeSync(fd);
  report.restore = {
    domid: restoredId,
    ms: ms(t0),
    resumedLine: await resumedLine,
    state: (await hv.info(restoredId))?.state,
    names: await names(),
  };

  // ---- guest shutdown, then destroy ----
  await hv.shutdown(restoredId, "poweroff");
  report.shutdown = {
    state: await waitForState(restoredId, ["shutdown:poweroff"], 30_000),
    poweroffLine: await seen(/hello: poweroff/, 10_000).catch(() => undefined),
  };
  t0 = performance.now();
  await hv.destroy(restoredId);
  report.destroy = { ms: ms(t0), info: (await hv.info(restoredId)) ?? null, names: await names() };

  // ---- a vif on the node's bridge: libxl runs vif-bridge (a child process: our SIGCHLD path) ----
  // No ip= on the vif: with one, vif-bridge adds iptables anti-spoofing rules that, on a loaded
  // emulated node, outlast libxl's 40 s hotplug timeout (the shim leaves it off by default too).
  if (args.bridge) {
    const bridge = args.bridge;
    const vifName = `sf-vif-${process.pid}`;
    const portsBefore = await bridgePorts(bridge);
    t0 = performance.now();
    const vifSpec = { ...spec(vifName), vifs: [{ bridge, mac: "00:16:3e:5f:00:01" }] };
    const vifDomid = await hv.createPaused(vifSpec).catch((err: unknown) => String(err));
    const vif: Record<string, unknown> = { createMs: ms(t0), portsBefore };
    if (typeof vifDomid === "number") {
      vif.domid = vifDomid;
      vif.ports = await bridgePorts(bridge);
      vif.networks = (await hv.stats(vifDomid))?.networks.map((n) => n.devid);
      await hv.destroy(vifDomid);
    } else {
      vif.error = vifDomid;
    }
    vif.portsAfter = await bridgePorts(bridge);
    vif.names = await names();
    report.vif = vif;
  }
  tail.stop();

  // ---- bad input: errors, and nothing left behind ----
  const bad = `sf-bad-${process.pid}`;
  report.bad = {
    missingKernel: await errorOf(() => hv.createPaused({ ...spec(bad), kernelPath: "/nonexistent/kernel" })),
    tooMuchMemory: await errorOf(() => hv.createPaused(spec(bad, 64 * 1024))),
    badName: await errorOf(() => hv.createPaused(spec("bad name"))),
    notAKernel: await errorOf(() => hv.createPaused({ ...spec(bad), kernelPath: "/etc/hostname" })),
    pauseUnknown: await errorOf(() => hv.pause(4000)),
    unpauseUnknown: await errorOf(() => hv.unpause(4000)),
    destroyUnknown: await errorOf(() => hv.destroy(4000)),
    infoUnknown: (await hv.info(4000)) ?? null,
    destroyDom0: await errorOf(() => hv.destroy(0)),
  };
  const dupId = await hv.createPaused(spec(bad));
  report.bad = { ...(report.bad as object), duplicateName: await errorOf(() => hv.createPaused(spec(bad))) };
  await hv.destroy(dupId);
  report.namesAfterBad = await names();

  // ---- timings: driver vs xl CLI, interleaved ----
  const cfgPath = join(workdir, "xl.cfg");
  const timings: {
    driver: { create: number; unpause: number; destroy: number };
    xl: { create: number; unpause: number; destroy: number };
  }[] = [];
  for (let i = 0; i < rounds; i++) {
    const dn = `sf-bench-${i}`;
    let t = performance.now();
    const id = await hv.createPaused(spec(dn));
    const dCreate = ms(t);
    t = performance.now();
    await hv.unpause(id);
    const dUnpause = ms(t);
    t = performance.now();
    await hv.destroy(id);
    const dDestroy = ms(t);
    const xn = `sf-xl-${i}`;
    writeFileSync(
      cfgPath,
      `name="${xn}"\ntype="pv"\nkernel="${kernel}"\ncmdline="selftest ARG=1"\nmemory=32\nvcpus=1\n`,
    );
    t = performance.now();
    await run("xl", ["create", "-p", cfgPath]);
    const xCreate = ms(t);
    t = performance.now();
    await run("xl", ["unpause", xn]);
    const xUnpause = ms(t);
    t = performance.now();
    await run("xl", ["destroy", xn]);
    const xDestroy = ms(t);
    timings.push({
      driver: { create: dCreate, unpause: dUnpause, destroy: dDestroy },
      xl: { create: xCreate, unpause: xUnpause, destroy: xDestroy },
    });
  }
  report.timings = timings;

  // close() with a call in flight: the call settles (done or refused), no crash, later calls refused.
  const hv2 = XenLibxl.open();
  // The handlers go on at once: the call may be refused while close() is still awaited.
  const pending = hv2.list().then(
    (l) => `listed ${l.length}`,
    (err: unknown) => String(err),
  );
  await hv2.close();
  report.closeWhileBusy = { pending: await pending, after: await errorOf(() => hv2.list()) };
  report.namesAtEnd = await names();
} catch (err) {
  report.fatal = err instanceof Error ? `${err.name}: ${err.message}\n${err.stack ?? ""}` : String(err);
} finally {
  // A failed run must not leave its domains to the next test on this node.
  const leftovers = (await hv.list().catch(() => [])).filter((d) =>
    /^sf-(selftest|bad|bench|xl|vif)-/.test(d.name),
  );
  for (const d of leftovers) await hv.destroy(d.domid).catch(() => undefined);
  if (leftovers.length) report.cleanedUp = leftovers.map((d) => d.name);
  await hv.close();
  xs.close();
  rmSync(workdir, { recursive: true, force: true });
}
process.stdout.write(
  JSON.stringify(report, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v)) + "\n",
);
// A step that failed half-way may leave a console tail or timer behind; the report is all we owe.
process.exit(0);
