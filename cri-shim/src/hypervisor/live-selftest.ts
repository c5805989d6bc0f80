// Runs in dom0 of an emulated Xen node with HAP (pvh-live.xen.test.ts starts it): a `hello` domain
// built as PVH by the libxl driver moves live to a new domain on the same node, the driver's
// migrateOut(live: true) writing libxl's pre-copy stream into a pipe that a second libxl context's
// restore() reads. It asserts nothing: one JSON report on stdout for the test to check.
//   node dist/bundle/live-selftest.mjs --kernel <hello> [--guest-type pvh|pv] [--memory-mib 32]
import { closeSync } from "node:fs";
import { parseArgs } from "node:util";
import koffi from "koffi";
import { ConsoleTail, guestConsoleLogPath } from "./console.js";
import { LIBC } from "./libxl-ffi.js";
import { XenLibxl } from "./xen-libxl.js";
import type { DomainSpec, GuestType } from "./types.js";

const { values: args } = parseArgs({
  options: { kernel: { type: "string" }, "guest-type": { type: "string" }, "memory-mib": { type: "string" } },
});
if (!args.kernel) throw new Error("--kernel is required");
const guestType: GuestType = args["guest-type"] === "pv" ? "pv" : "pvh";
const memoryMiB = Number(args["memory-mib"] ?? 32);
const O_CLOEXEC = 0o2000000;

/** A pipe from libc (blocking ends, CLOEXEC: libxl clears it on its own dup for the save helper). */
function pipe(): [number, number] {
  const pipe2 = koffi.load(LIBC).func("int pipe2(_Out_ int *fds, int flags)") as unknown as (
    fds: number[],
    flags: number,
  ) => number;
  const fds = [-1, -1];
  if (pipe2(fds, O_CLOEXEC) !== 0) throw new Error(`pipe2 failed (errno ${koffi.errno()})`);
  return fds as [number, number];
}

const spec = (name: string): DomainSpec => ({
  name,
  kernelPath: args.kernel!,
  cmdline: "live-selftest",
  memoryMiB,
  vcpus: 1,
  guestType,
  vifs: [],
});

const report: Record<string, unknown> = { guestType, memoryMiB };
const ms = (t0: number): number => Math.round(performance.now() - t0);
const source = XenLibxl.open();
const target = XenLibxl.open();
const name = `sf-live-${process.pid}`;
const tails: ConsoleTail[] = [];
/** Every console line of one domain name, and a wait for the next one that matches. */
async function watch(
  domain: string,
): Promise<{ lines: string[]; waitFor(p: RegExp, ms: number): Promise<string> }> {
  const tail = await new ConsoleTail(guestConsoleLogPath(domain), { pollMs: 20 }).start();
  tails.push(tail);
  const lines: string[] = [];
  tail.on("line", (l: string) => lines.push(l));
  return {
    lines,
    waitFor: (p, timeoutMs) => {
      const seen = lines.find((l) => p.test(l));
      return seen !== undefined ? Promise.resolve(seen) : tail.waitFor(p, timeoutMs);
    },
  };
}

try {
  const onSource = await watch(name);
  let t0 = performance.now();
  const domid = await source.createPaused(spec(name));
  await source.unpause(domid);
  report.create = { domid, ms: ms(t0), info: await source.info(domid) };
  await onSource.waitFor(/hello: tick 3$/, 120_000);

  // The restored domain needs its own name while the source still exists (xl uses "--incoming").
  const moved = `${name}-moved`;
  const onTarget = await watch(moved);
  const [readEnd, writeEnd] = pipe();
  const linesAtStart = onSource.lines.length;
  t0 = performance.now();
  const [out, inDomid] = await Promise.all([
    source
      .migrateOut(domid, writeEnd, { live: true })
      .then(() => ({ ok: true as const, ms: ms(t0) }))
      .catch((err: unknown) => ({ ok: false as const, error: String(err) }))
      .finally(() => closeSync(writeEnd)),
    target
      .restore(spec(moved), readEnd)
      .catch((err: unknown) => String(err))
      .finally(() => closeSync(readEnd)),
  ]);
  report.migrateOut = out;
  // Ticks the guest printed after the move began: it ran while pre-copy sent its memory.
  report.ticksDuringMove = onSource.lines
    .slice(linesAtStart)
    .filter((l) => /hello: tick \d+$/.test(l)).length;
  report.restore = { domid: inDomid, ms: ms(t0) };
  report.sourceAfter = (await source.info(domid)) ?? null;
  // The suspend happened after pre-copy: the source's last tick is the one the guest printed before
  // "suspending"; the ticks it printed during pre-copy prove it ran while its memory was copied.
  report.sourceLines = onSource.lines.filter((l) => /hello: (tick|suspending)/.test(l));
  if (typeof inDomid === "number") {
    await onTarget.waitFor(/hello: resumed at tick \d+/, 60_000);
    const resumed = onTarget.lines.find((l) => /hello: resumed at tick/.test(l));
    await onTarget.waitFor(/hello: tick \d+$/, 30_000);
    report.targetLines = onTarget.lines.filter((l) => /hello: (tick|resumed)/.test(l));
    report.resumed = resumed;
    report.targetInfo = (await target.info(inDomid)) ?? null;
    await target.destroy(inDomid);
  }
  if (report.sourceAfter) await source.destroy(domid);
} catch (err) {
  report.fatal = err instanceof Error ? `${err.name}: ${err.message}\n${err.stack ?? ""}` : String(err);
} finally {
  for (const t of tails) t.stop();
  for (const d of await source.list().catch(() => []))
    if (d.name.startsWith(name)) await source.destroy(d.domid).catch(() => undefined);
}
process.stdout.write(
  JSON.stringify(report, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v)) + "\n",
);
process.exit(0);
