// Reading a kernel's Xen ELF notes: small crafted ELF64 files (PV-only, PVH-only, both, broken) and
// the real hello unikernel, which carries both entries; then the PV/PVH decision with its errors.
import test from "ava";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "../../../lib/paths.js";
import { CriError } from "../errors.js";
import { xenBootModes, xenBootModesOfFile, xenNoteTypes, type XenBootModes } from "./elf-notes.js";
import { decideGuestType } from "./guest-config.js";

function note(name: string, type: number, desc: Buffer): Buffer {
  const pad = (b: Buffer): Buffer => Buffer.concat([b, Buffer.alloc((4 - (b.length % 4)) % 4)]);
  const head = Buffer.alloc(12);
  const nameBytes = Buffer.from(name + "\0", "latin1");
  head.writeUInt32LE(nameBytes.length, 0);
  head.writeUInt32LE(desc.length, 4);
  head.writeUInt32LE(type, 8);
  return Buffer.concat([head, pad(nameBytes), pad(desc)]);
}

/** An ELF64 header, one PT_LOAD and one PT_NOTE program header, then the note segment. */
function elf(notes: Buffer, opts: { noteSize?: number; phnum?: number } = {}): Buffer {
  const eh = Buffer.alloc(64);
  eh.writeUInt32BE(0x7f454c46, 0);
  eh[4] = 2; // ELFCLASS64
  eh[5] = 1; // little-endian
  eh.writeBigUInt64LE(64n, 32); // e_phoff
  eh.writeUInt16LE(56, 54);
  eh.writeUInt16LE(opts.phnum ?? 2, 56);
  const load = Buffer.alloc(56);
  load.writeUInt32LE(1, 0);
  const pn = Buffer.alloc(56);
  pn.writeUInt32LE(4, 0);
  pn.writeBigUInt64LE(BigInt(64 + 2 * 56), 8);
  pn.writeBigUInt64LE(BigInt(opts.noteSize ?? notes.length), 32);
  return Buffer.concat([eh, load, pn, notes]);
}

const modesOf = (b: Buffer): XenBootModes => xenBootModes((o, l) => b.subarray(o, o + l), b.length);
const q = (n: number): Buffer => Buffer.from(new BigUint64Array([BigInt(n)]).buffer);

test("PV-only, PVH-only and dual kernels are told apart by their Xen notes", (t) => {
  const pvNotes = Buffer.concat([note("Xen", 6, Buffer.from("linux\0")), note("Xen", 1, q(0x1000))]);
  const pvhNote = note("Xen", 18, Buffer.from([0x40, 0, 0, 0]));
  t.like(modesOf(elf(pvNotes)), { kind: "elf", pv: true, pvh: false });
  t.like(modesOf(elf(pvhNote)), { kind: "elf", pv: false, pvh: true });
  t.like(modesOf(elf(Buffer.concat([pvNotes, pvhNote]))), { kind: "elf", pv: true, pvh: true });
  // Notes of another owner (GNU build id) with type 18 do not count.
  t.like(modesOf(elf(note("GNU", 18, Buffer.alloc(4)))), { kind: "elf", pv: false, pvh: false });
});

test("what is not a readable ELF64 is unknown, never a crash", (t) => {
  t.like(modesOf(Buffer.from([0x1f, 0x8b, 8, 0])), { kind: "unknown", reason: "not an ELF file" });
  const elf32 = elf(Buffer.alloc(0));
  elf32[4] = 1;
  t.like(modesOf(elf32), { kind: "unknown" });
  t.like(modesOf(elf(note("Xen", 18, Buffer.alloc(4)), { noteSize: 1 << 30 })), { kind: "unknown" });
  t.like(modesOf(elf(Buffer.alloc(0), { phnum: 60000 })), { kind: "unknown" });
  // A note whose sizes run past its segment ends the walk.
  const bad = Buffer.alloc(16);
  bad.writeUInt32LE(0xffffff, 0);
  t.deepEqual(xenNoteTypes(bad), []);
});

test("the real hello unikernel offers both entries", (t) => {
  const kernel = join(REPO_ROOT, "native", "build", "hello", "hello");
  if (!existsSync(kernel)) return t.fail(`${kernel} not built (make -C native)`);
  const modes = xenBootModesOfFile(kernel);
  t.like(modes, { kind: "elf", pv: true, pvh: true });
});

test("a guestType the kernel cannot boot is an InvalidArgument naming the missing entry", (t) => {
  const pvOnly: XenBootModes = { kind: "elf", pv: true, pvh: false, noteTypes: [1, 6] };
  const pvhOnly: XenBootModes = { kind: "elf", pv: false, pvh: true, noteTypes: [18] };
  const both: XenBootModes = { kind: "elf", pv: true, pvh: true, noteTypes: [1, 18] };
  t.is(decideGuestType("pv", both, "img"), "pv");
  t.is(decideGuestType("pvh", both, "img"), "pvh");
  t.is(decideGuestType("pvh", { kind: "unknown", reason: "not an ELF file" }, "img"), "pvh");
  const e1 = t.throws(() => decideGuestType("pvh", pvOnly, "reg/app@sha256:1"), { instanceOf: CriError });
  t.is(e1?.code, "InvalidArgument");
  t.regex(e1?.message ?? "", /PHYS32_ENTRY.*reg\/app@sha256:1 has none/);
  const e2 = t.throws(() => decideGuestType("pv", pvhOnly, "img"), { instanceOf: CriError });
  t.regex(e2?.message ?? "", /XEN_ELFNOTE_ENTRY.*can boot as guestType "pvh"/);
});
