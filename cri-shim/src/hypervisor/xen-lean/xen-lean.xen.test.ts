// The lean backend inside dom0 of an emulated Xen node: selftest.ts creates `hello` from the pool
// and cold, reads its console line, destroys it, builds, saves and restores it as PVH (through libxl,
// its vif wired in-process), destroys creates at once, feeds it bad input and kills a process
// mid-prepare; this test checks its report (no XenStore node or xenbus device of a gone domid) and,
// independently, that `xl list` shows nothing left behind.
import test from "ava";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "../../../../lib/paths.js";
import { startXenNode, type XenNode } from "../../../../e2e/xen-node/index.js";

const HELLO = join(REPO_ROOT, "native/build/hello/hello");
const LIB = join(REPO_ROOT, "native/build/libsfxen/libsfxen.so");
const SELFTEST = join(REPO_ROOT, "dist/bundle/lean-selftest.mjs");

interface Leftovers {
  domain: boolean;
  xenstore: boolean;
  backend: boolean;
  vif: boolean;
}
interface VifState {
  master?: string;
  script?: string;
  hotplugStatus?: string;
}
/** XenStore directories and kernel xenbus devices of domids Xen does not have. */
interface Orphans {
  xenstore: string[];
  devices: string[];
}
interface Err {
  code?: string;
  message: string;
}
interface Report {
  fatal?: string;
  poolAfterFill: Record<string, number>;
  shellsInXen: number;
  warm: {
    ms: number;
    attachedMs: number;
    state?: string;
    vifMaster?: string;
    ready?: string;
    destroyMs: number;
    after: Leftovers;
  };
  lists: {
    lean: { domid: number; name: string; state: string; memoryKiB: number }[];
    libxl: { domid: number; name: string; state: string; memoryKiB: number }[];
    found?: number;
    warm: number;
    missing: unknown;
  };
  cold: { ms: number; ready?: string; after: Leftovers };
  pvh: {
    created: VifState;
    ready?: string;
    restored: VifState & { state?: string };
    restoreMs: number;
    resumed?: string;
    savedAfter: Leftovers;
    after: Leftovers;
  };
  bad: Record<"notAKernel" | "tooBig" | "noBridge" | "pvhNoBridge", Err>;
  badLeftovers: string[];
  badXenstore: string[];
  badDevices: string[];
  churn: Orphans & { churned: number; settledMs: number; removedAgain: number };
  finalOrphans: Orphans;
  shellsAfterClose: number;
  kill: { shellsAfterKill: number; remaining: number; nodesLeft: number };
}

let node: XenNode | undefined;
let report: Report | undefined;
let xlList = "";

test.before(async (t) => {
  t.timeout(30 * 60_000);
  for (const f of [HELLO, LIB])
    if (!existsSync(f)) throw new Error(`${f} is missing: run \`make -C native\` (npm run setup does)`);
  node = await startXenNode({ name: "xen-lean" });
  const r = await node.exec(`${process.execPath} ${SELFTEST} --kernel ${HELLO} --bridge ${node.bridge}`, {
    timeoutMs: 900_000,
  });
  const last = r.stdout.trim().split("\n").pop() ?? "";
  if (!last.startsWith("{"))
    throw new Error(`selftest printed no report (exit ${r.code}): ${r.stderr.slice(-3000)}`);
  report = JSON.parse(last) as Report;
  t.log(
    `warm ${Math.round(report.warm.ms)} ms (vif attached ${Math.round(report.warm.attachedMs)} ms), cold ${Math.round(report.cold.ms)} ms, destroy ${Math.round(report.warm.destroyMs)} ms`,
  );
  xlList = (await node.exec("xl list")).stdout;
});
test.after.always(async () => {
  await node?.stop();
});

function rep(): Report {
  if (!report) throw new Error("no selftest report");
  return report;
}
const clean: Leftovers = { domain: false, xenstore: false, backend: false, vif: false };

test.serial("the selftest ran to the end", (t) => {
  t.is(rep().fatal, undefined);
});

test.serial("the pool fills to its depth with shells Xen can see", (t) => {
  t.deepEqual(Object.values(rep().poolAfterFill), [1]);
  t.is(rep().shellsInXen, 1);
});

