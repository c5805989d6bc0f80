// In-process IPv4 address management with host-local's on-disk layout, so the shim runs no CNI plugin
// per sandbox and a node upgraded from the host-local plugin keeps its leases:
//   <dataDir>/<network>/<ip>                 one file per leased address: "<container id>\r\n<ifname>"
//                                            (older host-local wrote the id alone; both are read)
//   <dataDir>/<network>/last_reserved_ip.0   the last address handed out
// Allocation follows host-local: ranges from the CNI config (`ranges: [[{subnet, rangeStart?,
// rangeEnd?, gateway?}]]`, or the legacy flat `subnet/rangeStart/rangeEnd/gateway`), starting after
// the last reserved address and wrapping, skipping the network, broadcast and gateway addresses.
// Crash safety: a lease appears whole or not at all. It is written to a temporary file and then
// hard-linked to its address name; link() fails when the name exists, so two writers (this shim and
// a stray host-local, or this shim before and after a kill -9) never get the same address. A
// temporary file a crash left behind is removed at the next pass over the directory. Only the
// choice of an address is serialised per Ipam, in memory, from a view of the directory read once
// (again when a link finds its name taken: another writer); lease files are linked after it. A
// pass reads only the lease files it has not seen: a lease file is written whole once and never
// rewritten (released by unlink), so its owner is known from the first read while its name stays
// listed. Listing and reading at every allocation made each RunPodSandbox slower by the number of
// pods on the node and held every other one up. (An address another writer releases and takes again
// between two passes keeps its old owner here; the shim is the only writer of its directory.)
import { randomBytes } from "node:crypto";
import { link, mkdir, readdir, readFile, rename, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";

export interface IpRange {
  subnet: string;
  rangeStart?: string;
  rangeEnd?: string;
  gateway?: string;
}

export interface IpamConfig {
  /** The CNI network name: the lease directory's name under dataDir. */
  network: string;
  dataDir: string;
  /** One range set (host-local's `ranges[0]`): the ranges one address is taken from, in order. */
  ranges: IpRange[];
}

export interface Lease {
  ip: string;
  prefixLength: number;
  gateway: string;
}

export class IpamError extends Error {
  constructor(
    message: string,
    readonly code: "exhausted" | "config",
  ) {
    super(message);
  }
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const LINE_BREAK = "\r\n";
const TMP_PREFIX = ".lease-";

export function ipToInt(ip: string): number | undefined {
  const m = IPV4.exec(ip);
  if (!m) return undefined;
  const o = m.slice(1).map(Number);
  if (o.some((x) => x > 255)) return undefined;
  return ((o[0]! << 24) | (o[1]! << 16) | (o[2]! << 8) | o[3]!) >>> 0;
}

export function intToIp(n: number): string {
  return [24, 16, 8, 0].map((sh) => (n >>> sh) & 255).join(".");
}

export interface Span {
  first: number;
  last: number;
  gateway: number;
  prefix: number;
}

/** A range's usable addresses, checked; throws IpamError("config") on a bad one. */
export function spanOf(r: IpRange): Span {
  const [net, pfx] = String(r.subnet).split("/");
  const base = ipToInt(net ?? "");
  const prefix = Number(pfx);
  if (base === undefined || !Number.isInteger(prefix) || prefix < 8 || prefix > 30)
    throw new IpamError(
      `IPAM range subnet ${JSON.stringify(r.subnet)}: expected IPv4 a.b.c.d/8..30`,
      "config",
    );
  const mask = (~0 << (32 - prefix)) >>> 0;
  const network = (base & mask) >>> 0;
  const broadcast = (network | ~mask) >>> 0;
  const inside = (what: string, v: string | undefined, dflt: number): number => {
    if (v === undefined) return dflt;
    const n = ipToInt(v);
    if (n === undefined || n <= network || n >= broadcast)
      throw new IpamError(
        `IPAM range ${what} ${JSON.stringify(v)} is not a host address of ${r.subnet}`,
        "config",
      );
    return n;
  };
  const first = inside("rangeStart", r.rangeStart, network + 1);
  const last = inside("rangeEnd", r.rangeEnd, broadcast - 1);
  const gateway = inside("gateway", r.gateway, network + 1);
  if (first > last) throw new IpamError(`IPAM range ${r.subnet}: rangeStart is after rangeEnd`, "config");
  return { first, last, gateway, prefix };
}

/** The range set of a CNI `ipam` section (host-local's two spellings); only IPv4 ranges are used. */
export function rangesOf(ipam: Record<string, unknown>): IpRange[] {
  const sets = ipam.ranges;
  if (Array.isArray(sets) && Array.isArray(sets[0]))
    return (sets[0] as IpRange[]).filter((r) => typeof r?.subnet === "string" && !r.subnet.includes(":"));
  if (typeof ipam.subnet === "string")
    return [
      {
        subnet: ipam.subnet,
        rangeStart: ipam.rangeStart as string | undefined,
        rangeEnd: ipam.rangeEnd as string | undefined,
        gateway: ipam.gateway as string | undefined,
      },
    ];
  return [];
}

/** The container id a lease file records (host-local's current and legacy contents). */
export function leaseOwner(content: string): string {
  return content.split(/\r?\n/)[0]!.trim();
}

/**
 * The next free address after `after` (or from the first range's start when `after` is in no
 * range), walking the ranges in order and wrapping once, as host-local's round-robin iterator
 * does. Pure: `taken` are the leased addresses.
 */
export function nextFree(spans: Span[], taken: ReadonlySet<number>, after?: number): number | undefined {
  if (spans.length === 0) return undefined;
  const total = spans.reduce((n, s) => n + (s.last - s.first + 1), 0);
  let span = 0;
  let ip = spans[0]!.first;
  const at = after === undefined ? -1 : spans.findIndex((s) => after >= s.first && after <= s.last);
  if (at >= 0) {
    span = at;
    ip = after! + 1;
  }
  for (let i = 0; i < total; i++) {
    if (ip > spans[span]!.last) {
      span = (span + 1) % spans.length;
      ip = spans[span]!.first;
    }
    if (ip !== spans[span]!.gateway && !taken.has(ip)) return ip;
    ip++;
  }
  return undefined;
}

export class Ipam {
  /** The ranges' usable addresses (read-only for users: bridge-ports.ts orders addresses by them). */
  readonly spans: Span[];
  private readonly dir: string;
  private tail: Promise<unknown> = Promise.resolve();
  /** Lease file name -> owner, for the files seen in the last pass. */
  private readonly owners = new Map<string, string>();
  /** Address -> owner: the directory as last read, with this process's leases since. */
  private view: Map<number, string> | undefined;
  /** Addresses picked and not yet linked on disk (-> owner): kept across re-reads. */
  private readonly claiming = new Map<number, string>();
  /** Temporary files this process is writing (a concurrent pass must not take them for leftovers). */
  private readonly writing = new Set<string>();
  private last: number | undefined;
  private lastWritten: number | undefined;
  private lastChain: Promise<void> = Promise.resolve();
  /** Lease files read so far (each is read once while it exists). */
  leaseReads = 0;

  constructor(private readonly config: IpamConfig) {
    if (!/^[a-zA-Z0-9_-][a-zA-Z0-9_.-]{0,63}$/.test(config.network))
      throw new IpamError(
        `CNI network name ${JSON.stringify(config.network)} is not a safe directory name`,
        "config",
      );
    if (config.ranges.length === 0) throw new IpamError("IPAM config has no IPv4 range", "config");
    this.spans = config.ranges.map(spanOf);
    this.dir = join(config.dataDir, config.network);
  }

  /** The first range's gateway and prefix (dom0's address on the bridge). */
  get gateway(): { gateway: string; prefixLength: number } {
    return { gateway: intToIp(this.spans[0]!.gateway), prefixLength: this.spans[0]!.prefix };
  }

  /**
   * Leases an address for `id`; the same id gets the address it already holds. Only the choice is
   * serialised (in memory, from the view); the lease file is linked after it, so a burst of
   * sandboxes does not wait in one line for each other's file writes. A name another writer took
   * meanwhile makes the link fail: the directory is read again and another address chosen.
   */
  async allocate(id: string, ifname = "eth0"): Promise<Lease> {
    checkId(id);
    for (let reread = false; ; reread = true) {
      const picked = await this.serial(async () => {
        const view = await this.current(reread);
        const held = [...view].find(([, owner]) => owner === id)?.[0];
        if (held !== undefined) return { ip: held, fresh: false };
        const ip = nextFree(this.spans, new Set(view.keys()), this.last);
        if (ip === undefined)
          throw new IpamError(`no IP addresses available in network ${this.config.network}`, "exhausted");
        view.set(ip, id);
        this.claiming.set(ip, id);
        this.last = ip;
        return { ip, fresh: true };
      });
      if (!picked.fresh) {
        // Held, or being linked by a concurrent call for the same id: wait for that to settle.
        while (this.claiming.get(picked.ip) === id) await new Promise((r) => setTimeout(r, 5));
        if (this.view?.get(picked.ip) === id) return this.leaseFor(picked.ip);
        continue;
      }
      let linked = false;
      try {
        linked = await this.claim(picked.ip, `${id}${LINE_BREAK}${ifname}`);
      } finally {
        this.claiming.delete(picked.ip);
        if (!linked && this.view?.get(picked.ip) === id) this.view.delete(picked.ip);
      }
      if (linked) {
        await this.saveLast();
        return this.leaseFor(picked.ip);
      }
      // Someone else linked that name between our read and our link: read the directory again.
    }
  }

  /** Releases every address `id` holds; a second call (or one for an unknown id) is a no-op. */
  release(id: string): Promise<number> {
    return this.serial(async () => {
      checkId(id);
      const of = (view: Map<number, string>) => [...view].filter(([, owner]) => owner === id);
      let mine = of(await this.current(false));
      // An address another writer leased for this id since the last read.
      if (mine.length === 0) mine = of(await this.current(true));
      for (const [ip] of mine) {
        if (this.claiming.has(ip)) continue;
        await unlink(join(this.dir, intToIp(ip))).catch(ignoreMissing);
        this.owners.delete(intToIp(ip));
        this.view?.delete(ip);
      }
      return mine.filter(([ip]) => !this.claiming.has(ip)).length;
    });
  }

  /** Releases every lease whose container id is not in `owners`; returns their addresses. */
  releaseUnowned(owners: ReadonlySet<string>): Promise<string[]> {
    return this.serial(async () => {
      const released: string[] = [];
      for (const [ip, owner] of await this.current(true))
        if (!owners.has(owner) && !this.claiming.has(ip)) {
          await unlink(join(this.dir, intToIp(ip))).catch(ignoreMissing);
          this.owners.delete(intToIp(ip));
          this.view?.delete(ip);
          released.push(intToIp(ip));
        }
      return released;
    });
  }

  /** Every lease on disk (read now): address -> container id. */
  leases(): Promise<Map<string, string>> {
    return this.serial(async () => {
      const view = await this.current(true);
      return new Map(
        [...view]
          .filter(([ip]) => !this.claiming.has(ip))
          .map(([ip, owner]) => [intToIp(ip), owner] as const),
      );
    });
  }

  private leaseFor(ip: number): Lease {
    const span = this.spans.find((s) => ip >= s.first && ip <= s.last) ?? this.spans[0]!;
    return { ip: intToIp(ip), prefixLength: span.prefix, gateway: intToIp(span.gateway) };
  }

  /** The view, read from the directory the first time or when `reread`; addresses being linked stay. */
  private async current(reread: boolean): Promise<Map<number, string>> {
    if (this.view && !reread) return this.view;
    if (!this.view) {
      await mkdir(this.dir, { recursive: true });
      const last = (await readFile(join(this.dir, "last_reserved_ip.0"), "utf8").catch(() => "")).trim();
      this.last = ipToInt(last);
      this.lastWritten = this.last;
    }
    const view = await this.read();
    for (const [ip, owner] of this.claiming) view.set(ip, owner);
    this.view = view;
    return view;
  }

  /** Writes the newest reservation to last_reserved_ip.0; a burst of calls writes it once or twice. */
  private saveLast(): Promise<void> {
    const run = this.lastChain.then(async () => {
      const value = this.last;
      if (value === undefined || value === this.lastWritten) return;
      const name = tmpName();
      this.writing.add(name);
      try {
        await writeFile(join(this.dir, name), intToIp(value));
        await rename(join(this.dir, name), join(this.dir, "last_reserved_ip.0"));
      } finally {
        this.writing.delete(name);
      }
      this.lastWritten = value;
    });
    this.lastChain = run.catch(() => undefined);
    return run;
  }

  private async read(): Promise<Map<number, string>> {
    const names = await readdir(this.dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") return [] as string[];
      throw err;
    });
    const out = new Map<number, string>();
    const listed = new Set<string>();
    for (const name of names) {
      if (name.startsWith(TMP_PREFIX)) {
        // Left by a crash mid-write; another live process's file may be in flight, and ours.
        if (!this.writing.has(name) && !writerAlive(name))
          await unlink(join(this.dir, name)).catch(ignoreMissing);
        continue;
      }
      const ip = ipToInt(name);
      if (ip === undefined) continue;
      listed.add(name);
      let owner = this.owners.get(name);
      if (owner === undefined) {
        this.leaseReads++;
        const content = await readFile(join(this.dir, name), "utf8").catch(() => undefined);
        if (content === undefined) continue;
        owner = leaseOwner(content);
        this.owners.set(name, owner);
      }
      out.set(ip, owner);
    }
    for (const name of this.owners.keys()) if (!listed.has(name)) this.owners.delete(name);
    return out;
  }

  /** Creates the lease file whole, or returns false if the address is taken. */
  private async claim(ip: number, content: string): Promise<boolean> {
    const name = tmpName();
    const tmp = join(this.dir, name);
    this.writing.add(name);
    try {
      await writeFile(tmp, content, { mode: 0o644 });
      await link(tmp, join(this.dir, intToIp(ip)));
      this.owners.set(intToIp(ip), leaseOwner(content));
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
      throw err;
    } finally {
      await unlink(tmp).catch(ignoreMissing);
      this.writing.delete(name);
    }
  }

  private serial<T>(work: () => Promise<T>): Promise<T> {
    const result = this.tail.then(work, work);
    this.tail = result.catch(() => undefined);
    return result;
  }
}

/** A temporary file's name records its writer's pid: `.lease-<pid>-<random>`. */
function tmpName(): string {
  return `${TMP_PREFIX}${process.pid}-${randomBytes(6).toString("hex")}`;
}

function writerAlive(name: string): boolean {
  const pid = Number(/^\.lease-(\d+)-/.exec(name)?.[1]);
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

function checkId(id: string): void {
  if (typeof id !== "string" || !/^[a-zA-Z0-9_.-]{1,128}$/.test(id))
    throw new IpamError(
      `container id ${JSON.stringify(String(id).slice(0, 40))} is not a valid id`,
      "config",
    );
}

function ignoreMissing(err: NodeJS.ErrnoException): void {
  if (err.code !== "ENOENT") throw err;
}
