// libsfxen's zero-page filter (native/lib/sfxen/zeropages.c) on the host: libxc streams written
// here byte by byte go through the real library; all-zero ordinary pages must leave as
// "populate, no data" (XALLOC) entries, everything else byte for byte.
import test from "ava";
import koffi from "koffi";
import { execFileSync } from "node:child_process";
import {
  closeSync,
  constants,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SFXEN_LIB_PATH } from "./sfxen-names.js";

const lib = koffi.load(SFXEN_LIB_PATH);
const filter = lib.func("int sfx_zero_filter(int in, int out, int mode, void *stats, void *err, int errlen)");

const PAGE = 4096;
const NOTAB = 0x0;
const L1TAB = 0x1 << 28;
const XTAB = 0xf * 2 ** 28;
const XALLOC = 0xe * 2 ** 28;
const PAGE_DATA = 1;
const KEEP = 0;
const SKIP = 1;
const EXPAND = 2;

function headers(): Buffer {
  const b = Buffer.alloc(40);
  b.writeBigUInt64LE(0xffffffffffffffffn, 0);
  b.write("XENF", 8, "latin1");
  b.writeUInt32BE(3, 12); // version
  b.writeUInt32LE(2, 24); // domain type: x86 PV
  b.writeUInt16LE(12, 28); // page shift
  b.writeUInt32LE(4, 32);
  b.writeUInt32LE(17, 36);
  return b;
}

function record(type: number, body: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32LE(type, 0);
  h.writeUInt32LE(body.length, 4);
  const pad = Buffer.alloc((8 - (body.length % 8)) % 8);
  return Buffer.concat([h, body, pad]);
}

interface Page {
  pfn: number;
  type: number;
  data?: Buffer;
}

function pageData(pages: Page[]): Buffer {
  const head = Buffer.alloc(8 + 8 * pages.length);
  head.writeUInt32LE(pages.length, 0);
  pages.forEach((p, i) => head.writeBigUInt64LE(BigInt(p.pfn) | (BigInt(p.type) << 32n), 8 + 8 * i));
  return Buffer.concat([head, ...pages.flatMap((p) => (p.data ? [p.data] : []))]);
}

/** Headers, `before` records, one PAGE_DATA record of `pages`, `after` records, END. */
function stream(pages: Page[], before: Buffer[] = [], after: Buffer[] = []): Buffer {
  return Buffer.concat([
    headers(),
    ...before,
    record(PAGE_DATA, pageData(pages)),
    ...after,
    record(0, Buffer.alloc(0)),
  ]);
}

function page(fill: (b: Buffer) => void = () => undefined): Buffer {
  const b = Buffer.alloc(PAGE);
  fill(b);
  return b;
}