test.serial("the lean list (one hypercall) says what libxl's says, and finds a domain by its name", (t) => {
  const l = rep().lists;
  t.deepEqual(l.lean, l.libxl);
  t.deepEqual(
    l.lean.map((d) => [d.name, d.state]),
    [
      ["Domain-0", "running"],
      ["lean-warm", "paused"],
    ],
  );
  t.true(l.lean[1]!.memoryKiB >= 4096, "the guest's memory is counted");
  t.is(l.found, l.warm);
  t.is(l.missing, null);
});

test.serial("a create from the pool is paused, its vif on the bridge, and hello prints its line", (t) => {
  const w = rep().warm;
  t.is(w.state, "paused");
  t.is(w.vifMaster, "xenbr0");
  t.regex(w.ready ?? "", /hello: ready in/);
});

test.serial("a cold create boots too", (t) => {
  t.regex(rep().cold.ready ?? "", /hello: ready in/);
});

test.serial(
  "a PVH guest's vif is wired in-process (libxl makes no nic, no hotplug script runs), after create and restore",
  (t) => {
    const p = rep().pvh;
    t.log(`PVH restore ${Math.round(p.restoreMs)} ms`);
    const wired = {
      master: "xenbr0",
      script: "",
      hotplugStatus: "connected",
      libxlDevice: false,
      frontendOwnedByGuest: true,
    };
    t.deepEqual(p.created, wired);
    t.deepEqual(p.restored, { ...wired, state: "paused" });
    t.regex(p.ready ?? "", /hello: ready in/);
    t.regex(p.resumed ?? "", /hello: resumed/);
    t.deepEqual(
      p.savedAfter,
      clean,
      "libxl's save destroys the domain: its in-process vifs' backends go too",
    );
    t.deepEqual(p.after, clean);
  },
);

test.serial("destroy leaves no domain, XenStore node or vif", (t) => {
  t.deepEqual(rep().warm.after, clean);
  t.deepEqual(rep().cold.after, clean);
});

test.serial("bad input gives clear errors and leaks nothing", (t) => {
  const b = rep().bad;
  t.is(b.notAKernel.code, "InvalidArgument");
  t.regex(b.notAKernel.message, /not a Xen PV kernel/);
  t.is(b.tooBig.code, "OutOfMemory");
  t.regex(b.tooBig.message, /needs 900000 MiB/);
  t.is(b.noBridge.code, "NotFound");
  t.regex(b.noBridge.message, /bridge nosuchbr0 does not exist/);
  t.is(b.pvhNoBridge.code, "NotFound");
  t.regex(b.pvhNoBridge.message, /bridge nosuchbr0 does not exist/);
  t.deepEqual(rep().badLeftovers, []);
  t.deepEqual(rep().badXenstore, []);
  t.deepEqual(rep().badDevices, []);
});

test.serial(
  "creates destroyed at once leave no XenStore node or xenbus device once what netback and xenconsoled wrote late is swept",
  (t) => {
    const c = rep().churn;
    t.log(
      `${c.churned} creates destroyed at once: ${c.removedAgain} directories put back and removed again, settled in ${c.settledMs} ms`,
    );
    t.is(c.churned, 4);
    t.deepEqual(c.xenstore, []);
    t.deepEqual(c.devices, []);
  },
);

test.serial("closing the pool destroys its shells", (t) => {
  t.is(rep().shellsAfterClose, 0);
});

test.serial("a process killed while preparing shells leaves nothing after the next start's recovery", (t) => {
  const k = rep().kill;
  t.true(k.shellsAfterKill >= 1, "the killed process had shells when it died");
  t.is(k.remaining, 0);
  t.is(k.nodesLeft, 0);
});

test.serial("xl sees only Domain-0 at the end", (t) => {
  const names = xlList
    .trim()
    .split("\n")
    .slice(1)
    .map((l) => l.split(/\s+/)[0]);
  t.deepEqual(names, ["Domain-0"]);
  t.deepEqual(rep().finalOrphans, { xenstore: [], devices: [] });
});
