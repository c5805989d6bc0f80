// The network segment that joins the emulated Xen nodes of one process (dom0 eth1, 10.99.0.<index>/24).
// Each QEMU sends its NIC's frames as UDP datagrams to this hub on 127.0.0.1 (`-netdev socket,udp=`),
// and the hub forwards every frame to every other node, like an Ethernet hub. Everything stays on
// the host's loopback: no TAP, no bridge, no network namespace to create or leak, and no root needed
// for it. Nodes started by different processes are not on the same segment (document, not a bug:
// a test that needs two nodes starts both).
import { createSocket, type Socket } from "node:dgram";

export class Segment {
  private socket: Socket | undefined;
  private port = 0;
  /** The UDP ports of the QEMU NICs on this segment (one per node). */
  private readonly members = new Set<number>();

  /** Starts the hub if needed and returns its port on 127.0.0.1. */
  async hubPort(): Promise<number> {
    if (this.socket) return this.port;
    const socket = createSocket("udp4");
    socket.on("message", (frame, from) => {
      for (const member of this.members) {
        if (member !== from.port) socket.send(frame, member, "127.0.0.1");
      }
    });
    socket.on("error", () => undefined); // a member that just went away: drop the frame
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind(0, "127.0.0.1", () => resolve());
    });
    socket.unref(); // the hub must not keep a test process alive
    this.socket = socket;
    this.port = socket.address().port;
    return this.port;
  }

  join(port: number): void {
    this.members.add(port);
  }

  leave(port: number): void {
    this.members.delete(port);
    if (this.members.size === 0 && this.socket) {
      this.socket.close();
      this.socket = undefined;
    }
  }
}

/** Reserves a free UDP port on 127.0.0.1 for a QEMU NIC (released just before QEMU binds it). */
export async function freeUdpPort(): Promise<number> {
  const socket = createSocket("udp4");
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(0, "127.0.0.1", () => resolve());
  });
  const port = socket.address().port;
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}
