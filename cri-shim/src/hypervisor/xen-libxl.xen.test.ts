// The libxl driver inside dom0 of an emulated Xen node: selftest.ts drives a `hello` domain through
// create (paused) / unpause / pause / memory / save + restore through an fd / poweroff / destroy and
// bad input, and reports what it saw; this test checks that report and, independently, asks `xl`
// that no domain was left behind. Timings vs the xl CLI are logged (figures, not assertions).
import test from "ava";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "../../../lib/paths.js";
import { startXenNode, type XenNode } from "../../../e2e/xen-node/index.js";
import { runDom0Selftest } from "../../../e2e/harness/dom0-selftest.js";

const HELLO = join(REPO_ROOT, "native/build/hello/hello");
// Bundled (scripts/build-bundle.mjs): dom0 reads the repo over 9p, where loading module by module is slow.
const SELFTEST = join(REPO_ROOT, "dist/bundle/libxl-selftest.mjs");

interface Err {
  code?: string;
  message: string;
}
interface Info {
  domid: number;
  name: string;
  state: string;
  shutdownReason?: string;
  memoryKiB: number;
  maxMemoryKiB: number;
  vcpus: number;
}
type Phase = {
  driver: Record<"create" | "unpause" | "destroy", number>;
  xl: Record<"create" | "unpause" | "destroy", number>;
};
interface Report {
  fatal?: string;
  cleanedUp?: string[];
  host: { totalMemoryKiB: number; freeMemoryKiB: number; cpus: number; xenVersion: string };
  namesBefore: string[];
  idleLoopLagMs: number;
  create: { domid: number; ms: number; maxLoopLagMs: number };
  afterCreate: { uuid?: string; info: Info & { uuid: string }; byName: number; names: string[] };
  consoleWhilePaused: string[];
  unpause: { ms: number; readyAfterMs: number; readyLine: string; state: string };
  consolePath: string;
  stats: {
    running: {
      domid: number;
      cpuTimeNs: string;
      memoryBytes: number;
      vcpus: number;
      networks: { devid: number; txBytes: number }[];
    };
    unknown: null;
  };
  pause: {
    ms: number;
    state: string;
    cpuTimeBefore: string;
    cpuTimeAfter2s: string;
    newLinesWhilePaused: number;
  };
  resumed: { state: string };
  setMemory: {
    maxMemoryKiBBefore: number;
    maxMemoryKiBAfter: number;
    xenstoreTarget?: string;
    tooBig: Err | null;
  };
  xenstore: { name?: string; controlKeys?: string[]; missing: string | null };
  setVcpus: { one: Err | null; vcpus: number; aboveMax: Err | null };
  save: {
    ms: number;
    bytes: number;
    maxLoopLagMs: number;
    infoAfter: Info | null;
    names: string[];
    suspendLine?: string;
  };
  restore: { domid: number; ms: number; resumedLine: string; state: string; names: string[] };
  shutdown: { state: string; poweroffLine?: string };
  destroy: { ms: number; info: Info | null; names: string[] };
  bad: Record<
    | "missingKernel"
    | "tooMuchMemory"
    | "badName"
    | "notAKernel"
    | "pauseUnknown"
    | "unpauseUnknown"
    | "destroyUnknown"
    | "destroyDom0"
    | "duplicateName",
    Err | null
  > & { infoUnknown: Info | null };
  namesAfterBad: string[];
  vif: {
    createMs: number;
    portsBefore: string[];
    domid?: number;
    ports?: string[];
    networks?: number[];
    error?: string;
    portsAfter: string[];
    names: string[];
  };
  timings: Phase[];
  closeWhileBusy: { pending: string; after: Err | null };
  namesAtEnd: string[];
}

let node: XenNode | undefined;
let report: Report | undefined;
let xlListAfter = "";

test.before(async (t) => {
  // Boot under TCG on a shared 2-core machine plus the whole scenario: minutes, not seconds.
  t.timeout(45 * 60_000);
  if (!existsSync(HELLO)) throw new Error(`${HELLO} is missing: run \`make -C native\` (npm run setup does)`);
  node = await startXenNode({ name: "libxl-driver" });
  report = await runDom0Selftest<Report>(
    node,
    `${process.execPath} ${SELFTEST} --kernel ${HELLO} --bridge ${node.bridge} --rounds 3`,
    600_000,
  );
  xlListAfter = (await node.exec("xl list")).stdout;
});
test.after.always(async () => {
  await node?.stop();
});

