// A connected pair of AF_UNIX stream sockets from libc: libxl needs a plain fd to write its stream
// to (or read it from), while Node's TLS runs in-process, so libxl gets one end and a pump in
// Node moves bytes between the other end and the TLS connection.
import { closeSync } from "node:fs";
import net from "node:net";
import koffi from "koffi";
import { LIBC } from "../hypervisor/libxl-ffi.js";

const AF_UNIX = 1;
const SOCK_STREAM = 1;
// CLOEXEC so children Node spawns meanwhile (CNI plugins, hotplug) never inherit either end;
// libxl clears it on its own dup for libxl-save-helper (dup_cloexec in libxl_save_callout.c).
const SOCK_CLOEXEC = 0o2000000;

type SocketpairFn = (domain: number, type: number, protocol: number, sv: number[]) => number;
let socketpairFn: SocketpairFn | undefined;

function libcSocketpair(): SocketpairFn {
  socketpairFn ??= koffi
    .load(LIBC)
    .func("int socketpair(int domain, int type, int protocol, _Out_ int *sv)") as unknown as SocketpairFn;
  return socketpairFn;
}

export interface StreamSocketpair {
  /** The end handed to libxl (blocking, a plain fd); close it once libxl's call returned. */
  readonly libxlFd: number;
  /** Node's end. */
  readonly socket: net.Socket;
  /** Closes libxl's end if still open (idempotent). */
  closeLibxlEnd(): void;
}

export function streamSocketpair(): StreamSocketpair {
  const fds = [-1, -1];
  if (libcSocketpair()(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) !== 0)
    throw new Error(`socketpair failed (errno ${koffi.errno()})`);
  const [libxlFd, nodeFd] = fds as [number, number];
  let libxlOpen = true;
  // libuv makes this end non-blocking; the two ends are separate open files, so libxl's stays blocking.
  const socket = new net.Socket({ fd: nodeFd, readable: true, writable: true });
  return {
    libxlFd,
    socket,
    closeLibxlEnd() {
      if (!libxlOpen) return;
      libxlOpen = false;
      closeSync(libxlFd);
    },
  };
}
