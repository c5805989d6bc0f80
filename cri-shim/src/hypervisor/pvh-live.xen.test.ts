// Live (pre-copy) migration of a PVH guest through the libxl driver, on one emulated Xen node with
// HAP: live-selftest.ts builds `hello` as PVH, lets it tick, then moves it with migrateOut(live)
// into restore() on a second libxl context. The guest must have ticked on the source while its
// memory was copied, and count on in the new domain from where it stopped. (A PV guest cannot do
// this here: Debian's Xen has no shadow paging, so PV log-dirty is refused.)
import test from "ava";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "../../../lib/paths.js";
import { startXenNode } from "../../../e2e/xen-node/index.js";

const HELLO = join(REPO_ROOT, "native/build/hello/hello");
const LIVE_SELFTEST = join(REPO_ROOT, "dist/bundle/live-selftest.mjs");

interface Report {
  fatal?: string;
  create?: { domid: number; ms: number; info?: { state: string } };
  migrateOut?: { ok: boolean; ms?: number; error?: string };
  restore?: { domid: number | string; ms: number };
  sourceAfter?: { state: string; shutdownReason?: string } | null;
  sourceLines?: string[];
  targetLines?: string[];
  resumed?: string;
  targetInfo?: { state: string } | null;
  ticksDuringMove?: number;
}

const tickOf = (l: string): number | undefined => {
  const m = /hello: tick (\d+)$/.exec(l);
  return m ? Number(m[1]) : undefined;
};

test("a PVH hello moves live through libxl (pre-copy) and keeps counting", async (t) => {
  t.timeout(30 * 60_000);
  for (const f of [HELLO, LIVE_SELFTEST])
    if (!existsSync(f)) return t.fail(`${f} is missing (npm run build, make -C native)`);
  const node = await startXenNode({ name: "pvh-live" });
  t.teardown(() => node.stop());
  const caps = (await node.exec("xl info")).stdout;
  t.regex(caps, /^virt_caps\s*:.*\bhap\b/m, "the node has HAP");
  const r = await node.exec(
    `${process.execPath} ${LIVE_SELFTEST} --kernel ${HELLO} --guest-type pvh --memory-mib 32`,
    {
      timeoutMs: 20 * 60_000,
    },
  );
  const last = r.stdout.trim().split("\n").at(-1) ?? "";
  let report: Report;
  try {
    report = JSON.parse(last) as Report;
  } catch {
    return t.fail(
      `live-selftest printed no report (exit ${r.code}):\n${r.stdout.slice(-2000)}\n${r.stderr.slice(-4000)}`,
    );
  }
  t.log(
    JSON.stringify({
      create: report.create,
      migrateOut: report.migrateOut,
      restore: report.restore,
      ticksDuringMove: report.ticksDuringMove,
    }),
  );
  t.is(report.fatal, undefined, report.fatal);
  t.true(
    report.migrateOut?.ok,
    `migrateOut(live): ${report.migrateOut?.error ?? ""}\n${r.stderr.slice(-3000)}`,
  );
  t.is(typeof report.restore?.domid, "number", `restore: ${String(report.restore?.domid)}`);
  // The source stopped only at the end: it printed "suspending at tick N" and N is its last tick.
  const src = report.sourceLines ?? [];
  const suspended = src.map((l) => /hello: suspending at tick (\d+)/.exec(l)).find(Boolean);
  t.truthy(suspended, `source lines: ${src.join(" | ")}`);
  const n = Number(suspended?.[1]);
  const srcTicks = src.map(tickOf).filter((x): x is number => x !== undefined);
  t.is(srcTicks.at(-1), n);
  // Continuity in the new domain: "resumed at tick N (restored domain)", then N+1, N+2, ...
  t.regex(report.resumed ?? "", new RegExp(`hello: resumed at tick ${n} \\(restored domain\\)`));
  const dstTicks = (report.targetLines ?? []).map(tickOf).filter((x): x is number => x !== undefined);
  t.true(dstTicks.length >= 1 && dstTicks[0] === n + 1, `target ticks ${dstTicks.join(",")} after ${n}`);
  t.true(report.targetInfo !== null && ["running", "blocked"].includes(report.targetInfo?.state ?? ""));
  // Nothing left behind.
  t.notRegex((await node.exec("xl list")).stdout, /sf-live-/);
});
