// The few rtnetlink requests the shim makes on dom0's bridge, in-process (libc socket/send/recv
// through koffi) instead of `ip` processes: create a bridge, bring a link up, add or remove an IPv4
// address, drop a neighbour entry, and list a link's IPv4 addresses. Each request is one message
// with NLM_F_ACK; the kernel answers at once, so the calls are synchronous. Messages are laid out
// here from the kernel's stable UAPI (linux/netlink.h, rtnetlink.h, if_addr.h, neighbour.h).
import { readdirSync, readFileSync, statSync } from "node:fs";
import koffi from "koffi";
import { LIBC } from "../hypervisor/libxl-ffi.js";

const AF_NETLINK = 16;
const AF_INET = 2;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const NETLINK_ROUTE = 0;
const NLM_F_REQUEST = 0x1;
const NLM_F_MULTI = 0x2;
const NLM_F_ACK = 0x4;
const NLM_F_DUMP = 0x300;
const NLM_F_EXCL = 0x200;
const NLM_F_CREATE = 0x400;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const RTM_NEWLINK = 16;
const RTM_NEWADDR = 20;
const RTM_DELADDR = 21;
const RTM_GETADDR = 22;
const RTM_DELNEIGH = 29;
const RTM_NEWQDISC = 36;
const NLM_F_REPLACE = 0x100;
const TC_H_ROOT = 0xffffffff;
const TCA_KIND = 1;
const IFLA_ADDRESS = 1;
const IFLA_IFNAME = 3;
const IFLA_MTU = 4;
const IFLA_MASTER = 10;
const IFLA_LINKINFO = 18;
const IFLA_INFO_KIND = 1;
const IFLA_INFO_DATA = 2;
const VETH_INFO_PEER = 1;
const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
const NDA_DST = 1;
const NDA_LLADDR = 2;
const AF_BRIDGE = 7;
const NTF_MASTER = 0x04;
const IFF_UP = 1;

export class NetlinkError extends Error {
  constructor(
    message: string,
    /** The positive errno the kernel answered (EEXIST 17, ENOENT 2, EADDRNOTAVAIL 99, ...). */
    readonly errno: number,
  ) {
    super(message);
  }
}

type SockFn = (domain: number, type: number, protocol: number) => number;
type SendFn = (fd: number, buf: Buffer, len: number, flags: number) => number;
type CloseFn = (fd: number) => number;
type IndexFn = (name: string) => number;

function load() {
  const libc = koffi.load(LIBC);
  return {
    socket: libc.func("int socket(int domain, int type, int protocol)") as unknown as SockFn,
    send: libc.func("long send(int fd, const void *buf, size_t len, int flags)") as unknown as SendFn,
    recv: libc.func("long recv(int fd, _Out_ void *buf, size_t len, int flags)") as unknown as SendFn,
    close: libc.func("int close(int fd)") as unknown as CloseFn,
    ifIndex: libc.func("unsigned int if_nametoindex(const char *name)") as unknown as IndexFn,
  };
}
let lib: ReturnType<typeof load> | undefined;
const libc = () => (lib ??= load());
let seq = 1;

function attr(type: number, data: Buffer): Buffer {
  const len = 4 + data.length;
  const out = Buffer.alloc((len + 3) & ~3);
  out.writeUInt16LE(len, 0);
  out.writeUInt16LE(type, 2);
  data.copy(out, 4);
  return out;
}
const cstr = (s: string) => Buffer.from(`${s}\0`);
const ipv4 = (ip: string) => Buffer.from(ip.split(".").map(Number));

function message(type: number, flags: number, body: Buffer[]): Buffer {
  const payload = Buffer.concat(body);
  const hdr = Buffer.alloc(16);
  hdr.writeUInt32LE(16 + payload.length, 0);
  hdr.writeUInt16LE(type, 4);
  hdr.writeUInt16LE(NLM_F_REQUEST | flags, 6);
  hdr.writeUInt32LE(seq++, 8);
  return Buffer.concat([hdr, payload]);
}

