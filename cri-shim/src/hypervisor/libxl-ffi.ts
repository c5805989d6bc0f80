// koffi bindings to libxenlight 4.17 (and the libc/xentoollog pieces it needs): typed wrappers around
// the C functions, libxl's constants and error codes, and the helpers for C memory. The struct
// layouts these functions take are in libxl-structs.ts. The big libxl_domain_config is never laid
// out: it is filled by libxl_domain_config_from_json into an opaque buffer of
// DOMAIN_CONFIG_BUFFER_BYTES.
//
// Every libxl call that may block (anything touching XenStore, hypercalls, hotplug scripts, the
// save helper) has an async wrapper that runs on a koffi worker thread, so Node's event loop stays
// free. libxl is thread-safe: one ctx is shared by all threads.
import koffi, { type LibraryHandle, type TypeObject } from "koffi";
import { BitmapType } from "./libxl-structs.js";

type TypeSpec = TypeObject | string;

/** An opaque C pointer as koffi hands it out (an External); never dereferenced in JS directly. */
export type CPointer = { readonly __brand: "CPointer" };

export const LIBXENLIGHT = "libxenlight.so.4.17";
export const LIBXENTOOLLOG = "libxentoollog.so.1";
export const LIBC = "libc.so.6";

/** sizeof(libxl_domain_config) is 1288 bytes in 4.17; layout.test.ts checks this bound holds. */
export const DOMAIN_CONFIG_BUFFER_BYTES = 16384;

export const LIBXL_SUSPEND_LIVE = 2;
export const LIBXL_CONSOLE_TYPE_PV = 2;
/** libxl_sigchld_owner_mainloop: we tell libxl about SIGCHLD; libxl installs no signal handler. */
export const LIBXL_SIGCHLD_OWNER_MAINLOOP = 1;
/** The stream version libxl_domain_suspend writes (migration stream v2). */
export const LIBXL_STREAM_VERSION = 2;

export const XTL_LEVELS = {
  debug: 1,
  verbose: 2,
  detail: 3,
  progress: 4,
  info: 5,
  notice: 6,
  warn: 7,
  error: 8,
  critical: 9,
} as const;
export type XtlLevel = keyof typeof XTL_LEVELS;
export const XTL_STDIOSTREAM_HIDE_PROGRESS = 0o4;

export const LIBXL_ERRORS: Record<number, string> = {
  [-1]: "NONSPECIFIC",
  [-2]: "VERSION",
  [-3]: "FAIL",
  [-4]: "NI",
  [-5]: "NOMEM",
  [-6]: "INVAL",
  [-7]: "BADFAIL",
  [-8]: "GUEST_TIMEDOUT",
  [-9]: "TIMEDOUT",
  [-10]: "NOPARAVIRT",
  [-11]: "NOT_READY",
  [-12]: "OSEVENT_REG_FAIL",
  [-13]: "BUFFERFULL",
  [-14]: "UNKNOWN_CHILD",
  [-15]: "LOCK_FAIL",
  [-16]: "JSON_CONFIG_EMPTY",
  [-17]: "DEVICE_EXISTS",
  [-21]: "DOMAIN_NOTFOUND",
  [-22]: "ABORTED",
  [-23]: "NOTFOUND",
  [-24]: "DOMAIN_DESTROYED",
  [-25]: "FEATURE_REMOVED",
};
export const ERROR_NOMEM = -5;
export const ERROR_INVAL = -6;
export const ERROR_DOMAIN_NOTFOUND = -21;
export const ERROR_NOTFOUND = -23;
export const ERROR_DOMAIN_DESTROYED = -24;

type Sync<A extends unknown[], R> = (...args: A) => R;

/** A C function with a typed sync form and a promise form that runs on a worker thread. */
export interface CFunction<A extends unknown[], R> {
  sync: Sync<A, R>;
  async: (...args: A) => Promise<R>;
}

interface KoffiFn {
  (...args: unknown[]): unknown;
  async: (...args: unknown[]) => void;
}

function bind<A extends unknown[], R>(lib: LibraryHandle, declaration: string): CFunction<A, R> {
  const fn = lib.func(declaration) as unknown as KoffiFn;
  return {
    sync: (...args: A) => fn(...args) as R,
    async: (...args: A) =>
      new Promise<R>((resolve, reject) => {
        fn.async(...args, (err: unknown, result: unknown) =>
          err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(result as R),
        );
      }),
  };
}

type P = CPointer;
type Ctx = CPointer;

/** koffi.load, naming the library in the error (koffi's own message does not say which). */
function loadLibrary(name: string): LibraryHandle {
  try {
    return koffi.load(name);
  } catch (err) {
    throw new Error(
      `cannot load ${name}, the host's Xen toolstack (in a container: the host's library directory mounted at /host/usr/lib/x86_64-linux-gnu, docs/images.md): ${err instanceof Error ? err.message : String(err)}`,
    );
  }
}

