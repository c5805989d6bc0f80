// Per-domain usage from libxenstat (koffi): CPU time, memory and vif counters, which is what the
// CRI's ContainerStats/PodSandboxStats report. One xenstat_get_node snapshot per call, taken on a
// worker thread (it walks every domain and reads /proc/net/dev); the getters after it only read
// the snapshot's memory.
import koffi from "koffi";
import type { CPointer } from "./libxl-ffi.js";
import { type DomainStats, HypervisorError } from "./types.js";

const XENSTAT_VCPU = 0x1;
const XENSTAT_NETWORK = 0x2;

type Getter<R> = (p: CPointer) => R;

function load() {
  const x = koffi.load("libxenstat.so.4.17");
  const u64 = (name: string): Getter<number | bigint> =>
    x.func(`unsigned long long ${name}(void *p)`) as unknown as Getter<number | bigint>;
  const u32 = (name: string): Getter<number> =>
    x.func(`unsigned int ${name}(void *p)`) as unknown as Getter<number>;
  const getNode = x.func("void *xenstat_get_node(void *h, unsigned int flags)") as unknown as {
    async: (h: CPointer, flags: number, cb: (err: unknown, node: CPointer | null) => void) => void;
  };
  return {
    init: x.func("void *xenstat_init(void)") as unknown as () => CPointer | null,
    uninit: x.func("void xenstat_uninit(void *h)") as unknown as (h: CPointer) => void,
    getNode: (h: CPointer, flags: number): Promise<CPointer | null> =>
      new Promise((resolve, reject) =>
        getNode.async(h, flags, (err, node) =>
          err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(node),
        ),
      ),
    freeNode: x.func("void xenstat_free_node(void *node)") as unknown as (n: CPointer) => void,
    nodeDomain: x.func("void *xenstat_node_domain(void *node, unsigned int domid)") as unknown as (
      n: CPointer,
      domid: number,
    ) => CPointer | null,
    cpuNs: u64("xenstat_domain_cpu_ns"),
    curMem: u64("xenstat_domain_cur_mem"),
    maxMem: u64("xenstat_domain_max_mem"),
    numVcpus: u32("xenstat_domain_num_vcpus"),
    numNetworks: u32("xenstat_domain_num_networks"),
    network: x.func("void *xenstat_domain_network(void *d, unsigned int i)") as unknown as (
      d: CPointer,
      i: number,
    ) => CPointer | null,
    netId: u32("xenstat_network_id"),
    rbytes: u64("xenstat_network_rbytes"),
    rpackets: u64("xenstat_network_rpackets"),
    rerrs: u64("xenstat_network_rerrs"),
    rdrop: u64("xenstat_network_rdrop"),
    tbytes: u64("xenstat_network_tbytes"),
    tpackets: u64("xenstat_network_tpackets"),
    terrs: u64("xenstat_network_terrs"),
    tdrop: u64("xenstat_network_tdrop"),
  };
}

const num = (v: number | bigint): number => Number(v);

export class XenStat {
  private closed = false;
  private constructor(
    private readonly l: ReturnType<typeof load>,
    private readonly h: CPointer,
  ) {}

  static open(): XenStat {
    const l = load();
    const h = l.init();
    if (h === null) throw new HypervisorError("xenstat_init failed: not dom0?");
    return new XenStat(l, h);
  }

  /** Usage of `domid` right now, or undefined when there is no such domain. */
  async domain(domid: number): Promise<DomainStats | undefined> {
    if (this.closed) throw new HypervisorError("xenstat handle is closed");
    const node = await this.l.getNode(this.h, XENSTAT_VCPU | XENSTAT_NETWORK);
    if (node === null) throw new HypervisorError("xenstat_get_node failed");
    try {
      const d = this.l.nodeDomain(node, domid);
      if (d === null) return undefined;
      const networks = Array.from({ length: this.l.numNetworks(d) }, (_, i) => this.l.network(d, i)).filter(
        (n): n is CPointer => n !== null,
      );
      return {
        domid,
        timestampMs: Date.now(),
        cpuTimeNs: BigInt(this.l.cpuNs(d)),
        memoryBytes: num(this.l.curMem(d)),
        maxMemoryBytes: num(this.l.maxMem(d)),
        vcpus: this.l.numVcpus(d),
        networks: networks.map((n) => ({
          devid: this.l.netId(n),
          rxBytes: num(this.l.rbytes(n)),
          rxPackets: num(this.l.rpackets(n)),
          rxErrors: num(this.l.rerrs(n)),
          rxDrops: num(this.l.rdrop(n)),
          txBytes: num(this.l.tbytes(n)),
          txPackets: num(this.l.tpackets(n)),
          txErrors: num(this.l.terrs(n)),
          txDrops: num(this.l.tdrop(n)),
        })),
      };
    } finally {
      this.l.freeNode(node);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.l.uninit(this.h);
  }
}