/** Sends one request and returns the payloads of the answer (a dump's messages; none for an ack). */
function request(what: string, msg: Buffer): Buffer[] {
  const l = libc();
  const fd = l.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0)
    throw new NetlinkError(`${what}: netlink socket failed (errno ${koffi.errno()})`, koffi.errno());
  try {
    if (l.send(fd, msg, msg.length, 0) !== msg.length)
      throw new NetlinkError(`${what}: netlink send failed (errno ${koffi.errno()})`, koffi.errno());
    const out: Buffer[] = [];
    const buf = Buffer.alloc(65536);
    for (;;) {
      const n = l.recv(fd, buf, buf.length, 0);
      if (n < 0)
        throw new NetlinkError(`${what}: netlink recv failed (errno ${koffi.errno()})`, koffi.errno());
      for (let off = 0; off + 16 <= n;) {
        const len = buf.readUInt32LE(off);
        const type = buf.readUInt16LE(off + 4);
        const flags = buf.readUInt16LE(off + 6);
        if (len < 16) return out;
        if (type === NLMSG_DONE) return out;
        if (type === NLMSG_ERROR) {
          const errno = -buf.readInt32LE(off + 16);
          if (errno === 0) return out;
          throw new NetlinkError(`${what}: ${errnoName(errno)}`, errno);
        }
        out.push(Buffer.from(buf.subarray(off + 16, off + len)));
        if (!(flags & NLM_F_MULTI)) return out;
        off += (len + 3) & ~3;
      }
    }
  } finally {
    l.close(fd);
  }
}

function errnoName(errno: number): string {
  const names: Record<number, string> = {
    1: "operation not permitted",
    2: "no such file or directory",
    17: "file exists",
    19: "no such device",
    22: "invalid argument",
    54: "exchange full (a bridge takes 1,023 ports)",
    99: "cannot assign requested address",
  };
  return `${names[errno] ?? "error"} (errno ${errno})`;
}

/**
 * Whether the interface exists (sysfs, as the network namespace that mounted /sys sees it). For
 * names that may not exist yet: if_nametoindex (linkIndex) of a missing name makes the kernel run
 * `modprobe netdev-<name>` (dev_load) and waits for it, ~0.3 s under emulation, on the event loop.
 */
export function linkExists(name: string): boolean {
  if (!/^[^/\s]{1,15}$/.test(name) || name === "." || name === "..") return false;
  try {
    statSync(`/sys/class/net/${name}`);
    return true;
  } catch {
    return false;
  }
}

/** The interface's index, or undefined when there is no such interface in this network namespace. */
export function linkIndex(name: string): number | undefined {
  const i = libc().ifIndex(name);
  return i > 0 ? i : undefined;
}

function mustIndex(name: string): number {
  const i = linkIndex(name);
  if (i === undefined) throw new NetlinkError(`no interface ${name}`, 19);
  return i;
}

function ifinfo(index: number, flags = 0, change = 0): Buffer {
  const b = Buffer.alloc(16);
  b.writeInt32LE(index, 4);
  b.writeUInt32LE(flags, 8);
  b.writeUInt32LE(change, 12);
  return b;
}

/** `ip link add <name> type bridge`. */
export function addBridge(name: string): void {
  const kind = attr(IFLA_LINKINFO, attr(IFLA_INFO_KIND, cstr("bridge")));
  request(
    `add bridge ${name}`,
    message(RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, [
      ifinfo(0),
      attr(IFLA_IFNAME, cstr(name)),
      kind,
    ]),
  );
}

/** `ip link add <a> type veth peer name <b>` (both ends down, in this namespace). */
export function addVethPair(a: string, b: string): void {
  const peer = attr(VETH_INFO_PEER, Buffer.concat([ifinfo(0), attr(IFLA_IFNAME, cstr(b))]));
  const kind = attr(
    IFLA_LINKINFO,
    Buffer.concat([attr(IFLA_INFO_KIND, cstr("veth")), attr(IFLA_INFO_DATA, peer)]),
  );
  request(
    `add veth ${a} peer ${b}`,
    message(RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, [
      ifinfo(0),
      attr(IFLA_IFNAME, cstr(a)),
      kind,
    ]),
  );
}

