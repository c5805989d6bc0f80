// The lean backend's in-process save and restore inside dom0 of an emulated Xen node: save-selftest.ts
// suspends `hello` to disk and resumes it (twice), suspends it as a migration source and cancels,
// crosses streams with the libxl backend and feeds bad streams; this test checks its report.
import test from "ava";
import { join } from "node:path";
import { REPO_ROOT } from "../../../../lib/paths.js";
import { dom0Selftest } from "../../../../e2e/harness/dom0-selftest.js";

const HELLO = join(REPO_ROOT, "native/build/hello/hello");
const LIB = join(REPO_ROOT, "native/build/libsfxen/libsfxen.so");
const SELFTEST = join(REPO_ROOT, "dist/bundle/lean-save-selftest.mjs");

interface Err {
  code?: string;
  message: string;
}
interface Round {
  allPages: boolean;
  saveMs: number;
  restoreMs: number;
  restorePausedMs: number;
  unpauseMs: number;
  bytes: number;
  goneAfterSave: boolean;
  savePhases?: Record<string, number>;
  restorePhases?: Record<string, number>;
  wirePhases?: Record<string, number>;
  vifMaster?: string;
  suspended?: string;
  resumed?: string;
  next?: string;
}
interface Report {
  fatal?: string;
  loadAvgAtStart: number;
  before?: string;
  rounds: Round[];
  cancel: {
    outMs: number;
    cancelMs: number;
    state: string;
    sameDomain: boolean;
    cancelled?: string;
    after?: string;
    live: Err & { ok?: boolean };
    stateAfterLive?: string;
  };
  cross: { leanToLibxl: boolean; libxlToLean?: string; vifMaster?: string };
  bad: {
    garbage: Err;
    truncated: Err;
    noBridge: Err & { ms?: number };
    leftovers: number;
    xenstoreOrphans: string[];
  };
  xl: { saveMs: number; restoreMs: number };
  stateAtEnd?: string;
}

const sr = dom0Selftest<Report>({
  name: "xen-lean-save",
  files: [HELLO, LIB, SELFTEST],
  cmd: (node) => `${process.execPath} ${SELFTEST} --kernel ${HELLO} --bridge ${node.bridge}`,
  timeoutMs: 900_000,
  onReport: (report, log) => {
    const rs = report.rounds ?? [];
    for (const [i, x] of rs.entries())
      log(
        `round ${i + 1} phases: save ${JSON.stringify(x.savePhases)}; restore ${JSON.stringify(x.restorePhases)}; vifs ${JSON.stringify(x.wirePhases)}`,
      );
    log(
      `load ${report.loadAvgAtStart}; rounds ${rs.map((x) => `${x.allPages ? "all pages" : "zero pages skipped"} ${x.bytes} B`).join(", ")}; lean save ${rs.map((x) => x.saveMs).join("/")} ms, restore ${rs.map((x) => x.restoreMs).join("/")} ms (paused ${rs.map((x) => x.restorePausedMs).join("/")} + unpause ${rs.map((x) => x.unpauseMs).join("/")}); xl save ${report.xl?.saveMs} ms, restore ${report.xl?.restoreMs} ms; suspend-cancel ${report.cancel?.outMs}+${report.cancel?.cancelMs} ms`,
    );
  },
});
const rep = () => sr.report();

test.serial("the selftest ran to the end", (t) => {
  t.is(rep().fatal, undefined, JSON.stringify({ cross: rep().cross, bad: rep().bad }));
});

test.serial(
  "suspend to disk and resume: the console ticks on from where it stopped, the vif is on the bridge",
  (t) => {
    t.regex(rep().before ?? "", /hello: tick 2/);
    t.deepEqual(
      rep().rounds.map((r) => r.allPages),
      [true, false, false],
    );
    for (const r of rep().rounds) {
      t.true(r.goneAfterSave, "save leaves no domain");
      // hello writes a few dozen of its 4096 pages: the others go as "populate, no data" (zeropages.c),
      // and the guest below still resumes at its tick, so what it had written came back.
      if (r.allPages) t.true(r.bytes > 16 * 1024 * 1024 * 0.9, `every page with its data (${r.bytes} bytes)`);
      else
        t.true(
          r.bytes > 16 * 1024 && r.bytes < 2 * 1024 * 1024,
          `the checkpoint holds the pages hello wrote, not its 16 MiB (${r.bytes} bytes)`,
        );
      t.is(r.vifMaster, "xenbr0");
      const at = Number(/suspending at tick (\d+)/.exec(r.suspended ?? "")?.[1]);
      const back = Number(/resumed at tick (\d+)/.exec(r.resumed ?? "")?.[1]);
      t.true(Number.isInteger(at), `suspend line: ${r.suspended}`);
      t.is(back, at, "resumes at the tick it suspended at");
      t.regex(r.next ?? "", new RegExp(`hello: tick ${back + 1}\\b`));
    }
  },
);

test.serial("a migration source's suspend is cancelled in place: the same domain runs on", (t) => {
  const c = rep().cancel;
  t.is(c.state, "shutdown/suspend");
  t.true(c.sameDomain);
  t.regex(c.cancelled ?? "", /suspend cancelled/);
  t.regex(c.after ?? "", /hello: tick \d+/);
});

test.serial("live pre-copy of a PV guest fails before touching it when Xen cannot track dirty pages", (t) => {
  const l = rep().cancel.live;
  // On a Xen with shadow paging it would succeed and leave the domain suspended.
  if (l.ok) return t.is(rep().cancel.stateAfterLive, "shutdown");
  t.regex(l.message, /enable logdirty/i);
  t.not(rep().cancel.stateAfterLive, "shutdown");
});

test.serial("streams cross between the lean and libxl backends both ways", (t) => {
  t.true(rep().cross.leanToLibxl);
  t.regex(rep().cross.libxlToLean ?? "", /restored domain/);
  t.is(rep().cross.vifMaster, "xenbr0");
  t.true(["running", "blocked"].includes(rep().stateAtEnd ?? ""), `state at the end: ${rep().stateAtEnd}`);
});

test.serial("bad streams fail clearly and leave no domain or XenStore node", (t) => {
  const b = rep().bad;
  t.is(b.garbage.code, "InvalidArgument");
  t.regex(b.garbage.message, /not a Xen migration stream/);
  t.regex(
    b.truncated.message,
    /^restore lean-save-bad: restore of domain \d+: (xc_domain_restore|reading a record)/,
  );
  // The vif step fails while the fill waits on a silent socket: the restore ends at once.
  t.is(b.noBridge.code, "NotFound", JSON.stringify(b.noBridge));
  t.regex(b.noBridge.message, /bridge sfnobr0 does not exist/);
  t.true((b.noBridge.ms ?? Infinity) < 10_000, `failed after ${b.noBridge.ms} ms`);
  t.is(b.leftovers, 0);
  t.deepEqual(b.xenstoreOrphans, []);
});

test.serial("xl sees only Domain-0 at the end", (t) => {
  t.deepEqual(sr.xlNames(), ["Domain-0"]);
});
