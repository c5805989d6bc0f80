// A streaming tar reader (ustar, pax and GNU long names — what Go, GNU tar and Docker write) and a
// small deterministic ustar writer. Reading never trusts a header: checksums are verified and every
// size is bounded by the caller's limits before bytes are consumed.
import type { Readable } from "node:stream";
import { OciError } from "./types.js";

export type TarEntryType =
  "file" | "directory" | "symlink" | "hardlink" | "char-device" | "block-device" | "fifo";

export interface TarHeader {
  path: string;
  type: TarEntryType;
  size: number;
  mode: number;
  linkTarget: string;
}

const BLOCK = 512;
const MAX_META_BYTES = 64 * 1024; // pax records and GNU long names
/** No entry of a layer is this large (1 TiB); any size field beyond it is a lie or an attack. */
export const MAX_ENTRY_BYTES = 2 ** 40;

/** Reads exact byte counts from an async byte stream. */
class ByteReader {
  private buffered: Buffer[] = [];
  private bufferedBytes = 0;
  private done = false;
  private readonly it: AsyncIterator<unknown>;

  constructor(stream: Readable) {
    this.it = stream[Symbol.asyncIterator]();
  }

  private async fill(n: number): Promise<void> {
    while (this.bufferedBytes < n && !this.done) {
      const next = await this.it.next();
      if (next.done) this.done = true;
      else {
        const b = next.value as Buffer;
        this.buffered.push(b);
        this.bufferedBytes += b.length;
      }
    }
  }

  private take(n: number): Buffer {
    const all = this.buffered.length === 1 ? this.buffered[0]! : Buffer.concat(this.buffered);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.buffered = rest.length ? [rest] : [];
    this.bufferedBytes = rest.length;
    return out;
  }

  /** Exactly n bytes, or null at a clean end of stream before any byte. */
  async exact(n: number): Promise<Buffer | null> {
    await this.fill(n);
    if (this.bufferedBytes === 0 && this.done) return null;
    if (this.bufferedBytes < n) throw new OciError("InvalidImage", "layer tar is truncated");
    return this.take(n);
  }

  /** n bytes in pieces, without holding them all in memory. */
  async *pieces(n: number): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      await this.fill(1);
      if (this.bufferedBytes === 0) throw new OciError("InvalidImage", "layer tar is truncated");
      const piece = this.take(Math.min(left, this.bufferedBytes, 1 << 20));
      left -= piece.length;
      yield piece;
    }
  }

  async skip(n: number): Promise<void> {
    for await (const piece of this.pieces(n)) void piece;
  }

  async close(): Promise<void> {
    await this.it.return?.();
  }
}

function cstring(b: Buffer): string {
  const nul = b.indexOf(0);
  return b.subarray(0, nul < 0 ? b.length : nul).toString("utf8");
}

function octal(b: Buffer, what: string): number {
  // GNU base-256 for big numbers: high bit of the first byte set.
  if ((b[0]! & 0x80) !== 0) {
    let n = 0;
    for (let i = 1; i < b.length; i++) n = n * 256 + b[i]!;
    if (n > MAX_ENTRY_BYTES) throw new OciError("TooLarge", `layer tar: ${what} field of ${n} is too large`);
    return n;
  }
  const s = cstring(b).trim();
  if (s === "") return 0;
  if (!/^[0-7]+$/.test(s))
    throw new OciError("InvalidImage", `layer tar: bad ${what} field ${JSON.stringify(s)}`);
  return parseInt(s, 8);
}

const TYPES: Record<string, TarEntryType> = {
  "0": "file",
  "\0": "file",
  "7": "file",
  "1": "hardlink",
  "2": "symlink",
  "3": "char-device",
  "4": "block-device",
  "5": "directory",
  "6": "fifo",
};

/**
 * A pax `size`: decimal digits, at most MAX_ENTRY_BYTES. Anything else is refused: a size that is
 * not a number would become NaN and slip past every limit on the unpacked bytes.
 */
function paxSize(v: string): number {
  if (!/^[0-9]{1,15}$/.test(v))
    throw new OciError(
      "InvalidImage",
      `layer tar: pax size ${JSON.stringify(v.slice(0, 40))} is not a decimal number`,
    );
  const n = Number(v);
  if (n > MAX_ENTRY_BYTES)
    throw new OciError("TooLarge", `layer tar: pax size ${n} exceeds ${MAX_ENTRY_BYTES} bytes`);
  return n;
}

function parsePax(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let pos = 0;
  while (pos < body.length) {
    const space = body.indexOf(0x20, pos);
    if (space < 0) break;
    const len = Number(body.subarray(pos, space).toString("ascii"));
    if (!Number.isSafeInteger(len) || len <= 0 || pos + len > body.length)
      throw new OciError("InvalidImage", "layer tar: malformed pax record");
    const record = body.subarray(space + 1, pos + len - 1).toString("utf8");
    const eq = record.indexOf("=");
    if (eq > 0) out[record.slice(0, eq)] = record.slice(eq + 1);
    pos += len;
  }
  return out;
}

