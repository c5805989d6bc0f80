// Content addressing: every blob is hashed while it streams in, its size is bounded while it
// streams in, and it only reaches its final name (by rename, atomically) once both checks pass.
import { createHash, randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Readable, Writable } from "node:stream";
import { OciError } from "./types.js";

export function sha256Digest(data: Buffer | string): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

export function digestHex(digest: string): string {
  return digest.slice("sha256:".length);
}

export function tempName(dir: string, hint: string): string {
  return join(dir, `${hint}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
}

/** Waits for a stream's "drain" (or its error) without leaving a listener behind. */
export function drained(out: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    const onDrain = () => {
      out.off("error", onError);
      resolve();
    };
    const onError = (err: Error) => {
      out.off("drain", onDrain);
      reject(err);
    };
    out.once("drain", onDrain);
    out.once("error", onError);
  });
}

/** Reads a stream into memory, refusing it as soon as it passes `maxBytes`. */
export async function readLimited(stream: Readable, maxBytes: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of stream) {
    const b = chunk as Buffer;
    total += b.length;
    if (total > maxBytes) {
      stream.destroy();
      throw new OciError("TooLarge", `${what} is larger than the ${maxBytes}-byte limit`);
    }
    chunks.push(b);
  }
  return Buffer.concat(chunks);
}

export function verifyDigest(what: string, bytes: Buffer, expected: string): void {
  const actual = sha256Digest(bytes);
  if (actual !== expected)
    throw new OciError(
      "DigestMismatch",
      `${what}: content digest ${actual} does not match the expected ${expected}`,
    );
}

/**
 * Streams `source` into `finalPath` through a temp file in `tmpDir`, checking size (exactly
 * `expectedSize`, never above `maxBytes`) and digest. On any failure the temp file is removed and
 * nothing appears at `finalPath`.
 */
export async function writeVerifiedBlob(
  source: Readable,
  opts: {
    tmpDir: string;
    finalPath: string;
    expectedDigest: string;
    expectedSize: number;
    maxBytes: number;
    what: string;
  },
): Promise<void> {
  const { what, expectedDigest, expectedSize, maxBytes } = opts;
  if (expectedSize > maxBytes) {
    source.destroy();
    throw new OciError("TooLarge", `${what} is ${expectedSize} bytes, over the ${maxBytes}-byte limit`);
  }
  const tmp = tempName(opts.tmpDir, digestHex(expectedDigest).slice(0, 16));
  const hash = createHash("sha256");
  const out = createWriteStream(tmp, { flags: "wx", mode: 0o644 });
  let total = 0;
  try {
    for await (const chunk of source) {
      const b = chunk as Buffer;
      total += b.length;
      if (total > expectedSize)
        throw new OciError(
          total > maxBytes ? "TooLarge" : "DigestMismatch",
          `${what} is longer than the ${expectedSize} bytes its descriptor declares`,
        );
      hash.update(b);
      if (!out.write(b)) await drained(out);
    }
    await new Promise<void>((resolve, reject) =>
      out.end((err?: Error | null) => (err ? reject(err) : resolve())),
    );
    if (total !== expectedSize)
      throw new OciError(
        "DigestMismatch",
        `${what} is ${total} bytes, its descriptor declares ${expectedSize}`,
      );
    const actual = `sha256:${hash.digest("hex")}`;
    if (actual !== expectedDigest)
      throw new OciError(
        "DigestMismatch",
        `${what}: content digest ${actual} does not match the expected ${expectedDigest}`,
      );
    await rename(tmp, opts.finalPath);
  } catch (err) {
    source.destroy();
    out.destroy();
    if (!out.closed) await new Promise<void>((r) => out.once("close", () => r()));
    await rm(tmp, { force: true });
    throw err;
  }
}
