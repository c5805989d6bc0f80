// Bad input to startXenNode: a clear error before anything is started, and nothing left behind.
import test from "ava";
import { readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { existsSync } from "node:fs";
import { checkPrerequisites, startXenNode } from "./index.js";
import { xenstoredDaemon } from "./qemu.js";

const leftovers = (prefix: string): string[] => readdirSync(tmpdir()).filter((e) => e.startsWith(prefix));

test("rejects a name that is not a DNS-label-like word", async (t) => {
  await t.throwsAsync(startXenNode({ name: "Bad Name" }), { message: /invalid Xen node name 'Bad Name'/ });
  t.deepEqual(leftovers("superfluid-xen-Bad"), []);
});

test("rejects QEMU memory that leaves no room next to dom0", async (t) => {
  await t.throwsAsync(startXenNode({ name: "in-mem", memoryMiB: 1024, dom0MemoryMiB: 1024 }), {
    message: /memoryMiB \(1024\) must exceed dom0MemoryMiB \(1024\)/,
  });
  t.deepEqual(leftovers("superfluid-xen-in-mem-"), []);
});

test("rejects a CPU count QEMU/Xen would not boot with", async (t) => {
  await t.throwsAsync(startXenNode({ name: "in-cpu", cpus: 0 }), {
    message: /cpus must be an integer 1..8, got 0/,
  });
  await t.throwsAsync(startXenNode({ name: "in-cpu", cpus: 1.5 }), { message: /cpus must be an integer/ });
  t.deepEqual(leftovers("superfluid-xen-in-cpu-"), []);
});

test.serial(
  "dom0's XenStore daemon: oxenstored unless xenstored is asked for; anything else refused before a node starts",
  async (t) => {
    t.is(xenstoredDaemon(undefined), "oxenstored");
    t.is(xenstoredDaemon(""), "oxenstored");
    t.is(xenstoredDaemon("oxenstored"), "oxenstored");
    t.is(xenstoredDaemon("xenstored"), "xenstored");
    t.throws(() => xenstoredDaemon("cxenstored; reboot"), {
      message: /SUPERFLUID_XENSTORED must be oxenstored or xenstored, got "cxenstored; reboot"/,
    });
    const before = process.env.SUPERFLUID_XENSTORED;
    process.env.SUPERFLUID_XENSTORED = "bogus";
    try {
      await t.throwsAsync(startXenNode({ name: "in-xs" }), { message: /SUPERFLUID_XENSTORED must be/ });
    } finally {
      if (before === undefined) delete process.env.SUPERFLUID_XENSTORED;
      else process.env.SUPERFLUID_XENSTORED = before;
    }
    t.deepEqual(leftovers("superfluid-xen-in-xs-"), []);
  },
);

test("names every missing Debian package in one error", (t) => {
  t.notThrows(() => checkPrerequisites());
  const without =
    (...gone: string[]) =>
    (path: string) =>
      !gone.some((g) => path.includes(g)) && existsSync(path);
  const err = t.throws(() =>
    checkPrerequisites(without("qemu-system-x86_64", "/usr/sbin/xl", "xen-init-dom0")),
  );
  t.regex(err?.message ?? "", /missing Debian package\(s\) qemu-system-x86, xen-utils-4\.17 \(not found: /);
  t.regex(err?.message ?? "", /apt-get install qemu-system-x86 xen-utils-4\.17/);
});
