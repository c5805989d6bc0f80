// Wire-level pass-through. A call forwarded to the fallback runtime travels as the bytes the kubelet
// sent and comes back as the bytes the fallback answered, so fields our api.proto does not declare
// (newer CRI fields) survive the trip. List responses merge at this level too: every CRI list
// response is one or two `repeated` fields, and concatenating two encoded messages appends them.
import type * as grpc from "@grpc/grpc-js";

/** A response already encoded: sent to the caller as is. */
export class RawReply {
  constructor(readonly bytes: Buffer) {}
}

const REQUEST_BYTES = new WeakMap<object, Buffer>();

/** The bytes a decoded request arrived as (undefined for requests not decoded by wrapDefinition). */
export function requestBytes(req: unknown): Buffer | undefined {
  return typeof req === "object" && req !== null ? REQUEST_BYTES.get(req) : undefined;
}

/** The service definition with request bytes remembered and RawReply responses sent verbatim. */
export function wrapDefinition(def: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, m] of Object.entries(def)) {
    out[name] = {
      ...m,
      requestDeserialize: (buf: Buffer) => {
        const value: unknown = m.requestDeserialize(buf);
        if (typeof value === "object" && value !== null) REQUEST_BYTES.set(value, buf);
        return value;
      },
      responseSerialize: (value: unknown) =>
        value instanceof RawReply ? value.bytes : m.responseSerialize(value),
    };
  }
  return out;
}

/** Our answer and the fallback's, as one response: the fallback's entries first (see dispatcher). */
export function concatReplies(first: Buffer, second: Buffer): RawReply {
  return new RawReply(Buffer.concat([first, second]));
}
