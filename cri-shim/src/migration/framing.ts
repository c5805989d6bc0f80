// The frames on a migration's TLS connection. libxl's stream travels inside DATA frames, so the
// control messages that follow it (restored, go, running, error) can never be mistaken for stream
// bytes, and the target feeds libxl exactly the bytes libxl wrote on the source.
//
//   frame = type (1 byte) | payload length (uint32, big-endian) | payload
import type { DomainSpec } from "../hypervisor/types.js";
import { MigrationError } from "./errors.js";

export const FrameType = { header: 1, data: 2, end: 3, control: 4 } as const;
export type FrameTypeName = keyof typeof FrameType;
const NAMES = new Map<number, FrameTypeName>(
  Object.entries(FrameType).map(([k, v]) => [v, k as FrameTypeName]),
);

const HEADER_BYTES = 5;
/** A DATA frame carries at most one socket read; control frames are tiny. Anything larger is garbage. */
export const MAX_PAYLOAD_BYTES = 4 * 1024 * 1024;
export const PROTOCOL_VERSION = 1;

/** First frame, source -> target. */
export interface StreamHeader {
  version: number;
  live: boolean;
  spec: DomainSpec;
}

/** Control messages, in protocol order. `accept`: the target pinned the source's certificate and
 *  waits for the header. `ready`: the target has memory and a restore waiting for the stream.
 *  `restart`: the source drops the stream so far and sends it again (live pre-copy was impossible:
 *  stop-and-copy instead); the target answers with a new `ready`. `restored`: the domain is built paused. `go`: the source gave up its domain (point of no return).
 *  `running`: unpaused on the target. `error`: either side failed; the other side stops. */
export type ControlMessage =
  | { type: "accept" }
  | { type: "ready" }
  | { type: "restart" }
  | { type: "restored"; domid: number }
  | { type: "go" }
  | { type: "running"; domid: number }
  | { type: "error"; reason: string; message: string };

export interface Frame {
  type: FrameTypeName;
  payload: Buffer;
}

/**
 * TLS 1.3 suites, ChaCha20-Poly1305 first: a dom0 whose CPU has no AES instructions (the emulated
 * nodes' qemu64; older or virtual CPUs) encrypts the memory stream several times faster with it, and
 * both are TLS 1.3 AEADs. Both sides set it; the target's order decides.
 */
export const STREAM_CIPHERS = "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384";

/** A frame's 5-byte head alone (sendData writes it before the payload, so the payload is never copied). */
export function encodeFrameHead(type: FrameTypeName, length: number): Buffer {
  if (length > MAX_PAYLOAD_BYTES)
    throw new RangeError(`frame payload of ${length} bytes is above ${MAX_PAYLOAD_BYTES}`);
  const head = Buffer.allocUnsafe(HEADER_BYTES);
  head.writeUInt8(FrameType[type], 0);
  head.writeUInt32BE(length, 1);
  return head;
}

export function encodeFrame(type: FrameTypeName, payload: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([encodeFrameHead(type, payload.length), payload]);
}

export function encodeControl(message: ControlMessage): Buffer {
  return encodeFrame("control", Buffer.from(JSON.stringify(message)));
}

export function encodeHeader(header: StreamHeader): Buffer {
  return encodeFrame("header", Buffer.from(JSON.stringify(header)));
}

function parseJSON(frame: Frame): unknown {
  try {
    return JSON.parse(frame.payload.toString("utf8"));
  } catch {
    throw new MigrationError("ProtocolError", `${frame.type} frame is not JSON`);
  }
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

export function decodeHeader(frame: Frame): StreamHeader {
  if (frame.type !== "header")
    throw new MigrationError("ProtocolError", `expected a header frame, got ${frame.type}`);
  const h = parseJSON(frame);
  if (
    !isObject(h) ||
    h.version !== PROTOCOL_VERSION ||
    typeof h.live !== "boolean" ||
    !isObject(h.spec) ||
    typeof h.spec.name !== "string"
  )
    throw new MigrationError(
      "ProtocolError",
      `unsupported stream header (want version ${PROTOCOL_VERSION} with a domain spec)`,
    );
  return h as unknown as StreamHeader;
}

export function decodeControl(frame: Frame): ControlMessage {
  if (frame.type !== "control")
    throw new MigrationError("ProtocolError", `expected a control frame, got ${frame.type}`);
  const m = parseJSON(frame);
  if (!isObject(m)) throw new MigrationError("ProtocolError", "control frame is not an object");
  switch (m.type) {
    case "accept":
    case "ready":
    case "restart":
    case "go":
      return { type: m.type };
    case "restored":
    case "running":
      if (!Number.isInteger(m.domid)) break;
      return { type: m.type, domid: m.domid as number };
    case "error":
      return {
        type: "error",
        reason: typeof m.reason === "string" ? m.reason : "StreamFailed",
        message: String(m.message ?? ""),
      };
  }
  throw new MigrationError(
    "ProtocolError",
    `malformed control message: ${frame.payload.toString("utf8").slice(0, 200)}`,
  );
}

/** Splits a byte stream into frames; bytes may arrive in any chunking. */
export class FrameDecoder {
  private buffered: Buffer[] = [];
  private bufferedBytes = 0;

  /** Returns the frames completed by `chunk`; throws MigrationError(ProtocolError) on garbage. */
  push(chunk: Buffer): Frame[] {
    this.buffered.push(chunk);
    this.bufferedBytes += chunk.length;
    const frames: Frame[] = [];
    while (this.bufferedBytes >= HEADER_BYTES) {
      if (this.buffered[0]!.length < HEADER_BYTES) this.buffered = [Buffer.concat(this.buffered)];
      const first = this.buffered[0]!;
      const type = NAMES.get(first.readUInt8(0));
      const length = first.readUInt32BE(1);
      if (!type) throw new MigrationError("ProtocolError", `unknown frame type ${first.readUInt8(0)}`);
      if (length > MAX_PAYLOAD_BYTES)
        throw new MigrationError("ProtocolError", `frame of ${length} bytes is above ${MAX_PAYLOAD_BYTES}`);
      // Join the chunks only once the whole frame is here (no quadratic copying of a big frame).
      if (this.bufferedBytes < HEADER_BYTES + length) break;
      const all = this.buffered.length === 1 ? first : Buffer.concat(this.buffered);
      frames.push({ type, payload: all.subarray(HEADER_BYTES, HEADER_BYTES + length) });
      const rest = all.subarray(HEADER_BYTES + length);
      this.buffered = rest.length ? [rest] : [];
      this.bufferedBytes = rest.length;
    }
    return frames;
  }

  /** Bytes of an incomplete frame still waiting for the rest. */
  get pendingBytes(): number {
    return this.bufferedBytes;
  }
}
