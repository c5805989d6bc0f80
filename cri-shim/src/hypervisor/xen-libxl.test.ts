// Host-side checks of the libxl driver: outside dom0 it must fail to open with a clear error and
// leave nothing behind (no fd, no SIGCHLD listener). Inside dom0 the .xen.test.ts covers the rest.
import test from "ava";
import { existsSync, readdirSync } from "node:fs";
import { XenLibxl } from "./xen-libxl.js";
import { HypervisorError } from "./types.js";

const inDom0 = existsSync("/dev/xen/privcmd");

test("open outside dom0: clear error, no fd or listener leaked", (t) => {
  if (inDom0) return t.pass("running in dom0: covered by xen-libxl.xen.test.ts");
  const fdsBefore = readdirSync("/proc/self/fd").length;
  const listenersBefore = process.listenerCount("SIGCHLD");
  const err = t.throws(() => XenLibxl.open(), { instanceOf: HypervisorError });
  t.regex(err?.message ?? "", /cannot open libxl.*ERROR_FAIL.*privileged command interface/s);
  t.is(readdirSync("/proc/self/fd").length, fdsBefore);
  t.is(process.listenerCount("SIGCHLD"), listenersBefore);
});
