// The layer unpacker on crafted archives, on the real file system: every hostile entry is refused
// and nothing is written outside the unpack root.
import test from "ava";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, readdir, readlink, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import { writeTar, type TarWriteEntry } from "./tar.js";
import { OciError } from "./types.js";
import { unpackBudget, unpackLayer } from "./unpack.js";

const limits = { maxUnpackedBytes: 1 << 20, maxEntries: 100 };
const execFileAsync = promisify(execFile);

/** A sandbox: <base>/outside (must stay empty) and <base>/root (the unpack root). */
async function sandbox(t: { teardown: (fn: () => Promise<void>) => void }) {
  const base = await mkdtemp(join(tmpdir(), "sf-unpack-test-"));
  t.teardown(() => rm(base, { recursive: true, force: true }));
  await mkdir(join(base, "root"));
  return { base, root: join(base, "root") };
}

async function unpack(base: string, root: string, layer: Buffer, budget = unpackBudget(limits)) {
  const blob = join(base, "layer.blob");
  await writeFile(blob, layer);
  await unpackLayer(blob, "sha256:test", root, budget);
}

async function filesIn(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).map(String).sort();
}

test("a plain tar and a gzipped tar both unpack, with files, dirs, symlinks and hard links inside", async (t) => {
  const { base, root } = await sandbox(t);
  const entries: TarWriteEntry[] = [
    { path: "unikernel/", type: "directory" },
    { path: "unikernel/kernel", data: Buffer.from("\x7fELF kernel") },
    { path: "unikernel/current", type: "symlink", linkTarget: "kernel" },
    { path: "unikernel/copy", type: "hardlink", linkTarget: "unikernel/kernel" },
    { path: `deep/${"d".repeat(90)}/${"f".repeat(90)}`, data: Buffer.from("long path via ustar prefix") },
  ];
  await unpack(base, root, gzipSync(writeTar(entries)));
  t.is(await readFile(join(root, "unikernel/kernel"), "utf8"), "\x7fELF kernel");
  t.is(await readlink(join(root, "unikernel/current")), "kernel");
  t.is(await readFile(join(root, "unikernel/copy"), "utf8"), "\x7fELF kernel");
  t.is(
    await readFile(join(root, "deep", "d".repeat(90), "f".repeat(90)), "utf8"),
    "long path via ustar prefix",
  );
  const root2 = join(base, "root2");
  await mkdir(root2);
  await unpack(base, root2, writeTar(entries));
  t.deepEqual(await filesIn(root2), await filesIn(root));
});

const hostile: Array<[string, TarWriteEntry[], RegExp]> = [
  [
    "../ path traversal",
    [{ path: "../outside/escaped", data: Buffer.from("x") }],
    /contains '\.\.' \(path traversal\)/,
  ],
  [
    "nested ../ traversal",
    [{ path: "a/b/../../../outside/escaped", data: Buffer.from("x") }],
    /path traversal/,
  ],
  ["absolute path", [{ path: "/tmp/escaped", data: Buffer.from("x") }], /absolute path/],
  [
    "symlink pointing outside",
    [{ path: "link", type: "symlink", linkTarget: "../outside" }],
    /symlink to "\.\.\/outside", outside the image/,
  ],
  [
    "write through an in-image symlink",
    [
      { path: "dir", type: "symlink", linkTarget: "sub" },
      { path: "sub/", type: "directory" },
      { path: "dir/file", data: Buffer.from("x") },
    ],
    /goes through a symlink/,
  ],
  [
    "hard link to a file outside",
    [{ path: "h", type: "hardlink", linkTarget: "../outside/secret" }],
    /path traversal/,
  ],
  [
    "hard link to a missing file",
    [{ path: "h", type: "hardlink", linkTarget: "nope" }],
    /not a file in the image/,
  ],
  ["character device", [{ path: "dev/null", type: "char-device" }], /is a char-device/],
  ["fifo", [{ path: "pipe", type: "fifo" }], /is a fifo/],
  [
    "whiteout of the parent directory",
    [{ path: ".wh...", data: Buffer.alloc(0) }],
    /whiteout of its own directory or parent/,
  ],
  [
    "whiteout of its own directory",
    [{ path: "a/.wh..", data: Buffer.alloc(0) }],
    /whiteout of its own directory or parent/,
  ],
];

for (const [name, entries, message] of hostile) {
  test(`refused: ${name}`, async (t) => {
    const { base, root } = await sandbox(t);
    await mkdir(join(base, "outside"));
    await writeFile(join(base, "outside", "secret"), "host file");
    const err = await t.throwsAsync(unpack(base, root, gzipSync(writeTar(entries))), {
      instanceOf: OciError,
    });
    t.is(err?.code, "UnsafeLayer");
    t.regex(err?.message ?? "", message);
    t.deepEqual(await filesIn(join(base, "outside")), ["secret"], "nothing was written outside the root");
    t.is(await readFile(join(base, "outside", "secret"), "utf8"), "host file");
  });
}

test("refused: content over the unpacked-size limit (a gzip bomb stops at the limit)", async (t) => {
  const { base, root } = await sandbox(t);
  const bomb = gzipSync(writeTar([{ path: "zeros", data: Buffer.alloc(4 << 20) }]));
  t.true(bomb.length < 20_000, "the compressed layer is small");
  const err = await t.throwsAsync(unpack(base, root, bomb), { instanceOf: OciError });
  t.is(err?.code, "TooLarge");
  t.regex(err?.message ?? "", /exceeds the 1048576-byte limit/);
  t.deepEqual(await filesIn(root), [], "no partial file was written");
});