function loadBindings() {
  const libc = loadLibrary(LIBC);
  const xtl = loadLibrary(LIBXENTOOLLOG);
  const xl = loadLibrary(LIBXENLIGHT);
  return {
    fdopen: bind<[number, string], P | null>(libc, "void *fdopen(int fd, const char *mode)"),
    fclose: bind<[P], number>(libc, "int fclose(void *f)"),
    free: bind<[P | null], void>(libc, "void free(void *p)"),
    xtlCreateStdioLogger: bind<[P, number, number], P | null>(
      xtl,
      "void *xtl_createlogger_stdiostream(void *f, int level, unsigned int flags)",
    ),
    xtlLoggerDestroy: bind<[P], void>(xtl, "void xtl_logger_destroy(void *logger)"),

    ctxAlloc: bind<[P, number, number, P], number>(
      xl,
      "int libxl_ctx_alloc(void *pctx, int version, unsigned int flags, void *lg)",
    ),
    ctxFree: bind<[Ctx], number>(xl, "int libxl_ctx_free(void *ctx)"),
    childprocSetmode: bind<[Ctx, P, P | null], void>(
      xl,
      "void libxl_childproc_setmode(void *ctx, void *hooks, void *user)",
    ),
    childprocSigchldOccurred: bind<[Ctx], void>(xl, "void libxl_childproc_sigchld_occurred(void *ctx)"),

    listDomain: bind<[Ctx, P], P | null>(xl, "void *libxl_list_domain(void *ctx, void *nb_out)"),
    dominfoListFree: bind<[P, number], void>(xl, "void libxl_dominfo_list_free(void *list, int nb)"),
    dominfoInit: bind<[P], void>(xl, "void libxl_dominfo_init(void *p)"),
    dominfoDispose: bind<[P], void>(xl, "void libxl_dominfo_dispose(void *p)"),
    domainInfo: bind<[Ctx, P, number], number>(
      xl,
      "int libxl_domain_info(void *ctx, void *info, uint32_t domid)",
    ),
    domidToName: bind<[Ctx, number], P | null>(xl, "void *libxl_domid_to_name(void *ctx, uint32_t domid)"),
    nameToDomid: bind<[Ctx, string, P], number>(
      xl,
      "int libxl_name_to_domid(void *ctx, const char *name, void *domid)",
    ),
    physinfoInit: bind<[P], void>(xl, "void libxl_physinfo_init(void *p)"),
    physinfoDispose: bind<[P], void>(xl, "void libxl_physinfo_dispose(void *p)"),
    getPhysinfo: bind<[Ctx, P], number>(xl, "int libxl_get_physinfo(void *ctx, void *physinfo)"),
    getVersionInfo: bind<[Ctx], P | null>(xl, "void *libxl_get_version_info(void *ctx)"),

    domainConfigInit: bind<[P], void>(xl, "void libxl_domain_config_init(void *p)"),
    domainConfigDispose: bind<[P], void>(xl, "void libxl_domain_config_dispose(void *p)"),
    domainConfigFromJson: bind<[Ctx, P, string], number>(
      xl,
      "int libxl_domain_config_from_json(void *ctx, void *p, const char *s)",
    ),
    domainConfigToJson: bind<[Ctx | null, P], P | null>(
      xl,
      "void *libxl_domain_config_to_json(void *ctx, void *p)",
    ),
    restoreParamsInit: bind<[P], void>(xl, "void libxl_domain_restore_params_init(void *p)"),
    restoreParamsDispose: bind<[P], void>(xl, "void libxl_domain_restore_params_dispose(void *p)"),

    domainCreateNew: bind<[Ctx, P, P, null, null], number>(
      xl,
      "int libxl_domain_create_new(void *ctx, void *cfg, void *domid, void *ao_how, void *aop_console_how)",
    ),
    domainCreateRestore: bind<[Ctx, P, P, number, number, P, null, null], number>(
      xl,
      "int libxl_domain_create_restore(void *ctx, void *cfg, void *domid, int restore_fd, int send_back_fd, void *params, void *ao_how, void *aop_console_how)",
    ),
    domainUnpause: bind<[Ctx, number, null], number>(
      xl,
      "int libxl_domain_unpause(void *ctx, uint32_t domid, void *ao_how)",
    ),
    domainPause: bind<[Ctx, number, null], number>(
      xl,
      "int libxl_domain_pause(void *ctx, uint32_t domid, void *ao_how)",
    ),
    domainShutdown: bind<[Ctx, number, null], number>(
      xl,
      "int libxl_domain_shutdown(void *ctx, uint32_t domid, void *ao_how)",
    ),
    domainReboot: bind<[Ctx, number, null], number>(
      xl,
      "int libxl_domain_reboot(void *ctx, uint32_t domid, void *ao_how)",
    ),
    domainDestroy: bind<[Ctx, number, null], number>(
      xl,
      "int libxl_domain_destroy(void *ctx, uint32_t domid, void *ao_how)",
    ),
    domainSuspend: bind<[Ctx, number, number, number, null], number>(
      xl,
      "int libxl_domain_suspend(void *ctx, uint32_t domid, int fd, int flags, void *ao_how)",
    ),
    domainResume: bind<[Ctx, number, number, null], number>(
      xl,
      "int libxl_domain_resume(void *ctx, uint32_t domid, int suspend_cancel, void *ao_how)",
    ),
    setMemoryTarget: bind<[Ctx, number, number, number, number], number>(
      xl,
      "int libxl_set_memory_target(void *ctx, uint32_t domid, int64_t target_memkb, int relative, int enforce)",
    ),
    setVcpuonline: bind<[Ctx, number, P, null], number>(
      xl,
      "int libxl_set_vcpuonline(void *ctx, uint32_t domid, void *cpumap, void *ao_how)",
    ),
    consoleGetTty: bind<[Ctx, number, number, number, P], number>(
      xl,
      "int libxl_console_get_tty(void *ctx, uint32_t domid, int cons_num, int type, void *path)",
    ),
  };
}

