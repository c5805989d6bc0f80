// nftables in-process through libnftables (Debian's libnftables1), instead of one `nft` process per
// change: under emulation a fork+exec costs ~0.1 s, and under npm `nft` on PATH is a different
// program (@vercel/nft). The library's ABI is small and stable: a context, a command buffer in nft's
// own syntax (one buffer is one transaction: all of it applies or none), and buffered output/errors.
// One context serves the process; calls are serialised and run on a worker thread (each is a
// netlink round trip to the kernel), so the event loop never waits on them.
import koffi from "koffi";

type Ctx = unknown;
interface Fn<A extends unknown[], R> {
  (...args: A): R;
  async: (...args: [...A, (err: unknown, res: R) => void]) => void;
}

/** nft's NFT_CTX_OUTPUT_JSON output flag (nftables.h). */
const OUTPUT_JSON = 1 << 4;

function load() {
  const l = koffi.load("libnftables.so.1");
  return {
    ctxNew: l.func("void *nft_ctx_new(uint32_t flags)") as unknown as Fn<[number], Ctx | null>,
    bufferOutput: l.func("int nft_ctx_buffer_output(void *ctx)") as unknown as Fn<[Ctx], number>,
    bufferError: l.func("int nft_ctx_buffer_error(void *ctx)") as unknown as Fn<[Ctx], number>,
    output: l.func("const char *nft_ctx_get_output_buffer(void *ctx)") as unknown as Fn<[Ctx], string | null>,
    error: l.func("const char *nft_ctx_get_error_buffer(void *ctx)") as unknown as Fn<[Ctx], string | null>,
    setOutputFlags: l.func("void nft_ctx_output_set_flags(void *ctx, unsigned int flags)") as unknown as Fn<
      [Ctx, number],
      void
    >,
    run: l.func("int nft_run_cmd_from_buffer(void *ctx, const char *buf)") as unknown as Fn<
      [Ctx, string],
      number
    >,
    free: l.func("void nft_ctx_free(void *ctx)") as unknown as Fn<[Ctx], void>,
  };
}

let lib: ReturnType<typeof load> | undefined;
let ctx: Ctx | undefined;
let tail: Promise<unknown> = Promise.resolve();

export class NftError extends Error {}

function context(): { l: ReturnType<typeof load>; c: Ctx } {
  if (!lib) {
    try {
      lib = load();
    } catch (err) {
      throw new NftError(
        `libnftables.so.1 (Debian package libnftables1) could not be loaded: ${String(err)}`,
      );
    }
  }
  if (!ctx) {
    const c = lib.ctxNew(0);
    if (!c) throw new NftError("nft_ctx_new failed");
    if (lib.bufferOutput(c) !== 0 || lib.bufferError(c) !== 0) {
      lib.free(c);
      throw new NftError("nft_ctx_buffer_output/error failed");
    }
    ctx = c;
  }
  return { l: lib, c: ctx };
}

/**
 * Runs one nft command buffer (several commands, one per line, form one transaction) and returns
 * its output; `json` switches listings to JSON. Throws NftError with nft's message on failure.
 */
export function nftRun(commands: string, opts: { json?: boolean } = {}): Promise<string> {
  const work = async (): Promise<string> => {
    const { l, c } = context();
    l.setOutputFlags(c, opts.json ? OUTPUT_JSON : 0);
    const rc = await new Promise<number>((resolve, reject) =>
      l.run.async(c, commands, (err, res) =>
        err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(res),
      ),
    );
    const out = l.output(c) ?? "";
    const errText = (l.error(c) ?? "").trim();
    if (rc !== 0) throw new NftError(`nft: ${errText || `error ${rc}`} (in: ${firstLine(commands)})`);
    return out;
  };
  const result = tail.then(work, work);
  tail = result.catch(() => undefined);
  return result;
}

function firstLine(s: string): string {
  const line = s.trim().split("\n")[0] ?? "";
  return line.length > 120 ? `${line.slice(0, 120)}…` : line;
}

/** The objects of an `nft -j list ...` output. */
export interface NftObject {
  table?: { name?: string; family?: string };
  chain?: { name?: string; table?: string };
  rule?: { comment?: string; chain?: string };
  map?: { name?: string; elem?: unknown[] };
  set?: { name?: string; elem?: unknown[] };
}

export function parseNftJson(text: string): NftObject[] {
  if (!text.trim()) return [];
  try {
    const doc = JSON.parse(text) as { nftables?: NftObject[] };
    return doc.nftables ?? [];
  } catch {
    return [];
  }
}

/** Frees the context (tests; the shim keeps it for its lifetime). */
export function nftClose(): void {
  if (lib && ctx) lib.free(ctx);
  ctx = undefined;
}