/**
 * Calls `onEntry` for each entry in order; `body` yields the entry's bytes and must be consumed or
 * ignored (the reader skips what is left). Throws OciError on malformed input.
 */
export async function readTar(
  stream: Readable,
  onEntry: (header: TarHeader, body: AsyncGenerator<Buffer>) => Promise<void>,
): Promise<void> {
  const reader = new ByteReader(stream);
  let pax: Record<string, string> = {};
  let longName: string | undefined;
  let longLink: string | undefined;
  try {
    for (;;) {
      const block = await reader.exact(BLOCK);
      if (block === null) return; // some writers omit the end-of-archive blocks
      if (block.every((x) => x === 0)) return;
      let sum = 0;
      for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i]!;
      if (sum !== octal(block.subarray(148, 156), "checksum"))
        throw new OciError("InvalidImage", "layer tar: header checksum mismatch (not a tar, or corrupt)");
      const flag = String.fromCharCode(block[156]!);
      const size = octal(block.subarray(124, 136), "size");
      const padded = Math.ceil(size / BLOCK) * BLOCK;
      if (flag === "x" || flag === "g" || flag === "L" || flag === "K") {
        if (size > MAX_META_BYTES)
          throw new OciError("TooLarge", `layer tar: metadata entry of ${size} bytes`);
        const body = (await reader.exact(padded)) ?? Buffer.alloc(0);
        const content = body.subarray(0, size);
        if (flag === "x") pax = parsePax(content);
        else if (flag === "L") longName = cstring(content);
        else if (flag === "K") longLink = cstring(content);
        continue; // global pax headers carry nothing we use
      }
      const type = TYPES[flag];
      const ustarName = cstring(block.subarray(0, 100));
      const prefix =
        block.subarray(257, 262).toString("ascii") === "ustar" ? cstring(block.subarray(345, 500)) : "";
      const path = pax.path ?? longName ?? (prefix ? `${prefix}/${ustarName}` : ustarName);
      const linkTarget = pax.linkpath ?? longLink ?? cstring(block.subarray(157, 257));
      const realSize = pax.size !== undefined ? paxSize(pax.size) : size;
      pax = {};
      longName = longLink = undefined;
      if (type === undefined)
        throw new OciError(
          "UnsafeLayer",
          `layer tar: entry ${JSON.stringify(path)} has unsupported type ${JSON.stringify(flag)}`,
        );
      const dataSize = type === "file" ? realSize : 0;
      const body = reader.pieces(dataSize);
      await onEntry(
        { path, type, size: dataSize, mode: octal(block.subarray(100, 108), "mode") & 0o7777, linkTarget },
        body,
      );
      for await (const rest of body) void rest; // whatever the callback left
      const dataPadded = Math.ceil(dataSize / BLOCK) * BLOCK;
      await reader.skip(
        dataPadded - dataSize + (padded > dataPadded && type !== "file" ? padded - dataPadded : 0),
      );
    }
  } finally {
    await reader.close();
  }
}

export interface TarWriteEntry {
  path: string;
  type?: "file" | "directory" | "symlink" | "hardlink" | "char-device" | "fifo";
  data?: Buffer;
  mode?: number;
  linkTarget?: string;
}

function writeOctal(block: Buffer, offset: number, length: number, value: number): void {
  block.write(value.toString(8).padStart(length - 1, "0") + "\0", offset, length, "ascii");
}

const FLAGS: Record<NonNullable<TarWriteEntry["type"]>, string> = {
  file: "0",
  hardlink: "1",
  symlink: "2",
  "char-device": "3",
  directory: "5",
  fifo: "6",
};

/** A deterministic ustar archive (uid/gid 0, mtime 0), for images and for tests' crafted layers. */
export function writeTar(entries: TarWriteEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const type = e.type ?? "file";
    const data = type === "file" ? (e.data ?? Buffer.alloc(0)) : Buffer.alloc(0);
    const header = Buffer.alloc(BLOCK);
    let name = e.path;
    let prefix = "";
    if (Buffer.byteLength(name) > 100) {
      const cut = name.lastIndexOf("/", 155);
      if (cut <= 0 || Buffer.byteLength(name.slice(cut + 1)) > 100)
        throw new Error(`tar path too long for ustar: ${name}`);
      prefix = name.slice(0, cut);
      name = name.slice(cut + 1);
    }
    header.write(name, 0, 100, "utf8");
    writeOctal(header, 100, 8, e.mode ?? (type === "directory" ? 0o755 : 0o644));
    writeOctal(header, 108, 8, 0);
    writeOctal(header, 116, 8, 0);
    writeOctal(header, 124, 12, data.length);
    writeOctal(header, 136, 12, 0);
    header.write(FLAGS[type], 156, 1, "ascii");
    header.write(e.linkTarget ?? "", 157, 100, "utf8");
    header.write("ustar\0" + "00", 257, 8, "ascii");
    header.write(prefix, 345, 155, "utf8");
    header.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of header) sum += b;
    header.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, 8, "ascii");
    parts.push(header, data, Buffer.alloc((BLOCK - (data.length % BLOCK)) % BLOCK));
  }
  parts.push(Buffer.alloc(BLOCK * 2));
  return Buffer.concat(parts);
}
