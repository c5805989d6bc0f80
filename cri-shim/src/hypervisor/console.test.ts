// ConsoleTail on a real file: lines appended in pieces, a file that appears late, truncation.
import test from "ava";
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConsoleTail, guestConsoleLogPath } from "./console.js";

function collect(tail: ConsoleTail): string[] {
  const lines: string[] = [];
  tail.on("line", (l) => lines.push(l));
  return lines;
}

test("guestConsoleLogPath follows xenconsoled's naming", (t) => {
  t.is(guestConsoleLogPath("sf-abc"), "/var/log/xen/console/guest-sf-abc.log");
  t.is(guestConsoleLogPath("x", "/tmp/c"), "/tmp/c/guest-x.log");
});

test("emits complete lines only, across partial writes, CRLF stripped; file may appear late", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "sf-console-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, "guest-a.log");
  const tail = await new ConsoleTail(path, { pollMs: 10 }).start();
  t.teardown(() => tail.stop());
  const lines = collect(tail);
  writeFileSync(path, "hello: boot\r\nhello: rea");
  await tail.waitFor(/boot/, 5000);
  t.deepEqual(lines, ["hello: boot"]);
  appendFileSync(path, "dy in 1.000 ms\nhello: tick 1\n");
  await tail.waitFor(/tick 1/, 5000);
  t.deepEqual(lines, ["hello: boot", "hello: ready in 1.000 ms", "hello: tick 1"]);
});

test("fromEnd skips what was there; truncation restarts at 0", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "sf-console-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, "guest-b.log");
  writeFileSync(path, "old domain line\n");
  const tail = await new ConsoleTail(path, { pollMs: 10, fromEnd: true }).start();
  t.teardown(() => tail.stop());
  const lines = collect(tail);
  appendFileSync(path, "new 1\n");
  await tail.waitFor(/new 1/, 5000);
  writeFileSync(path, "after truncate\n");
  await tail.waitFor(/after truncate/, 5000);
  t.deepEqual(lines, ["new 1", "after truncate"]);
});

test("waitFor rejects on timeout with the path in the message", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "sf-console-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const tail = await new ConsoleTail(join(dir, "none.log"), { pollMs: 10 }).start();
  t.teardown(() => tail.stop());
  await t.throwsAsync(tail.waitFor(/x/, 50), { message: /none\.log within 50 ms/ });
});
