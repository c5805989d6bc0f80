// Wire-level pass-through. A call forwarded to the fallback runtime travels as the bytes the kubelet
// sent and comes back as the bytes the fallback answered, so fields our api.proto does not declare
// (newer CRI fields) survive the trip. List responses merge at this level too: every CRI list
// response is one or two `repeated` fields, and concatenating two encoded messages appends them.
import type * as grpc from "@grpc/grpc-js";

/** A response already encoded: sent to the caller as is. */
export class RawReply {
  constructor(readonly bytes: Buffer) {}
}

/**
 * A list response whose entries are encoded one by one and the encodings remembered per entry: the
 * kubelet lists every sandbox and container every second (PLEG), and encoding a thousand of each
 * each time cost the shim more than anything else it does per VM. `entries` must be immutable
 * objects (the stores' frozen entries, replaced on every change), so an entry's encoding holds for
 * as long as the entry itself; `view` must depend on the entry alone. A response of one repeated
 * field is the concatenation of one-entry responses, so the whole is their concatenation.
 */
export class EncodedList<E extends object> {
  constructor(
    readonly field: string,
    readonly entries: readonly E[],
    readonly view: (entry: E) => unknown,
  ) {}

  /** The response's bytes, encoding with `serialize` only the entries not seen before. */
  encode(serialize: (value: unknown) => Buffer): Buffer {
    let cache = ENCODED.get(this.view);
    if (!cache) ENCODED.set(this.view, (cache = new WeakMap()));
    const parts = this.entries.map((e) => {
      let bytes = cache.get(e);
      if (!bytes) cache.set(e, (bytes = serialize({ [this.field]: [this.view(e)] })));
      return bytes;
    });
    return Buffer.concat(parts);
  }

  /** The response as a plain object (for code that wants the message, not its bytes). */
  toObject(): Record<string, unknown[]> {
    return { [this.field]: this.entries.map(this.view) };
  }
}

const ENCODED = new WeakMap<object, WeakMap<object, Buffer>>();

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
        value instanceof RawReply
          ? value.bytes
          : value instanceof EncodedList
            ? value.encode(m.responseSerialize)
            : m.responseSerialize(value),
    };
  }
  return out;
}

/** Our answer and the fallback's, as one response: the fallback's entries first (see dispatcher). */
export function concatReplies(first: Buffer, second: Buffer): RawReply {
  return new RawReply(Buffer.concat([first, second]));
}