export type LibxlBindings = ReturnType<typeof loadBindings>;

let bindings: LibxlBindings | undefined;

/** Loads the libraries on first use (they load on any host with libxen; calls need dom0). */
export function libxlBindings(): LibxlBindings {
  bindings ??= loadBindings();
  return bindings;
}

/**
 * The same bindings, with every worker-thread call counted by `gate`: enter() may refuse (the ctx
 * is closing) and leave() runs when the call settles, so close() can wait for calls in flight
 * instead of freeing the ctx under a worker thread.
 */
export function gatedBindings(lib: LibxlBindings, gate: { enter(): void; leave(): void }): LibxlBindings {
  const gated: Record<string, CFunction<unknown[], unknown>> = {};
  for (const [name, fn] of Object.entries(lib) as [string, CFunction<unknown[], unknown>][]) {
    gated[name] = {
      sync: fn.sync,
      async: (...args: unknown[]) => {
        try {
          gate.enter();
        } catch (err) {
          return Promise.reject(err instanceof Error ? err : new Error(String(err)));
        }
        return fn.async(...args).finally(() => gate.leave());
      },
    };
  }
  return gated as unknown as LibxlBindings;
}

/** A zeroed C buffer whose address does not move (safe to hand to a worker-thread call). */
export function cAlloc(bytes: number): P {
  const p = koffi.alloc("uint8", bytes) as P;
  new Uint8Array(koffi.view(p, bytes)).fill(0);
  return p;
}

export function cFree(p: P): void {
  koffi.free(p);
}

/** A libxl_bitmap with bits 0..n-1 set (e.g. the vcpus to have online). */
export function allocFirstBitsMap(n: number): { pointer: P; free(): void } {
  const bytes = Math.ceil(n / 8);
  const map = cAlloc(bytes);
  const bits = new Uint8Array(koffi.view(map, bytes));
  for (let i = 0; i < n; i++) bits[i >> 3] = (bits[i >> 3] ?? 0) | (1 << (i & 7));
  const pointer = cAlloc(koffi.sizeof(BitmapType));
  encode(pointer, BitmapType, { size: bytes, map });
  return {
    pointer,
    free: () => {
      cFree(pointer);
      cFree(map);
    },
  };
}

export function decode<T>(p: P, type: TypeSpec, offset = 0): T {
  return koffi.decode(p, offset, type) as T;
}

export function encode(p: P, type: TypeSpec, value: unknown, offset = 0): void {
  koffi.encode(p, offset, type, value);
}

/** Reads a NUL-terminated string that C allocated with malloc, then frees it. */
export function takeCString(lib: LibxlBindings, p: P | null): string | undefined {
  if (p === null) return undefined;
  try {
    return koffi.decode(p, "char", -1) as string;
  } finally {
    lib.free.sync(p);
  }
}

export function toBigInt(v: number | bigint): bigint {
  return typeof v === "bigint" ? v : BigInt(v);
}

export function toNumber(v: number | bigint): number {
  return typeof v === "bigint" ? Number(v) : v;
}

export function libxlErrorName(rc: number): string {
  return `ERROR_${LIBXL_ERRORS[rc] ?? String(rc)}`;
}
