// After a migration the network must learn where the guest's MAC lives now. Switches and bridges
// learn from the frames a MAC sends, and a resumed guest sends its own announcement (Linux's
// netfront: a gratuitous ARP) only once its frontend has reconnected, and a unikernel may send none.
// Until a bridge on the way hears from the MAC, it keeps sending the guest's traffic to where it
// was: the source node's dead vif, or (on the target, which heard the guest's broadcasts over the
// segment before the move) back out of its uplink.
//
// So the target's dom0 announces the guest itself as it unpauses it, in-process (no process per VM):
//   1. its own bridge forgets where it learned the MAC (the uplink, from the guest's broadcasts on
//      the source), so traffic for the guest that arrives over the uplink is flooded to the vif
//      (and learned there once the guest speaks), not dropped as belonging behind the uplink;
//   2. a RARP broadcast from the guest's MAC leaves through the bridge (QEMU's "announce-self"
//      frame, which guests ignore and every bridge on the way learns from), so the rest of the
//      segment sends to this node at once. It repeats a few times in case one is lost.
// RARP carries no IP address: a guest readdressed on the target (readdress.ts) keeps its inner
// address, which must not be announced on the target's network.
import koffi from "koffi";
import { logger } from "../../../lib/log.js";
import { LIBC } from "../hypervisor/libxl-ffi.js";
import { forgetMac, linkExists, linkIndex } from "./netlink.js";

const log = logger("announce");

const AF_PACKET = 17;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const ETH_P_RARP = 0x8035;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;
/** When each announcement goes out, ms after the first (QEMU's announce-self: 50 ms, then +100 ms steps). */
export const ANNOUNCE_SCHEDULE_MS = [0, 50, 150, 300];

function macBytes(mac: string): Buffer {
  if (typeof mac !== "string" || !MAC.test(mac))
    throw new Error(`announce: ${JSON.stringify(String(mac).slice(0, 40))} is not a MAC address`);
  return Buffer.from(mac.split(":").map((h) => parseInt(h, 16)));
}

/** A RARP "reverse request" broadcast from `mac` about itself, padded to Ethernet's 60-byte minimum. */
export function rarpFrame(mac: string): Buffer {
  const m = macBytes(mac);
  const f = Buffer.alloc(60);
  f.fill(0xff, 0, 6); // to everyone
  m.copy(f, 6);
  f.writeUInt16BE(ETH_P_RARP, 12);
  f.writeUInt16BE(1, 14); // hardware: Ethernet
  f.writeUInt16BE(0x0800, 16); // protocol: IPv4
  f.writeUInt8(6, 18);
  f.writeUInt8(4, 19);
  f.writeUInt16BE(3, 20); // reverse request
  m.copy(f, 22); // sender MAC; sender IP 0.0.0.0
  m.copy(f, 32); // target MAC; target IP 0.0.0.0
  return f;
}

type SockFn = (domain: number, type: number, protocol: number) => number;
type SendToFn = (fd: number, buf: Buffer, len: number, flags: number, addr: Buffer, alen: number) => number;
type CloseFn = (fd: number) => number;
function load() {
  const libc = koffi.load(LIBC);
  return {
    socket: libc.func("int socket(int domain, int type, int protocol)") as unknown as SockFn,
    sendto: libc.func(
      "long sendto(int fd, const void *buf, size_t len, int flags, const void *addr, uint32_t alen)",
    ) as unknown as SendToFn,
    close: libc.func("int close(int fd)") as unknown as CloseFn,
  };
}
let lib: ReturnType<typeof load> | undefined;

/** Sends one Ethernet frame (header included) out of `ifname` through a raw packet socket. */
export function sendFrame(ifname: string, frame: Buffer): void {
  const index = linkIndex(ifname);
  if (index === undefined) throw new Error(`announce: no interface ${ifname}`);
  const l = (lib ??= load());
  const fd = l.socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0); // protocol 0: send only, receives nothing
  if (fd < 0) throw new Error(`announce: packet socket failed (errno ${koffi.errno()})`);
  try {
    const sll = Buffer.alloc(20); // struct sockaddr_ll
    sll.writeUInt16LE(AF_PACKET, 0);
    sll.writeUInt16BE(frame.readUInt16BE(12), 2);
    sll.writeInt32LE(index, 4);
    sll.writeUInt8(6, 11);
    frame.copy(sll, 12, 0, 6);
    if (l.sendto(fd, frame, frame.length, 0, sll, sll.length) !== frame.length)
      throw new Error(`announce: send on ${ifname} failed (errno ${koffi.errno()})`);
  } finally {
    l.close(fd);
  }
}

export interface GuestPort {
  /** The guest's vif in dom0 (vif<domid>.<devid>). */
  ifname: string;
  bridge: string;
  mac: string;
}

/** A domain's vifs as netback names them in dom0 (vif<domid>.<devid>, devid = index in the spec). */
export function guestPorts(domid: number, vifs: { bridge: string; mac: string }[]): GuestPort[] {
  return vifs.map((v, devid) => ({ ifname: `vif${domid}.${devid}`, bridge: v.bridge, mac: v.mac }));
}

/** Makes the bridge forget the guest MAC's old port, then broadcasts RARPs from it on the bridge
 *  (now and on ANNOUNCE_SCHEDULE_MS). Best effort: a failure is logged, never thrown; the guest's
 *  own traffic teaches the bridges in the end. The first announcement is out when it returns. */
export function announceGuest(ports: GuestPort[], schedule = ANNOUNCE_SCHEDULE_MS): void {
  for (const p of ports) {
    // sysfs first: if_nametoindex of a missing name makes the kernel try a modprobe (netlink.ts).
    if (!linkExists(p.ifname) || !linkExists(p.bridge)) {
      log.warn("not announcing the guest: no such interface", { ...p });
      continue;
    }
    try {
      const was = forgetMac(p.bridge, p.mac, p.ifname);
      if (was !== undefined && was !== p.ifname)
        log.debug("the bridge forgot the guest's old port", { ...p, was });
    } catch (err) {
      log.warn("cannot make the bridge forget the guest's old port", { ...p, err: String(err) });
    }
    let frame: Buffer;
    try {
      frame = rarpFrame(p.mac);
    } catch (err) {
      log.warn("not announcing the guest", { ...p, err: String(err) });
      continue;
    }
    const send = (): void => {
      try {
        sendFrame(p.bridge, frame);
      } catch (err) {
        log.warn("announcing the guest failed", { ...p, err: String(err) });
      }
    };
    for (const at of schedule) {
      if (at === 0) send();
      else setTimeout(send, at).unref();
    }
  }
  log.debug("guest announced", { ports: ports.map((p) => `${p.mac}@${p.ifname}`) });
}
