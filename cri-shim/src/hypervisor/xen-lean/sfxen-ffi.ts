// koffi bindings to native/lib/sfxen (libsfxen.so): a flat C API of ints, strings and caller-owned
// buffers, so no struct layout is written down here. Every call runs on a koffi worker thread (the
// builder populates memory and maps guest pages: milliseconds the event loop must not wait on).
import { Socket } from "node:net";
import koffi from "koffi";
import { HypervisorError } from "../types.js";
import { SFXEN_LIB_PATH } from "./sfxen-names.js";
import type { Dominfo } from "../libxl-structs.js";
import { decodeDomains, DOMAIN_RECORD_BYTES } from "./domain-list.js";

export { SFXEN_LIB_PATH, SHELL_UUID_PREFIX } from "./sfxen-names.js";

const ERR_BYTES = 1024;
const CODES: Record<number, HypervisorError["code"]> = {
  [-1]: "Failed",
  [-2]: "InvalidArgument",
  [-3]: "OutOfMemory",
  [-4]: "NotFound",
};

export interface AsyncFn<A extends unknown[]> {
  async: (...args: [...A, (err: unknown, res: number) => void]) => void;
}

export function call<A extends unknown[]>(fn: AsyncFn<[...A, Buffer, number]>, ...args: A): Promise<number> {
  const err = Buffer.alloc(ERR_BYTES);
  return new Promise((resolve, reject) =>
    fn.async(...args, err, ERR_BYTES, (e: unknown, rc: number) => {
      if (e) return reject(e instanceof Error ? e : new Error(String(e)));
      if (rc >= 0) return resolve(rc);
      const msg = err.toString("utf8", 0, Math.max(0, err.indexOf(0))) || `libsfxen error ${rc}`;
      reject(new HypervisorError(msg, CODES[rc] ?? "Failed"));
    }),
  );
}

export function loadLibrary(path: string): ReturnType<typeof koffi.load> {
  try {
    return koffi.load(path);
  } catch (err) {
    throw new HypervisorError(
      `cannot load ${path} (run \`make -C native\`): ${err instanceof Error ? err.message : String(err)}`,
    );
  }
}

function load(path: string) {
  const lib = loadLibrary(path);
  return {
    open: lib.func("int sfx_open(void *err, int errlen)") as unknown as AsyncFn<[Buffer, number]>,
    freeKiB: lib.func("int sfx_free_kib(void *out, void *err, int errlen)") as unknown as AsyncFn<
      [Buffer, Buffer, number]
    >,
    prepare: lib.func(
      "int sfx_prepare(const char *name, int mem, int maxmem, int vcpus, int maxvcpus, void *err, int errlen)",
    ) as unknown as AsyncFn<[string, number, number, number, number, Buffer, number]>,
    execute: lib.func(
      "int sfx_execute(int domid, const char *kernel, const char *initrd, const char *cmdline, const char *name, const char *uuid, void *err, int errlen)",
    ) as unknown as AsyncFn<[number, string, string, string, string, string, Buffer, number]>,
    vifWriteStats: lib.func("void sfx_vif_write_stats(void *out)") as unknown as (out: Buffer) => void,
    vifWrite: lib.func(
      "int sfx_vif_write(int domid, int devid, const char *mac, const char *bridge, void *err, int errlen)",
    ) as unknown as AsyncFn<[number, number, string, string, Buffer, number]>,
    vifAttach: lib.func(
      "int sfx_vif_attach(int domid, int devid, const char *bridge, int timeout_ms, void *err, int errlen)",
    ) as unknown as AsyncFn<[number, number, string, number, Buffer, number]>,
    destroy: lib.func("int sfx_destroy(int domid, void *err, int errlen)") as unknown as AsyncFn<
      [number, Buffer, number]
    >,
    releaseWatch: lib.func("int sfx_release_watch(void *err, int errlen)") as unknown as AsyncFn<
      [Buffer, number]
    >,
    listDomains: lib.func(
      "int sfx_list_domains(void *out, int max, void *err, int errlen)",
    ) as unknown as AsyncFn<[Buffer, number, Buffer, number]>,
  };
}

/** The lean builder, one per process (its prepared shells live in this process's memory). */
export class Sfxen {
  /** Room for this many domains in the next list (grows to what the last one found, plus slack). */
  private listRoom = 256;

  private constructor(private readonly l: ReturnType<typeof load>) {}

  static async open(path = SFXEN_LIB_PATH): Promise<Sfxen> {
    const l = load(path);
    await call(l.open);
    return new Sfxen(l);
  }

  async freeKiB(): Promise<number> {
    const out = Buffer.alloc(8);
    await call(this.l.freeKiB, out);
    return Number(out.readBigInt64LE(0));
  }

  /** Creates a shell: domain, ceilings, event channels, memory populated, named in XenStore. */
  prepare(name: string, memoryMiB: number, maxMemoryMiB: number, vcpus: number, maxVcpus: number) {
    return call(this.l.prepare, name, memoryMiB, maxMemoryMiB, vcpus, maxVcpus);
  }

  /** Loads kernel (+ initrd) and cmdline into a shell and introduces it; paused. A failure destroys it. */
  async execute(
    domid: number,
    a: { kernel: string; initrd?: string; cmdline: string; name: string; uuid: string },
  ) {
    await call(this.l.execute, domid, a.kernel, a.initrd ?? "", a.cmdline, a.name, a.uuid);
  }

  /** Writes the vif's frontend and backend entries; fails at once on a missing bridge. Returns
   *  where its time went: the transaction's writes and its commit (µs; a transaction batched on
   *  xenstored's socket is all writes), and the attempts. */
  async vifWrite(domid: number, devid: number, mac: string, bridge: string) {
    await call(this.l.vifWrite, domid, devid, mac, bridge);
    const out = Buffer.alloc(32);
    this.l.vifWriteStats(out);
    const at = (i: number) => Number(out.readBigInt64LE(i * 8));
    return { writesUs: at(0), commitUs: at(1), attempts: at(2), batched: at(3) === 1 };
  }

  /** Waits for netback's interface, joins it to the bridge and brings it up (ioctl). */
  async vifAttach(domid: number, devid: number, bridge: string, timeoutMs: number) {
    await call(this.l.vifAttach, domid, devid, bridge, timeoutMs);
  }

  async destroy(domid: number) {
    await call(this.l.destroy, domid);
  }

  /** Every domain (dom0 and shells too), from one hypercall; no names (those are XenStore's). */
  async listDomains(): Promise<Dominfo[]> {
    for (;;) {
      const room = this.listRoom;
      const out = Buffer.alloc(room * DOMAIN_RECORD_BYTES);
      const n = await call(this.l.listDomains, out, room);
      // A full buffer may have left domains out: again, with room for all of them.
      if (n >= room) {
        this.listRoom = room * 2;
        continue;
      }
      this.listRoom = Math.max(256, n + 64);
      return decodeDomains(out, n);
    }
  }

  /**
   * @releaseDomain from libsfxen's watch thread, which writes a byte to a pipe whenever XenStore
   * fires it; the event loop reads the pipe as a socket. Returns the function that stops listening.
   */
  async releaseEvents(onEvent: () => void, onEnd: (why: string) => void): Promise<() => void> {
    const fd = await call(this.l.releaseWatch);
    const pipe = new Socket({ fd, readable: true, writable: false });
    let stopped = false;
    pipe.on("data", () => onEvent());
    pipe.on("error", (err) => !stopped && onEnd(String(err)));
    pipe.on("close", () => !stopped && onEnd("the @releaseDomain watch ended"));
    return () => {
      stopped = true;
      pipe.destroy();
    };
  }
}
