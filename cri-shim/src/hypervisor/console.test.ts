// ConsoleTail on a real file: lines appended in pieces, a file that appears late, truncation.
import test from "ava";
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConsoleTail, consoleDirectoryWatches, guestConsoleLogPath } from "./console.js";

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

test.serial(
  "a hundred tails in one directory share one watch, read on change without polling, and leave none",
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), "sf-console-"));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const before = consoleDirectoryWatches.size;
    // An hour between safety polls: only the directory's change events can deliver these lines in time.
    const tails = await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        new ConsoleTail(join(dir, `guest-${i}.log`), { watchedPollMs: 3_600_000 }).start(),
      ),
    );
    t.teardown(() => tails.forEach((x) => x.stop()));
    t.true(tails.every((x) => x.watching));
    t.is(consoleDirectoryWatches.size, before + 1, "one watch for the directory");
    const got = Promise.all(tails.map((x, i) => x.waitFor(new RegExp(`^hello ${i}$`), 5000)));
    tails.forEach((_, i) => writeFileSync(join(dir, `guest-${i}.log`), `hello ${i}\n`));
    await got;
    // More output to one file reaches its tail only.
    const seven: string[] = collect(tails[7]!);
    const eight: string[] = collect(tails[8]!);
    appendFileSync(join(dir, "guest-7.log"), "tick 1\n");
    await tails[7]!.waitFor(/tick 1/, 5000);
    t.deepEqual(seven, ["tick 1"]);
    t.deepEqual(eight, []);
    tails.forEach((x) => x.stop());
    t.is(consoleDirectoryWatches.size, before, "the watch closes with its last tail");
  },
);

test("a tail whose directory cannot be watched polls", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "sf-console-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, "later", "guest-x.log");
  const tail = await new ConsoleTail(path, { pollMs: 10 }).start();
  t.teardown(() => tail.stop());
  t.false(tail.watching, "no such directory yet: polling");
  const { mkdirSync } = await import("node:fs");
  mkdirSync(join(dir, "later"));
  writeFileSync(path, "late line\n");
  await tail.waitFor(/late line/, 5000);
  t.pass();
});

test.serial("a tail stopped while it starts starts nothing: no watch, no timer left", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "sf-console-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, "guest-s.log");
  writeFileSync(path, "old\n");
  const before = consoleDirectoryWatches.size;
  const tail = new ConsoleTail(path, { fromEnd: true });
  const starting = tail.start();
  tail.stop();
  await starting;
  t.false(tail.watching);
  t.is(consoleDirectoryWatches.size, before);
  const lines = collect(tail);
  appendFileSync(path, "new\n");
  await new Promise((r) => setTimeout(r, 300));
  t.deepEqual(lines, [], "nothing read after stop");
});