test("refused: more entries than the limit", async (t) => {
  const { base, root } = await sandbox(t);
  const many = Array.from({ length: 101 }, (_, i) => ({ path: `f${i}`, data: Buffer.from("x") }));
  const err = await t.throwsAsync(unpack(base, root, writeTar(many)), { instanceOf: OciError });
  t.is(err?.code, "TooLarge");
  t.regex(err?.message ?? "", /more than 100 entries/);
});

test("refused: corrupt gzip and a header with a bad checksum", async (t) => {
  const { base, root } = await sandbox(t);
  const gz = gzipSync(writeTar([{ path: "k", data: Buffer.alloc(5000, 7) }]));
  gz.writeUInt8(gz[gz.length - 20]! ^ 0xff, gz.length - 20);
  const e1 = await t.throwsAsync(unpack(base, root, gz), { instanceOf: OciError });
  t.regex(e1?.message ?? "", /gzip stream is corrupt|checksum|truncated/);
  const tar = writeTar([{ path: "k", data: Buffer.from("x") }]);
  tar.writeUInt8(tar[10]! ^ 0x01, 10);
  const e2 = await t.throwsAsync(unpack(base, join(base, "root"), tar), { instanceOf: OciError });
  t.regex(e2?.message ?? "", /checksum mismatch/);
});

test("whiteouts from a later layer delete what an earlier layer put there", async (t) => {
  const { base, root } = await sandbox(t);
  const budget = unpackBudget(limits);
  await unpack(
    base,
    root,
    writeTar([
      { path: "a", data: Buffer.from("1") },
      { path: "b", data: Buffer.from("2") },
    ]),
    budget,
  );
  await unpack(
    base,
    root,
    writeTar([
      { path: ".wh.a", data: Buffer.alloc(0) },
      { path: "b", data: Buffer.from("3") },
    ]),
    budget,
  );
  t.deepEqual(await filesIn(root), ["b"]);
  t.is(await readFile(join(root, "b"), "utf8"), "3");
  // An opaque whiteout at the top empties the root but keeps it.
  await unpack(
    base,
    root,
    writeTar([
      { path: ".wh..wh..opq", data: Buffer.alloc(0) },
      { path: "c", data: Buffer.from("4") },
    ]),
    budget,
  );
  t.deepEqual(await filesIn(root), ["c"]);
});

for (const format of ["gnu", "pax"]) {
  test(`archives written by GNU tar (--format=${format}) with long names and links unpack`, async (t) => {
    const { base, root } = await sandbox(t);
    const src = join(base, "src");
    const long = `${"n".repeat(120)}/${"m".repeat(120)}`;
    await mkdir(join(src, long), { recursive: true });
    await writeFile(join(src, long, "kernel"), "long-named kernel");
    await symlink(`${long}/kernel`, join(src, "kernel-link"));
    await execFileAsync("tar", [`--format=${format}`, "-czf", join(base, "layer.tgz"), "-C", src, "."]);
    await unpackLayer(join(base, "layer.tgz"), "sha256:gnu", root, unpackBudget(limits));
    t.is(await readFile(join(root, long, "kernel"), "utf8"), "long-named kernel");
    t.is(await readlink(join(root, "kernel-link")), `${long}/kernel`);
  });
}

/** A pax extended header ("x") carrying `records`, in front of the entries that follow it. */
function paxHeader(records: Record<string, string>): Buffer {
  const body = Object.entries(records)
    .map(([k, v]) => {
      const rest = ` ${k}=${v}\n`;
      let len = rest.length + 1;
      while (String(len).length + rest.length !== len) len = String(len).length + rest.length;
      return `${len}${rest}`;
    })
    .join("");
  const tar = writeTar([{ path: "PaxHeaders/x", data: Buffer.from(body) }]);
  const entry = tar.subarray(0, tar.length - 1024);
  entry.write("x", 156, 1, "ascii");
  entry.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of entry.subarray(0, 512)) sum += b;
  entry.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, 8, "ascii");
  return Buffer.from(entry);
}

for (const [name, size, code, message] of [
  [
    "not a number (it would turn the size limit off)",
    "abc",
    "InvalidImage",
    /pax size "abc" is not a decimal number/,
  ],
  ["negative", "-1", "InvalidImage", /not a decimal number/],
  ["a fraction", "1.5", "InvalidImage", /not a decimal number/],
  ["beyond any layer", "9".repeat(15), "TooLarge", /pax size \d+ exceeds/],
] as const)
  test(`refused: a pax size that is ${name}`, async (t) => {
    const { base, root } = await sandbox(t);
    // After the lying entry, content well over the limit: it must never be written.
    const rest = writeTar([
      { path: "a", data: Buffer.alloc(0) },
      { path: "zeros", data: Buffer.alloc(2 << 20) },
    ]);
    const layer = Buffer.concat([paxHeader({ size }), rest]);
    const err = await t.throwsAsync(unpack(base, root, layer), { instanceOf: OciError });
    t.is(err?.code, code);
    t.regex(err?.message ?? "", message);
    t.deepEqual(await filesIn(root), [], "nothing was unpacked");
  });

test("a valid pax size is honoured", async (t) => {
  const { base, root } = await sandbox(t);
  const data = Buffer.from("hello");
  const file = writeTar([{ path: "f", data }]);
  const layer = Buffer.concat([paxHeader({ size: "5", path: "renamed" }), file]);
  await unpack(base, root, layer);
  t.is(await readFile(join(root, "renamed"), "utf8"), "hello");
});
