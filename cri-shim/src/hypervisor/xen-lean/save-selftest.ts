// Runs INSIDE dom0 (save-restore.xen.test.ts starts it): the lean backend's in-process save and
// restore of `hello` (16 MiB, one vif; the checkpoint skips its all-zero pages): suspend to a file and resume, a migration source's suspend
// then cancel, streams crossing between the lean and libxl backends, bad streams; then `xl save` and
// `xl restore` of the same guest for comparison. Prints one JSON report on stdout.
//   node lean-save-selftest.mjs --kernel K --bridge B
import { execFileSync } from "node:child_process";
import {
  closeSync,
  existsSync,
  openSync,
  readFileSync,
  readlinkSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import { HypervisorError } from "../types.js";
import { XenLibxl } from "../xen-libxl.js";
import { XenStore } from "../xenstore.js";
import { streamSocketpair } from "../../migration/socketpair.js";
import { SAVE_ALL_PAGES_ENV } from "./save-restore.js";
import { XenLean } from "./xen-lean.js";

const { values } = parseArgs({ options: { kernel: { type: "string" }, bridge: { type: "string" } } });
const kernel = values.kernel!;
const bridge = values.bridge!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const DIR = "/var/lib/xen";
const errOf = (e: unknown) =>
  e instanceof HypervisorError ? { code: e.code, message: e.message } : { message: String(e) };

const spec = (name: string) => ({
  name,
  kernelPath: kernel,
  cmdline: "interval=1",
  memoryMiB: 16,
  vcpus: 1,
  guestType: "pv" as const,
  // An address, so the anti-spoofing guard runs as for a pod (the restore path the shim takes).
  vifs: [{ bridge, mac: "00:16:3e:00:00:02", ip: "10.99.0.2" }],
});

function consoleLines(name: string): string[] {
  const path = `/var/log/xen/console/guest-${name}.log`;
  return existsSync(path) ? readFileSync(path, "utf8").split("\n") : [];
}
async function waitLine(name: string, pattern: RegExp, after = 0, ms = 60_000): Promise<string | undefined> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const line = consoleLines(name)
      .slice(after)
      .find((l) => pattern.test(l));
    if (line) return line;
    await sleep(50);
  }
  return undefined;
}
const tickOf = (line: string | undefined) => Number(/tick (\d+)/.exec(line ?? "")?.[1] ?? NaN);
function vifMaster(domid: number): string | undefined {
  try {
    return readlinkSync(`/sys/class/net/vif${domid}.0/master`).split("/").pop();
  } catch {
    return undefined;
  }
}
function withFd<T>(path: string, flags: string, f: (fd: number) => Promise<T>): Promise<T> {
  const fd = openSync(path, flags, 0o600);
  return f(fd).finally(() => closeSync(fd));
}
async function timed<T>(f: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const v = await f();
  return [v, Math.round(performance.now() - t0)];
}
function xlMs(...args: string[]): number {
  const t0 = performance.now();
  execFileSync("xl", args, { stdio: "ignore" });
  return Math.round(performance.now() - t0);
}

