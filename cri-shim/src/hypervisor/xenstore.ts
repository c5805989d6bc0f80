// XenStore through libxenstore (koffi), for what libxl has no call for: reading and writing guest
// keys (`/local/domain/<id>/...`), e.g. a guest's memory target or values a unikernel publishes.
// Calls run on koffi worker threads (each is a round trip to xenstored); libxenstore's handle is
// thread-safe.
import koffi from "koffi";
import type { CPointer } from "./libxl-ffi.js";
import { HypervisorError } from "./types.js";

const XBT_NULL = 0;

interface Fn<A extends unknown[], R> {
  (...args: A): R;
  async: (...args: [...A, (err: unknown, res: R) => void]) => void;
}

function promise<A extends unknown[], R>(fn: Fn<A, R>, ...args: A): Promise<R> {
  return new Promise((resolve, reject) =>
    fn.async(...args, (err, res) =>
      err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(res),
    ),
  );
}

function load() {
  const xs = koffi.load("libxenstore.so.4");
  const libc = koffi.load("libc.so.6");
  return {
    open: xs.func("void *xs_open(unsigned long flags)") as unknown as Fn<[number], CPointer | null>,
    close: xs.func("void xs_close(void *h)") as unknown as Fn<[CPointer], void>,
    read: xs.func("void *xs_read(void *h, uint32_t t, const char *path, void *len)") as unknown as Fn<
      [CPointer, number, string, CPointer],
      CPointer | null
    >,
    write: xs.func(
      "bool xs_write(void *h, uint32_t t, const char *path, const char *data, unsigned int len)",
    ) as unknown as Fn<[CPointer, number, string, string, number], boolean>,
    directory: xs.func(
      "void *xs_directory(void *h, uint32_t t, const char *path, void *num)",
    ) as unknown as Fn<[CPointer, number, string, CPointer], CPointer | null>,
    rm: xs.func("bool xs_rm(void *h, uint32_t t, const char *path)") as unknown as Fn<
      [CPointer, number, string],
      boolean
    >,
    free: libc.func("void free(void *p)") as unknown as Fn<[CPointer], void>,
  };
}

let lib: ReturnType<typeof load> | undefined;

function checkPath(path: string): void {
  if (typeof path !== "string" || !/^\/[\x21-\x7e]*$/.test(path) || path.length > 3072) {
    throw new HypervisorError(`not a XenStore path: ${JSON.stringify(path)}`, "InvalidArgument");
  }
}

export class XenStore {
  private closed = false;
  private constructor(
    private readonly l: ReturnType<typeof load>,
    private readonly h: CPointer,
  ) {}

  /** Connects to xenstored (dom0 only). */
  static open(): XenStore {
    lib ??= load();
    const h = lib.open(0);
    if (h === null)
      throw new HypervisorError(
        `cannot connect to xenstored (errno ${koffi.errno()}): not dom0, or xenstored is not running`,
      );
    return new XenStore(lib, h);
  }

  private handle(): CPointer {
    if (this.closed) throw new HypervisorError("XenStore connection is closed");
    return this.h;
  }

  /** The value at `path`, or undefined when it does not exist. */
  async read(path: string): Promise<string | undefined> {
    checkPath(path);
    const len = koffi.alloc("uint32", 1) as CPointer;
    try {
      const p = await promise(this.l.read, this.handle(), XBT_NULL, path, len);
      if (p === null) return undefined;
      try {
        const n = koffi.decode(len, "uint32") as number;
        return Buffer.from(koffi.view(p, n)).toString("utf8");
      } finally {
        this.l.free(p);
      }
    } finally {
      koffi.free(len);
    }
  }

  async write(path: string, value: string): Promise<void> {
    checkPath(path);
    if (!(await promise(this.l.write, this.handle(), XBT_NULL, path, value, Buffer.byteLength(value)))) {
      throw new HypervisorError(`XenStore write ${path} failed`);
    }
  }

  /** Child names under `path`, or undefined when it does not exist. */
  async list(path: string): Promise<string[] | undefined> {
    checkPath(path);
    const num = koffi.alloc("uint32", 1) as CPointer;
    try {
      const p = await promise(this.l.directory, this.handle(), XBT_NULL, path, num);
      if (p === null) return undefined;
      try {
        const n = koffi.decode(num, "uint32") as number;
        // One malloc'd block: n char* followed by the strings they point to.
        return n === 0 ? [] : (koffi.decode(p, koffi.array("const char *", n, "Array")) as string[]);
      } finally {
        this.l.free(p);
      }
    } finally {
      koffi.free(num);
    }
  }

  async remove(path: string): Promise<void> {
    checkPath(path);
    if (!(await promise(this.l.rm, this.handle(), XBT_NULL, path)))
      throw new HypervisorError(`XenStore rm ${path} failed`);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.l.close(this.h);
  }
}
