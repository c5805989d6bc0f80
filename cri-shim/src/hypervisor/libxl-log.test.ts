// The capture of libxl's log through its pipe, with the real xentoollog (no Xen needed): lines a
// logger writes are seen by since(), an empty pipe is drained without an error, and a burst larger
// than one read arrives whole.
import test from "ava";
import koffi from "koffi";
import { logger } from "../../../lib/log.js";
import { LIBXENTOOLLOG, libxlBindings } from "./libxl-ffi.js";
import { LibxlLogCapture } from "./libxl-log.js";

const xtlLog = koffi
  .load(LIBXENTOOLLOG)
  .func("void xtl_log(void *logger, int level, int errnoval, const char *context, const char *fmt, ...)");

test("lines libxl's logger writes are captured; draining an empty pipe is quiet", (t) => {
  const capture = LibxlLogCapture.open(libxlBindings(), logger("libxl-log-test"), "debug");
  t.teardown(() => capture.close());
  const before = capture.mark();
  for (let i = 0; i < 5; i++) capture.drain(); // nothing written: no throw, no line
  t.deepEqual(capture.since(before), []);
  // XTL_ERROR = 8 (xentoollog.h): logged as "<context>: error: <message>".
  xtlLog(capture.xtlLogger, 8, -1, "libxl", "%s", "str", "kernel file not found");
  const lines = capture.since(before);
  t.is(lines.length, 1);
  t.regex(lines[0]!, /libxl: error: kernel file not found/);
  // More than one buffer's worth in all: every line arrives, in order.
  const mark = capture.mark();
  const long = "x".repeat(900);
  // (The pipe holds 64 KiB and libxl's end never blocks: the capture's timer drains it meanwhile.)
  for (let i = 0; i < 150; i++) {
    xtlLog(capture.xtlLogger, 8, -1, "libxl", "%s %d", "str", long, "int", i);
    if (i % 20 === 19) capture.drain();
  }
  const burst = capture.since(mark);
  t.is(burst.length, 150);
  t.regex(burst[149]!, / 149$/);
});