/**
 * What Xen's vif-bridge script does for a vif, in one request: MAC fe:ff:ff:ff:ff:ff (netback's
 * convention, so the bridge never takes the vif's address), the bridge's MTU, join the bridge, up.
 * For the hypervisor backends (the lean one attaches netback's interface when it appears);
 * `keepAddress` leaves the MAC alone (a veth joining two bridges); `mtuOf` takes another
 * interface's MTU than the bridge's.
 */
export function attachToBridge(
  ifname: string,
  bridge: string,
  opts: { keepAddress?: boolean; mtuOf?: string } = {},
): void {
  const master = mustIndex(bridge);
  const mtu = Number(readFileSync(`/sys/class/net/${opts.mtuOf ?? bridge}/mtu`, "utf8").trim());
  const u32 = (v: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v, 0);
    return b;
  };
  request(
    `attach ${ifname} to ${bridge}`,
    message(RTM_NEWLINK, NLM_F_ACK, [
      ifinfo(mustIndex(ifname), IFF_UP, IFF_UP),
      ...(opts.keepAddress ? [] : [attr(IFLA_ADDRESS, Buffer.from([0xfe, 0xff, 0xff, 0xff, 0xff, 0xff]))]),
      ...(Number.isInteger(mtu) && mtu > 0 ? [attr(IFLA_MTU, u32(mtu))] : []),
      attr(IFLA_MASTER, u32(master)),
    ]),
  );
}

/**
 * `tc qdisc replace dev <name> root pfifo`: a plain FIFO (txqueuelen packets) as the interface's
 * queue. Called on a vif before it comes up, the kernel's default never gets made: Debian's is
 * fq_codel, one per transmit queue under an mq root, and netback's vifs have a transmit queue per
 * dom0 CPU, so the default costs dom0 tens of KiB of unreclaimable memory per queue per VM.
 */
export function useFifoQdisc(name: string): void {
  const tc = Buffer.alloc(20); // struct tcmsg: family, pad, ifindex, handle, parent, info
  tc.writeInt32LE(mustIndex(name), 4);
  tc.writeUInt32LE(TC_H_ROOT, 12);
  request(
    `pfifo qdisc on ${name}`,
    message(RTM_NEWQDISC, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, [tc, attr(TCA_KIND, cstr("pfifo"))]),
  );
}

/** `ip link set <name> down nomaster` (vif-bridge offline); a vif already gone is fine. */
export function detachFromBridge(ifname: string): void {
  const index = linkIndex(ifname);
  if (index === undefined) return;
  const none = Buffer.alloc(4);
  request(
    `detach ${ifname}`,
    message(RTM_NEWLINK, NLM_F_ACK, [ifinfo(index, 0, IFF_UP), attr(IFLA_MASTER, none)]),
  );
}

/** `ip link set <name> up`. */
export function setLinkUp(name: string): void {
  request(`set ${name} up`, message(RTM_NEWLINK, NLM_F_ACK, [ifinfo(mustIndex(name), IFF_UP, IFF_UP)]));
}

function ifaddr(ip: string, prefix: number, index: number): Buffer[] {
  const b = Buffer.alloc(8);
  b.writeUInt8(AF_INET, 0);
  b.writeUInt8(prefix, 1);
  b.writeUInt32LE(index, 4);
  return [b, attr(IFA_LOCAL, ipv4(ip)), attr(IFA_ADDRESS, ipv4(ip))];
}

/** `ip addr add <ip>/<prefix> dev <name>`; throws NetlinkError with errno 17 when it is there already. */
export function addAddress(name: string, ip: string, prefix: number): void {
  request(
    `add ${ip}/${prefix} to ${name}`,
    message(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, ifaddr(ip, prefix, mustIndex(name))),
  );
}

/** `ip addr del <ip>/<prefix> dev <name>`. */
export function deleteAddress(name: string, ip: string, prefix: number): void {
  request(
    `remove ${ip}/${prefix} from ${name}`,
    message(RTM_DELADDR, NLM_F_ACK, ifaddr(ip, prefix, mustIndex(name))),
  );
}

