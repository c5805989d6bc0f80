// Host-only checks of the `hello` console parser against the exact lines the unikernel prints
// (\r\n endings, a reboot, a suspend/resume) and of the built image's size and Xen ELF notes.
import test from "ava";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { REPO_ROOT } from "../../lib/paths.js";
import { parseHelloLog } from "./hello.js";

const HELLO_DIR = join(REPO_ROOT, "native", "unikernels", "hello");
const KERNEL = join(REPO_ROOT, "native", "build", "hello", "hello");

test("parseHelloLog reads args, env, ready lines and ticks across a suspend and a reboot", (t) => {
  const text = [
    "hello: superfluid hello unikernel on xen-3.0-x86_64",
    "hello: memory 4096 KiB, in use at boot 96 KiB (image+bss 56 KiB)",
    'hello: cmdline "a b K=v"',
    "hello: arg[0] a",
    "hello: arg[1] b",
    "hello: env K=v",
    "hello: ready in 0.512 ms (args=2 env=1)",
    "hello: tick 1",
    "hello: tick 2",
    "hello: suspending at tick 2",
    "hello: resumed at tick 2 (restored domain)",
    "hello: tick 3",
    "hello: reboot at tick 3",
    'hello: cmdline "c"',
    "hello: arg[0] c",
    "hello: ready in 0.400 ms (args=1 env=0)",
    "hello: tick 1",
    "",
  ].join("\r\n");
  const log = parseHelloLog(text);
  t.deepEqual(log.args, ["c"]);
  t.deepEqual(log.env, []);
  t.is(log.readyCount, 2);
  t.is(log.readyMs, 0.4);
  t.deepEqual(log.ticks, [1, 2, 3, 1]);
  t.deepEqual(log.ticksAfterLastReady, [1]);
  t.deepEqual(log.suspendedAt, [2]);
  t.deepEqual(log.resumedAt, [2]);
  t.is(log.restoredCount, 1);
  t.is(log.cancelledCount, 0);
  t.is(log.memoryLine, "memory 4096 KiB, in use at boot 96 KiB (image+bss 56 KiB)");
});

test("the hello image is at most 256 KiB and carries the Xen ELF notes PV and PVH domain builders need", async (t) => {
  await promisify(execFile)("make", ["-s", "-C", HELLO_DIR]);
  const image = readFileSync(KERNEL);
  t.log(`hello image: ${image.length} bytes`);
  t.true(image.length <= 256 * 1024);
  // ELF64 little-endian x86-64 executable.
  t.deepEqual([...image.subarray(0, 5)], [0x7f, 0x45, 0x4c, 0x46, 2]);
  t.is(image.readUInt16LE(18), 62);
  const { stdout } = await promisify(execFile)("readelf", ["--notes", "--wide", KERNEL]);
  const xenNotes = stdout.split("\n").filter((l) => /^\s+Xen\s/.test(l));
  // GUEST_OS, GUEST_VERSION, XEN_VERSION, VIRT_BASE, PADDR_OFFSET, ENTRY, HYPERCALL_PAGE, LOADER,
  // FEATURES, SUSPEND_CANCEL, and PHYS32_ENTRY (type 0x12, the PVH entry).
  t.is(xenNotes.length, 11, stdout);
  t.true(
    xenNotes.some((l) => /\(0x00000012\)|PHYS32_ENTRY/.test(l)),
    stdout,
  );
  const strings = image.toString("latin1");
  for (const s of ["superfluid-hello\0", "xen-3.0\0", "generic\0", "!writable_page_tables\0"])
    t.true(strings.includes(s), s);
});