function run(input: Buffer, mode = SKIP): { rc: number; out: Buffer; stats: bigint[]; err: string } {
  const dir = mkdtempSync(join(tmpdir(), "sf-zero-"));
  try {
    writeFileSync(join(dir, "in"), input);
    const inFd = openSync(join(dir, "in"), "r");
    const outFd = openSync(join(dir, "out"), "w");
    const stats = Buffer.alloc(32);
    const err = Buffer.alloc(256);
    const rc = filter(inFd, outFd, mode, stats, err, err.length) as number;
    closeSync(inFd);
    closeSync(outFd);
    return {
      rc,
      out: readFileSync(join(dir, "out")),
      stats: [0, 1, 2, 3].map((i) => stats.readBigUInt64LE(i * 8)),
      err: err.toString("utf8", 0, err.indexOf(0)),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("all-zero ordinary pages go as XALLOC without data; page tables, other pages and records pass", (t) => {
  const lastByte = page((b) => (b[PAGE - 1] = 7));
  const early = page((b) => (b[40] = 1));
  const other = record(0x0f, Buffer.from("abcde"));
  const input = stream(
    [
      { pfn: 0, type: NOTAB, data: page() },
      { pfn: 1, type: NOTAB, data: lastByte },
      { pfn: 2, type: L1TAB, data: page() },
      { pfn: 3, type: XTAB },
      { pfn: 4, type: NOTAB, data: early },
      { pfn: 5, type: NOTAB, data: page() },
    ],
    [other],
  );
  const r = run(input);
  t.is(r.rc, 0, r.err);
  const expected = stream(
    [
      { pfn: 0, type: XALLOC },
      { pfn: 1, type: NOTAB, data: lastByte },
      { pfn: 2, type: L1TAB, data: page() },
      { pfn: 3, type: XTAB },
      { pfn: 4, type: NOTAB, data: early },
      { pfn: 5, type: XALLOC },
    ],
    [other],
  );
  t.true(r.out.equals(expected), "the rewritten stream");
  t.deepEqual(r.stats, [5n, 2n, BigInt(input.length), BigInt(expected.length)]);
});

test("without skip the stream passes byte for byte, its zero pages counted", (t) => {
  const input = stream([
    { pfn: 0, type: NOTAB, data: page() },
    { pfn: 1, type: NOTAB, data: page((b) => (b[9] = 1)) },
  ]);
  const r = run(input, KEEP);
  t.is(r.rc, 0, r.err);
  t.true(r.out.equals(input));
  t.deepEqual(r.stats, [2n, 1n, BigInt(input.length), BigInt(input.length)]);
});

test("the restorer's expand gives the skipped pages back as pages of zeros, the rest unchanged", (t) => {
  const used = page((b) => b.fill(0xab, 100, 200));
  const original = stream(
    [
      { pfn: 7, type: NOTAB, data: page() },
      { pfn: 8, type: NOTAB, data: used },
      { pfn: 9, type: L1TAB, data: page() },
      { pfn: 10, type: XTAB },
      { pfn: 11, type: NOTAB, data: page() },
    ],
    [],
    [record(0x0f, Buffer.from("x"))],
  );
  const skipped = run(original, SKIP);
  t.is(skipped.rc, 0, skipped.err);
  t.is(skipped.out.length, original.length - 2 * PAGE);
  // Something after the stream's END (libxl's own records) must stay unread for the caller.
  const back = run(Buffer.concat([skipped.out, Buffer.from("libxl record after END")]), EXPAND);
  t.is(back.rc, 0, back.err);
  t.true(back.out.equals(original), "the original stream again");
  t.deepEqual(back.stats.slice(0, 2), [4n, 2n]);
  t.is(back.stats[2], BigInt(skipped.out.length), "read no further than libxc's END record");
});

/** The filter with a pipe (a FIFO) as its output, as the restorer's: zero pages go by reference. */
async function runIntoPipe(input: Buffer, mode: number): Promise<{ rc: number; out: Buffer; err: string }> {
  const dir = mkdtempSync(join(tmpdir(), "sf-zero-"));
  try {
    writeFileSync(join(dir, "in"), input);
    execFileSync("mkfifo", [join(dir, "pipe")]);
    const readFd = openSync(join(dir, "pipe"), constants.O_RDONLY | constants.O_NONBLOCK);
    const writeFd = openSync(join(dir, "pipe"), constants.O_WRONLY);
    const inFd = openSync(join(dir, "in"), "r");
    const stats = Buffer.alloc(32);
    const err = Buffer.alloc(256);
    let done: number | undefined;
    filter.async(inFd, writeFd, mode, stats, err, err.length, (e: unknown, rc: number) => {
      if (e) throw e instanceof Error ? e : new Error(String(e));
      done = rc;
    });
    const chunks: Buffer[] = [];
    const buf = Buffer.alloc(1 << 16);
    for (let closed = false; ;) {
      let n = 0;
      try {
        n = readSync(readFd, buf);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EAGAIN") throw e;
        n = -1;
      }
      if (n > 0) chunks.push(Buffer.from(buf.subarray(0, n)));
      else if (n === 0 && closed) break;
      else {
        if (done !== undefined && !closed) {
          closeSync(writeFd);
          closed = true;
        }
        await new Promise((r) => setTimeout(r, 2));
      }
    }
    closeSync(readFd);
    closeSync(inFd);
    return { rc: done!, out: Buffer.concat(chunks), err: err.toString("utf8", 0, err.indexOf(0)) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("into a pipe, the expand's zero pages (sent by reference) read as zeros, in order", async (t) => {
  const used = page((b) => b.fill(0x5a, 0, PAGE));
  // Runs of zero pages longer than one vmsplice call's 64 pages, between pages with data.
  const pages: Page[] = [];
  for (let i = 0; i < 300; i++)
    pages.push({ pfn: i, type: NOTAB, data: i % 97 === 5 ? page((b) => b.writeUInt32LE(i, 8)) : page() });
  pages.push({ pfn: 300, type: NOTAB, data: used });
  const original = stream(pages);
  const skipped = run(original, SKIP);
  t.is(skipped.rc, 0, skipped.err);
  t.true(skipped.out.length < 8 * PAGE, "the zero pages left without data");
  const back = await runIntoPipe(skipped.out, EXPAND);
  t.is(back.rc, 0, back.err);
  t.true(back.out.equals(original), "the original stream again, byte for byte");
});

test("a record of only zero pages keeps its entries and carries no data", (t) => {
  const pages = Array.from({ length: 3 }, (_, i) => ({ pfn: 10 + i, type: NOTAB, data: page() }));
  const r = run(stream(pages));
  t.is(r.rc, 0, r.err);
  const body = r.out.subarray(40 + 8, 40 + 8 + 8 + 3 * 8);
  t.is(r.out.readUInt32LE(40 + 4), 8 + 3 * 8, "record length without data");
  t.is(body.readUInt32LE(0), 3);
  for (let i = 0; i < 3; i++) t.is(body.readBigUInt64LE(8 + 8 * i), BigInt(10 + i) | (BigInt(XALLOC) << 32n));
});

test("bad streams fail with a reason: not libxc's, truncated, a PAGE_DATA that does not add up", (t) => {
  const bad = run(Buffer.from("LibxlFmt but not libxc's stream at all, forty bytes+"));
  t.is(bad.rc, -1);
  t.regex(bad.err, /not a libxc stream/);

  const cut = run(
    Buffer.concat([headers(), record(PAGE_DATA, pageData([{ pfn: 0, type: NOTAB, data: page() }]))]),
  );
  t.is(cut.rc, -1, "no END record");
  t.regex(cut.err, /stream ended/);

  const short = pageData([{ pfn: 0, type: NOTAB, data: page() }]).subarray(0, 8 + 8 + 100);
  const lie = run(Buffer.concat([headers(), record(PAGE_DATA, short), record(0, Buffer.alloc(0))]));
  t.is(lie.rc, -1);
  t.regex(lie.err, /does not add up/);
});