/** The IPv4 addresses on a link, as { ip, prefix }. */
export function addresses(name: string): { ip: string; prefix: number }[] {
  const index = mustIndex(name);
  const req = Buffer.alloc(8);
  req.writeUInt8(AF_INET, 0);
  const found: { ip: string; prefix: number }[] = [];
  for (const m of request(`list addresses of ${name}`, message(RTM_GETADDR, NLM_F_DUMP, [req]))) {
    if (m.length < 8 || m.readUInt8(0) !== AF_INET || m.readUInt32LE(4) !== index) continue;
    let local: string | undefined;
    let address: string | undefined;
    for (let off = 8; off + 4 <= m.length;) {
      const len = m.readUInt16LE(off);
      const type = m.readUInt16LE(off + 2);
      if (len < 4) break;
      const text = len === 8 ? [...m.subarray(off + 4, off + 8)].join(".") : undefined;
      if (type === IFA_LOCAL) local = text;
      if (type === IFA_ADDRESS) address = text;
      off += (len + 3) & ~3;
    }
    const ip = local ?? address;
    if (ip) found.push({ ip, prefix: m.readUInt8(1) });
  }
  return found;
}

/** `ip neigh del <ip> dev <name>`; false when there was no entry. */
export function deleteNeighbour(name: string, ip: string): boolean {
  const nd = Buffer.alloc(12);
  nd.writeUInt8(AF_INET, 0);
  nd.writeInt32LE(mustIndex(name), 4);
  try {
    request(
      `forget neighbour ${ip} on ${name}`,
      message(RTM_DELNEIGH, NLM_F_ACK, [nd, attr(NDA_DST, ipv4(ip))]),
    );
    return true;
  } catch (err) {
    if (err instanceof NetlinkError && err.errno === 2) return false;
    throw err;
  }
}

/**
 * `bridge fdb del <mac> dev <port> master` for whichever port of `bridge` the MAC was learned on
 * (read from the bridge's forwarding table in sysfs); until the MAC speaks again the bridge floods
 * its frames to every port. A learned entry cannot be pointed at a port that is not forwarding yet
 * (the kernel refuses a dynamic entry there, EPERM), and a static one would never age out.
 * Returns the port it was on, or undefined when the bridge did not know the MAC. An entry on `keep`
 * (the port the MAC is behind now) stays.
 */
export function forgetMac(bridge: string, mac: string, keep?: string): string | undefined {
  const lladdr = Buffer.from(mac.split(":").map((h) => parseInt(h, 16)));
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(mac))
    throw new NetlinkError(`${JSON.stringify(mac.slice(0, 40))} is not a MAC address`, 22);
  const port = fdbPort(bridge, lladdr);
  if (port === undefined || port === keep) return port;
  const nd = Buffer.alloc(12); // struct ndmsg: family, pad, ifindex, state, flags, type
  nd.writeUInt8(AF_BRIDGE, 0);
  nd.writeInt32LE(mustIndex(port), 4);
  nd.writeUInt8(NTF_MASTER, 10);
  try {
    request(`forget ${mac} on ${port}`, message(RTM_DELNEIGH, NLM_F_ACK, [nd, attr(NDA_LLADDR, lladdr)]));
  } catch (err) {
    if (!(err instanceof NetlinkError && err.errno === 2)) throw err; // aged out meanwhile
  }
  return port;
}

/** The port a bridge sends `lladdr` to: its learned entries (struct __fdb_entry, 16 bytes each, in
 *  /sys/class/net/<bridge>/brforward), the port number mapped to a name through brif/<port>/port_no. */
function fdbPort(bridge: string, lladdr: Buffer): string | undefined {
  if (!linkExists(bridge)) throw new NetlinkError(`no bridge ${bridge}`, 19);
  const table = readFileSync(`/sys/class/net/${bridge}/brforward`);
  for (let off = 0; off + 16 <= table.length; off += 16) {
    if (!table.subarray(off, off + 6).equals(lladdr) || table.readUInt8(off + 7) !== 0) continue; // local: ours
    const portNo = table.readUInt8(off + 6) | (table.readUInt8(off + 12) << 8);
    for (const name of readdirSync(`/sys/class/net/${bridge}/brif`)) {
      const no = Number(readFileSync(`/sys/class/net/${bridge}/brif/${name}/port_no`, "utf8").trim());
      if (no === portNo) return name;
    }
  }
  return undefined;
}
