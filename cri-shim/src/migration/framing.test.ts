// Framing: any chunking of the byte stream gives the same frames; garbage is a ProtocolError.
import test from "ava";
import { MigrationError } from "./errors.js";
import {
  FrameDecoder,
  MAX_PAYLOAD_BYTES,
  decodeControl,
  decodeHeader,
  encodeControl,
  encodeFrame,
  encodeHeader,
} from "./framing.js";

const spec = {
  name: "vm",
  kernelPath: "/k",
  cmdline: "",
  memoryMiB: 4,
  vcpus: 1,
  guestType: "pv" as const,
  vifs: [],
};

test("frames survive every split of the stream, in order", (t) => {
  const data = Buffer.from(Array.from({ length: 3000 }, (_, i) => i % 251));
  const wire = Buffer.concat([
    encodeHeader({ version: 1, live: true, spec }),
    encodeFrame("data", data),
    encodeFrame("data", Buffer.alloc(0)),
    encodeFrame("end"),
    encodeControl({ type: "restored", domid: 7 }),
  ]);
  for (const step of [1, 2, 5, 7, 100, 4096, wire.length]) {
    const decoder = new FrameDecoder();
    const frames = [];
    for (let i = 0; i < wire.length; i += step) frames.push(...decoder.push(wire.subarray(i, i + step)));
    t.deepEqual(
      frames.map((f) => f.type),
      ["header", "data", "data", "end", "control"],
      `step ${step}`,
    );
    t.deepEqual(decodeHeader(frames[0]!).spec, spec);
    t.true(frames[1]!.payload.equals(data), `step ${step}: data intact`);
    t.is(frames[2]!.payload.length, 0);
    t.deepEqual(decodeControl(frames[4]!), { type: "restored", domid: 7 });
    t.is(decoder.pendingBytes, 0);
  }
});

test("an incomplete frame waits for the rest", (t) => {
  const decoder = new FrameDecoder();
  const frame = encodeFrame("data", Buffer.from("abcdef"));
  t.deepEqual(decoder.push(frame.subarray(0, 8)), []);
  t.is(decoder.pendingBytes, 8);
  t.is(decoder.push(frame.subarray(8))[0]!.payload.toString(), "abcdef");
});

test("garbage is a ProtocolError: unknown type, oversized length, bad JSON, wrong header version", (t) => {
  const unknownType = Buffer.from([9, 0, 0, 0, 0]);
  t.is(
    t.throws(() => new FrameDecoder().push(unknownType), { instanceOf: MigrationError })!.reason,
    "ProtocolError",
  );
  const huge = Buffer.alloc(5);
  huge.writeUInt8(2, 0);
  huge.writeUInt32BE(MAX_PAYLOAD_BYTES + 1, 1);
  t.is(
    t.throws(() => new FrameDecoder().push(huge), { instanceOf: MigrationError })!.reason,
    "ProtocolError",
  );
  const notJson = new FrameDecoder().push(encodeFrame("control", Buffer.from("{nope")))[0]!;
  t.is(t.throws(() => decodeControl(notJson), { instanceOf: MigrationError })!.reason, "ProtocolError");
  const oldHeader = new FrameDecoder().push(
    encodeFrame("header", Buffer.from(JSON.stringify({ version: 0, live: true, spec }))),
  )[0]!;
  t.is(t.throws(() => decodeHeader(oldHeader), { instanceOf: MigrationError })!.reason, "ProtocolError");
  const noDomid = new FrameDecoder().push(encodeFrame("control", Buffer.from('{"type":"running"}')))[0]!;
  t.throws(() => decodeControl(noDomid), { instanceOf: MigrationError });
});

test("an error control message keeps its reason", (t) => {
  const f = new FrameDecoder().push(
    encodeControl({ type: "error", reason: "TargetOutOfMemory", message: "2 MiB free" }),
  )[0]!;
  t.deepEqual(decodeControl(f), { type: "error", reason: "TargetOutOfMemory", message: "2 MiB free" });
});