const libxl = XenLibxl.open();
const xs = XenStore.open();
const report: Record<string, unknown> = { loadAvgAtStart: loadavg()[0] };
let phase = "start";
try {
  const lean = await XenLean.open(libxl, { poolDepth: 0, poolMaxMiB: 0 });
  const name = "lean-save";
  const file = `${DIR}/${name}.ckpt`;
  const first = await lean.createPaused(spec(name));
  await lean.unpause(first);
  const before = await waitLine(name, /hello: tick 2\b/);

  phase = "rounds";
  // Suspend to disk and resume, three times (later rounds restore a restored domain). The first
  // sends every page with its data (the stream before zeropages.c, for comparison), the others skip
  // the all-zero pages.
  const rounds = [];
  let domid = first;
  for (let i = 0; i < 3; i++) {
    const allPages = i === 0;
    if (allPages) process.env[SAVE_ALL_PAGES_ENV] = "1";
    else delete process.env[SAVE_ALL_PAGES_ENV];
    const mark = consoleLines(name).length;
    const [, saveMs] = await timed(() => withFd(file, "w", (fd) => lean.save(domid, fd)));
    const savePhases = lean.streamPhases().lastSave;
    // A destroyed domain stays "dying" until xenstored and xenconsoled drop their mappings of it.
    let left = await lean.info(domid);
    for (let w = 0; w < 100 && left !== undefined; w++) {
      await sleep(100);
      left = await lean.info(domid);
    }
    const goneAfterSave = left === undefined;
    const bytes = statSync(file).size;
    // Restore paused, then unpause (which waits for the vif on the bridge): their sum is a resume.
    const [restored, restorePausedMs] = await timed(() =>
      withFd(file, "r", (fd) => lean.restore(spec(name), fd, { paused: true })),
    );
    const { lastRestore: restorePhases, lastWire: wirePhases } = lean.streamPhases();
    const [, unpauseMs] = await timed(() => lean.unpause(restored));
    const restoreMs = restorePausedMs + unpauseMs;
    const master = vifMaster(restored);
    const suspended = await waitLine(name, /hello: suspending at tick/, mark);
    const resumed = await waitLine(name, /hello: resumed at tick \d+ \(restored domain\)/, mark);
    const next = await waitLine(name, new RegExp(`hello: tick ${tickOf(resumed) + 1}\\b`), mark);
    rounds.push({
      allPages,
      saveMs,
      restoreMs,
      restorePausedMs,
      unpauseMs,
      bytes,
      goneAfterSave,
      savePhases,
      restorePhases,
      wirePhases,
      vifMaster: master,
      suspended,
      resumed,
      next,
    });
    domid = restored;
  }
  report.rounds = rounds;
  report.before = before;

  phase = "cancel";
  // A migration source's suspend, then the cancel when the target fails: the same domain runs on.
  const mark = consoleLines(name).length;
  const [, outMs] = await timed(() =>
    withFd("/dev/null", "w", (fd) => lean.migrateOut(domid, fd, { live: false })),
  );
  const stateSuspended = await lean.info(domid);
  const [, cancelMs] = await timed(() => lean.resumeSuspended(domid));
  const cancelled = await waitLine(name, /hello: resumed at tick \d+ \(suspend cancelled\)/, mark);
  const after = await waitLine(name, new RegExp(`hello: tick ${tickOf(cancelled) + 1}\\b`), mark);
  const liveTry = await withFd("/dev/null", "w", (fd) => lean.migrateOut(domid, fd, { live: true })).then(
    () => ({ ok: true }),
    (e: unknown) => errOf(e),
  );
  report.cancel = {
    outMs,
    cancelMs,
    state: `${stateSuspended?.state}/${stateSuspended?.shutdownReason}`,
    sameDomain: (await lean.info(domid))?.state !== undefined,
    cancelled,
    after,
    live: liveTry,
    stateAfterLive: (await lean.info(domid))?.state,
  };

  phase = "cross";
  // Across backends: lean's stream restores in libxl and libxl's in lean.
  await withFd(file, "w", (fd) => lean.save(domid, fd));
  const byLibxl = await withFd(file, "r", (fd) => libxl.restore(spec(name), fd));
  const m1 = consoleLines(name).length;
  await withFd(file, "w", (fd) => libxl.save(byLibxl, fd));
  const byLean = await withFd(file, "r", (fd) => lean.restore(spec(name), fd));
  const states = [];
  for (let w = 0; w < 6; w++, await sleep(500)) {
    const d = await lean.info(byLean);
    states.push(d ? `${d.state}${d.shutdownReason ? `/${d.shutdownReason}` : ""}` : "gone");
  }
  report.cross = {
    leanToLibxl: byLibxl > 0,
    libxlToLean: await waitLine(name, /hello: resumed at tick \d+ \(restored domain\)/, m1),
    vifMaster: vifMaster(byLean),
    byLibxl,
    byLean,
    states,
    console: consoleLines(name).slice(m1).slice(-8),
  };

  phase = "bad";
  // Bad streams: a clear error and no domain left.
  writeFileSync(`${DIR}/garbage.ckpt`, Buffer.alloc(4096, 0x41));
  // (file still holds libxl's stream of the cross step, whole)
  writeFileSync(`${DIR}/truncated.ckpt`, readFileSync(file).subarray(0, 1 << 20));
  const domainsBefore = (await libxl.list()).length;
  const bad: Record<string, unknown> = {};
  for (const which of ["garbage", "truncated"])
    bad[which] = await withFd(`${DIR}/${which}.ckpt`, "r", (fd) =>
      lean.restore(spec(`${name}-bad`), fd),
    ).then(
      (d) => ({ unexpectedDomid: d }),
      (e: unknown) => errOf(e),
    );
  // A vif that cannot be wired (no such bridge) while the fill waits on a socket that sends
  // nothing (a migration before "ready"): the restore fails at once, not when the source gives up.
  const pair = streamSocketpair();
  const t0 = performance.now();
  bad.noBridge = await lean
    .restore(
      { ...spec(`${name}-nobr`), vifs: [{ bridge: "sfnobr0", mac: "00:16:3e:00:00:09" }] },
      pair.libxlFd,
    )
    .then(
      (d) => ({ unexpectedDomid: d }),
      (e: unknown) => ({ ...errOf(e), ms: Math.round(performance.now() - t0) }),
    );
  pair.socket.destroy();
  pair.closeLibxlEnd();
  for (let i = 0; i < 100 && (await libxl.list()).length > domainsBefore; i++) await sleep(100);
  const live = new Set((await libxl.list()).map((d) => String(d.domid)));
  report.bad = {
    ...bad,
    leftovers: live.size - domainsBefore,
    xenstoreOrphans: ((await xs.list("/local/domain")) ?? []).filter((id) => !live.has(id)),
  };

  phase = "xl";
  // xl's save and restore of the same guest (its own domain, built by xl), for comparison.
  const cfg = `${DIR}/xl-hello.cfg`;
  writeFileSync(
    cfg,
    `name="xl-save"\nkernel="${kernel}"\nmemory=16\nvcpus=1\nextra="interval=1"\nvif=['bridge=${bridge},mac=00:16:3e:00:00:03']\n`,
  );
  execFileSync("xl", ["create", cfg], { stdio: "ignore" });
  await waitLine("xl-save", /hello: tick 2\b/);
  const xlSaveMs = xlMs("save", "xl-save", `${DIR}/xl.ckpt`);
  const xlRestoreMs = xlMs("restore", `${DIR}/xl.ckpt`);
  execFileSync("xl", ["destroy", "xl-save"], { stdio: "ignore" });
  report.xl = { saveMs: xlSaveMs, restoreMs: xlRestoreMs };
  report.stateAtEnd = (await lean.info(byLean))?.state;
  await lean.destroy(byLean);
} catch (err) {
  report.fatal = `${phase}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`;
}
xs.close();
await libxl.close();
console.log(JSON.stringify(report));
process.exit(0);