function rep(): Report {
  if (!report) throw new Error("no selftest report");
  return report;
}

test.serial("the selftest ran to the end", (t) => {
  t.is(rep().fatal, undefined);
  t.is(rep().cleanedUp, undefined);
});

test.serial("host info is real", (t) => {
  const h = rep().host;
  t.regex(h.xenVersion, /^4\.17/);
  t.true(h.cpus >= 1);
  t.true(h.freeMemoryKiB > 64 * 1024 && h.freeMemoryKiB < h.totalMemoryKiB);
  t.true(rep().namesBefore.includes("Domain-0"));
});

test.serial("createPaused: the domain exists, paused, findable by name, and has run no code", (t) => {
  const r = rep();
  t.true(r.create.domid > 0);
  t.is(r.afterCreate.info.state, "paused");
  t.is(r.afterCreate.info.domid, r.create.domid);
  t.is(r.afterCreate.byName, r.create.domid);
  t.not(r.afterCreate.info.uuid, "00000000-0000-0000-0000-000000000000");
  t.is(r.afterCreate.uuid, r.afterCreate.info.uuid, "XenStore's /vm/<uuid> agrees");
  t.is(r.afterCreate.info.maxMemoryKiB >= 32 * 1024, true);
  t.true(r.afterCreate.names.some((n) => n.startsWith("sf-selftest-")));
  t.deepEqual(r.consoleWhilePaused, []);
  t.log(
    `create ${r.create.ms} ms; worst event-loop stall during it ${r.create.maxLoopLagMs} ms (idle machine: ${r.idleLoopLagMs} ms)`,
  );
  // A blocking create would stall the loop for the whole build; async, only scheduling noise remains.
  t.true(r.create.maxLoopLagMs < r.create.ms / 2, "the event loop kept running during create");
});

test.serial("unpause: the guest boots and prints its ready line; console pty is reported", (t) => {
  const r = rep();
  t.regex(r.unpause.readyLine, /hello: ready in/);
  t.true(["running", "blocked"].includes(r.unpause.state));
  t.regex(r.consolePath, /^\/dev\/pts\/\d+$/);
  t.log(`unpause ${r.unpause.ms} ms, ready line ${r.unpause.readyAfterMs} ms after unpause`);
});

test.serial("stats: xenstat sees the running domain, its vcpu, memory and vif", (t) => {
  const s = rep().stats;
  t.is(s.running.domid, rep().create.domid);
  t.true(BigInt(s.running.cpuTimeNs) > 0n);
  t.true(s.running.memoryBytes >= 16 * 1024 * 1024);
  t.is(s.running.vcpus, 1);
  t.deepEqual(s.running.networks, []);
  t.is(s.unknown, null);
});

test.serial("pause: the domain stops consuming CPU and printing; unpause resumes it", (t) => {
  const r = rep();
  t.is(r.pause.state, "paused");
  t.is(r.pause.cpuTimeAfter2s, r.pause.cpuTimeBefore);
  t.is(r.pause.newLinesWhilePaused, 0);
  t.true(["running", "blocked"].includes(r.resumed.state));
});

test.serial(
  "setMemory lowers the ceiling; growing past the max and vcpus past max_vcpus are refused",
  (t) => {
    const r = rep();
    t.true(r.setMemory.maxMemoryKiBAfter < r.setMemory.maxMemoryKiBBefore, JSON.stringify(r.setMemory));
    t.is(r.setMemory.xenstoreTarget, String(24 * 1024));
    t.is(r.setMemory.tooBig?.code, "InvalidArgument");
    t.is(r.setVcpus.one, null);
    t.is(r.setVcpus.vcpus, 1);
    t.is(r.setVcpus.aboveMax?.code, "InvalidArgument", "4 vcpus on a 1-vcpu domain");
  },
);

test.serial("XenStore: reads the guest's keys, lists a directory, reports a missing key as absent", (t) => {
  const r = rep();
  t.is(r.xenstore.name, r.afterCreate.info.name);
  t.true((r.xenstore.controlKeys ?? []).includes("shutdown"), JSON.stringify(r.xenstore.controlKeys));
  t.is(r.xenstore.missing, null);
});

