// The CRI log writer against real files: format, line splitting, rotation, and both console sources.
import test from "ava";
import { appendFileSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConsolePump, CriLogWriter } from "./cri-log.js";

const LINE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z stdout ([FP]) (.*)$/;

function records(path: string): [string, string][] {
  return readFileSync(path, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => {
      const m = LINE.exec(l);
      if (!m) throw new Error(`not a CRI log line: ${l}`);
      return [m[1]!, m[2]!];
    });
}

test("console bytes become CRI log records; long lines are split; reopen follows rotation", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "sf-crilog-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, "c", "0.log");
  const w = new CriLogWriter(path);
  w.write("hel");
  w.write("lo\r\nsecond line\r\n");
  w.write("x".repeat(16 * 1024 + 5));
  w.write("\n");
  renameSync(path, `${path}.1`); // the kubelet rotates ...
  await w.reopen(); // ... and asks us to reopen
  w.write("after rotation\nunterminated");
  await w.close();
  t.deepEqual(records(`${path}.1`), [
    ["F", "hello"],
    ["F", "second line"],
    ["P", "x".repeat(16 * 1024)],
    ["F", "xxxxx"],
  ]);
  t.deepEqual(records(path), [
    ["F", "after rotation"],
    ["F", "unterminated"],
  ]);
});

test("a xenconsoled guest log is tailed from its end into the CRI log", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "sf-crilog-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const consoleLog = join(dir, "guest-sf-abc.log");
  writeFileSync(consoleLog, "output of an earlier domain of this name\n");
  const pump = new ConsolePump({ kind: "xenconsoled-log", path: consoleLog }, join(dir, "out.log"));
  await new Promise((r) => setTimeout(r, 200));
  appendFileSync(consoleLog, "hello: ready\r\ncounter 1\r\n");
  const deadline = Date.now() + 5000;
  while (!readFileSync(join(dir, "out.log"), "utf8").includes("counter 1") && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 50));
  await pump.stop();
  t.deepEqual(records(join(dir, "out.log")), [
    ["F", "hello: ready"],
    ["F", "counter 1"],
  ]);
});

test("a guest that never prints a newline: its console comes out as 16 KiB P records, not a growing buffer", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "sf-crilog-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const consoleLog = join(dir, "guest-sf-nonl.log");
  writeFileSync(consoleLog, "");
  const out = join(dir, "out.log");
  const pump = new ConsolePump({ kind: "xenconsoled-log", path: consoleLog }, out);
  await new Promise((r) => setTimeout(r, 200));
  // 40 KiB and 1 byte without a newline, a multi-byte character split across the appends.
  const e = Buffer.from("\u00e9");
  appendFileSync(consoleLog, Buffer.concat([Buffer.from("y".repeat(20 * 1024)), e.subarray(0, 1)]));
  await new Promise((r) => setTimeout(r, 300));
  appendFileSync(consoleLog, Buffer.concat([e.subarray(1), Buffer.from("z".repeat(20 * 1024))]));
  const deadline = Date.now() + 5000;
  while (records(out).length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const got = records(out);
  t.deepEqual(
    got.map(([k, v]) => [k, v.length]),
    [
      ["P", 16 * 1024],
      ["P", 16 * 1024],
    ],
    "written before any newline, in pieces of the CRI line limit",
  );
  appendFileSync(consoleLog, "\n");
  const deadline2 = Date.now() + 5000;
  while (records(out).length < 3 && Date.now() < deadline2) await new Promise((r) => setTimeout(r, 50));
  await pump.stop();
  const all = records(out);
  t.is(all.length, 3);
  t.is(all[2]![0], "F");
  t.is(all.map(([, v]) => v).join(""), "y".repeat(20 * 1024) + "\u00e9" + "z".repeat(20 * 1024));
});
