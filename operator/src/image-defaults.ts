// The operator's reading of images' default memory, for VMs whose spec names none: the image's
// manifest and config from its registry (no layers), parsed by the one image-format parser
// (api/image-format.ts: superfluid.dev/unikernel.memory-mib on the manifest or the config's labels).
// Cached per reference (a tag may move: entries expire), failures for a short while, lookups of the
// same reference share one request, and each waits at most `timeoutMs`.
import { inspectImage } from "../../lib/oci/resolve.js";
import { parseReference } from "../../lib/oci/reference.js";
import type { ImageLookup } from "./guest-memory.js";

export type ReadImage = (ref: string) => Promise<{ memoryMiB?: number }>;

export interface ImageDefaultsOptions {
  /** How long a read image's figure is trusted (default 10 min). */
  ttlMs?: number;
  /** How long a failure is remembered before the registry is asked again (default 30 s). */
  failureTtlMs?: number;
  /** A lookup that takes longer is reported unread (default 5 s); the read goes on for the cache. */
  timeoutMs?: number;
  /** References kept at most (default 1,000; the oldest go first). */
  maxEntries?: number;
  now?: () => number;
}

interface Entry {
  at: number;
  lookup?: ImageLookup;
  pending?: Promise<ImageLookup>;
}

export class ImageDefaults {
  private readonly entries = new Map<string, Entry>();
  private readonly o: Required<ImageDefaultsOptions>;

  constructor(
    private readonly read: ReadImage,
    opts: ImageDefaultsOptions = {},
  ) {
    this.o = {
      ttlMs: opts.ttlMs ?? 10 * 60_000,
      failureTtlMs: opts.failureTtlMs ?? 30_000,
      timeoutMs: opts.timeoutMs ?? 5_000,
      maxEntries: opts.maxEntries ?? 1000,
      now: opts.now ?? Date.now,
    };
  }

  private fresh(e: Entry | undefined): e is Entry & { lookup: ImageLookup } {
    if (!e?.lookup) return false;
    const ttl = e.lookup.state === "read" ? this.o.ttlMs : this.o.failureTtlMs;
    return this.o.now() - e.at < ttl;
  }

  async lookup(ref: string): Promise<ImageLookup> {
    const known = this.entries.get(ref);
    if (this.fresh(known)) return known.lookup;
    let pending = known?.pending;
    if (!pending) {
      pending = this.read(ref).then(
        (r): ImageLookup => ({
          state: "read",
          ...(r.memoryMiB !== undefined ? { memoryMiB: r.memoryMiB } : {}),
        }),
        (err: unknown): ImageLookup => ({
          state: "unread",
          reason: (err instanceof Error ? err.message : String(err)).slice(0, 300),
        }),
      );
      const entry: Entry = { at: this.o.now(), pending, ...(known?.lookup ? { lookup: known.lookup } : {}) };
      this.entries.delete(ref);
      this.entries.set(ref, entry);
      void pending.then((lookup) => {
        if (this.entries.get(ref) === entry) this.entries.set(ref, { at: this.o.now(), lookup });
      });
      while (this.entries.size > this.o.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<ImageLookup>((resolve) => {
      timer = setTimeout(
        () =>
          resolve({ state: "unread", reason: `the registry did not answer within ${this.o.timeoutMs} ms` }),
        this.o.timeoutMs,
      );
    });
    try {
      return await Promise.race([pending, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * Reads images anonymously from their registries; `plainHttpRegistries` (hosts or host:port) are
 * reached without TLS, as the shim's flag of the same name.
 */
export function registryReader(plainHttpRegistries: string[]): ReadImage {
  return async (ref) => {
    const { registry } = parseReference(ref);
    const host = registry.replace(/:\d+$/, "");
    const plainHttp = plainHttpRegistries.some((r) => r === registry || r === host);
    const { config } = await inspectImage(ref, { plainHttp });
    return config.memoryMiB !== undefined ? { memoryMiB: config.memoryMiB } : {};
  };
}