test.serial("save to an fd: the guest suspends, the domain is gone, the image holds its memory", (t) => {
  const r = rep();
  t.regex(r.save.suspendLine ?? "", /hello: suspending at tick/);
  t.is(r.save.infoAfter, null);
  t.false(r.save.names.some((n) => n.startsWith("sf-selftest-")));
  t.true(r.save.bytes > 16 * 1024 * 1024, `save image ${r.save.bytes} bytes`);
  t.log(`save ${r.save.ms} ms (${r.save.bytes} bytes), worst loop stall ${r.save.maxLoopLagMs} ms`);
  t.true(r.save.maxLoopLagMs < r.save.ms / 2, "the event loop kept running during save");
});

test.serial("restore from the fd: same guest continues counting in a new domain", (t) => {
  const r = rep();
  t.regex(r.restore.resumedLine, /hello: resumed at tick \d+ \(restored domain\)/);
  t.not(r.restore.domid, r.create.domid);
  t.true(["running", "blocked"].includes(r.restore.state));
  t.log(`restore ${r.restore.ms} ms`);
});

test.serial(
  "shutdown(poweroff): the guest powers off and stays listed with its reason until destroy",
  (t) => {
    const r = rep();
    t.is(r.shutdown.state, "shutdown:poweroff");
    t.regex(r.shutdown.poweroffLine ?? "", /hello: poweroff/);
    t.is(r.destroy.info, null);
    t.deepEqual(r.destroy.names, r.namesBefore);
    t.log(`destroy ${r.destroy.ms} ms`);
  },
);

test.serial("a vif on the node bridge: vif-bridge plugs vif<domid>.0 into it; destroy unplugs it", (t) => {
  const v = rep().vif;
  t.log(`create with a vif: ${v.createMs} ms`);
  if (v.domid === undefined) {
    // vif-bridge is libxl's hotplug script, run as a child process; on a heavily loaded emulated
    // node it can outlast libxl's fixed 40 s timeout (xl create fails the same way). That is the
    // environment, not the driver, but the failure must still be clean.
    t.regex(v.error ?? "", /vif-bridge online because of timeout/);
    t.log(`vif-bridge timed out (machine load); checked only that nothing leaked: ${v.error}`);
  } else {
    t.deepEqual(
      v.ports?.filter((p) => !v.portsBefore.includes(p)),
      [`vif${v.domid}.0`],
    );
    t.deepEqual(v.networks, [0]);
  }
  t.deepEqual(v.portsAfter, v.portsBefore);
  t.deepEqual(v.names, rep().namesBefore);
});

test.serial("bad input: clear errors with the right codes", (t) => {
  const b = rep().bad;
  t.is(b.missingKernel?.code, "InvalidArgument");
  t.regex(b.missingKernel?.message ?? "", /kernel file not readable: \/nonexistent\/kernel/);
  t.is(b.tooMuchMemory?.code, "OutOfMemory");
  t.regex(b.tooMuchMemory?.message ?? "", /needs 65536 MiB/);
  t.is(b.badName?.code, "InvalidArgument");
  t.truthy(b.notAKernel, "a text file as kernel must fail");
  t.regex(b.notAKernel?.message ?? "", /ERROR_/);
  for (const k of ["pauseUnknown", "unpauseUnknown", "destroyUnknown"] as const)
    t.is(b[k]?.code, "NotFound", k);
  t.is(b.infoUnknown, null);
  t.is(b.destroyDom0?.code, "InvalidArgument");
  t.is(b.duplicateName?.code, "InvalidArgument");
});

test.serial("nothing is left behind: the driver's list and xl's agree on Domain-0 alone", (t) => {
  const r = rep();
  t.deepEqual(r.namesAfterBad, r.namesBefore);
  t.deepEqual(r.namesAtEnd, r.namesBefore);
  const xlNames = xlListAfter
    .trim()
    .split("\n")
    .slice(1)
    .map((l) => l.split(/\s+/)[0]);
  t.deepEqual(xlNames, ["Domain-0"]);
});

test.serial("close() with a call in flight: no crash, the call settles, later calls are refused", (t) => {
  const c = rep().closeWhileBusy;
  t.regex(c.pending, /^listed \d+$|connection is closed/);
  t.regex(c.after?.message ?? "", /connection is closed/);
});

test.serial("timings: driver vs xl CLI (figures only)", (t) => {
  const rows = rep().timings;
  t.is(rows.length, 3);
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
  for (const phase of ["create", "unpause", "destroy"] as const) {
    const d = median(rows.map((r) => r.driver[phase]));
    const x = median(rows.map((r) => r.xl[phase]));
    t.log(`${phase}: driver ${d} ms, xl ${x} ms (median of ${rows.length})`);
  }
  t.pass();
});
