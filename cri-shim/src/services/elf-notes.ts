// Which ways a guest kernel can boot under Xen, read from its ELF notes (name "Xen"): the PV entry
// (XEN_ELFNOTE_ENTRY, or any Xen note of a PV kernel) and the PVH entry (XEN_ELFNOTE_PHYS32_ENTRY).
// Images are hostile input: every offset and size is bounds-checked against the file, and what is
// not a little-endian ELF64 (a compressed kernel, a bzImage) is "unknown", not an error.
import { closeSync, fstatSync, openSync, readSync } from "node:fs";

export const XEN_ELFNOTE_ENTRY = 1;
export const XEN_ELFNOTE_PHYS32_ENTRY = 18;
const PT_NOTE = 4;
/** More program headers or a larger note segment than any kernel has: refuse to read on. */
const MAX_PHDRS = 256;
const MAX_NOTE_BYTES = 1 << 20;

export type XenBootModes =
  { kind: "unknown"; reason: string } | { kind: "elf"; pv: boolean; pvh: boolean; noteTypes: number[] };

/** Reads `length` bytes at `offset`; returns fewer at the end of the file. */
export type ReadAt = (offset: number, length: number) => Buffer;

export function xenBootModes(read: ReadAt, size: number): XenBootModes {
  const eh = read(0, 64);
  if (eh.length < 64 || eh.readUInt32BE(0) !== 0x7f454c46)
    return { kind: "unknown", reason: "not an ELF file" };
  if (eh[4] !== 2 || eh[5] !== 1) return { kind: "unknown", reason: "not a little-endian ELF64 file" };
  const phoff = Number(eh.readBigUInt64LE(32));
  const phentsize = eh.readUInt16LE(54);
  const phnum = eh.readUInt16LE(56);
  if (phnum > MAX_PHDRS || phentsize < 56 || phoff + phnum * phentsize > size)
    return { kind: "unknown", reason: "program headers out of bounds" };
  const types = new Set<number>();
  for (let i = 0; i < phnum; i++) {
    const ph = read(phoff + i * phentsize, 56);
    if (ph.length < 56 || ph.readUInt32LE(0) !== PT_NOTE) continue;
    const off = Number(ph.readBigUInt64LE(8));
    const len = Number(ph.readBigUInt64LE(32));
    if (len > MAX_NOTE_BYTES || off + len > size)
      return { kind: "unknown", reason: "note segment out of bounds" };
    for (const t of xenNoteTypes(read(off, len))) types.add(t);
  }
  return {
    kind: "elf",
    // A PV kernel names its entry (ENTRY); an image with Xen notes but only the PVH entry is PVH-only.
    pv: types.has(XEN_ELFNOTE_ENTRY),
    pvh: types.has(XEN_ELFNOTE_PHYS32_ENTRY),
    noteTypes: [...types].sort((a, b) => a - b),
  };
}

/** The types of the notes named "Xen" in one note segment (4-byte aligned records). */
export function xenNoteTypes(seg: Buffer): number[] {
  const out: number[] = [];
  let p = 0;
  const align = (n: number): number => (n + 3) & ~3;
  while (p + 12 <= seg.length) {
    const namesz = seg.readUInt32LE(p);
    const descsz = seg.readUInt32LE(p + 4);
    const type = seg.readUInt32LE(p + 8);
    const next = p + 12 + align(namesz) + align(descsz);
    if (namesz > seg.length || descsz > seg.length || next > seg.length) break;
    if (namesz === 4 && seg.toString("latin1", p + 12, p + 15) === "Xen" && seg[p + 15] === 0) out.push(type);
    p = next;
  }
  return out;
}

export function xenBootModesOfFile(path: string): XenBootModes {
  const fd = openSync(path, "r");
  try {
    const size = fstatSync(fd).size;
    const read: ReadAt = (offset, length) => {
      const buf = Buffer.alloc(Math.max(0, Math.min(length, size - offset)));
      const n = buf.length ? readSync(fd, buf, 0, buf.length, offset) : 0;
      return buf.subarray(0, n);
    };
    return xenBootModes(read, size);
  } finally {
    closeSync(fd);
  }
}
