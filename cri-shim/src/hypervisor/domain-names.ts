// Domain names by domid, so that listing a thousand domains is one hypercall and not a thousand
// XenStore reads as well (libxl_domid_to_name is one xs_read each; under TCG that made the exit
// monitor's twice-a-second list, the node agent's resync and the kubelet's stats polls grow with the
// number of VMs).
//
// An entry holds for the domain's uuid it was read with: a shell the lean builder turns into a VM
// gets the VM's uuid after its name (sfxen writes the name first), and a new domain reusing a domid
// has another uuid, so both read the name again. A rename that keeps the uuid (`xl rename` by hand)
// is seen within maxAgeMs. Misses are read at most `concurrency` at a time: koffi refuses async
// calls beyond 256 queued, which a Promise.all over a thousand domains exceeded.

export interface NameCacheOptions {
  /** How long a name is trusted without reading it again. */
  maxAgeMs: number;
  /** XenStore reads in flight at once for the misses of one lookup. */
  concurrency: number;
  now?: () => number;
}

interface Entry {
  uuid: string;
  name: string;
  readAt: number;
}

export class DomainNameCache {
  private readonly entries = new Map<number, Entry>();
  private readonly now: () => number;

  constructor(private readonly opts: NameCacheOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** The cached name of `domid` while it has this uuid and the entry is fresh. */
  get(domid: number, uuid: string): string | undefined {
    const e = this.entries.get(domid);
    if (!e || e.uuid !== uuid || this.now() - e.readAt > this.opts.maxAgeMs) return undefined;
    return e.name;
  }

  set(domid: number, uuid: string, name: string): void {
    this.entries.set(domid, { uuid, name, readAt: this.now() });
  }

  forget(domid: number): void {
    this.entries.delete(domid);
  }

  /** Drops the entries of domains not in `domids` (after a full list: they are gone). */
  retain(domids: Iterable<number>): void {
    const keep = new Set(domids);
    for (const d of this.entries.keys()) if (!keep.has(d)) this.entries.delete(d);
  }

  get size(): number {
    return this.entries.size;
  }

  /**
   * The names of `domains`, reading (with `read`) only those not cached, at most `concurrency` at a
   * time; caches what it read. A name that cannot be read is "" and not cached.
   */
  async names(
    domains: ReadonlyArray<{ domid: number; uuid: string }>,
    read: (domid: number) => Promise<string | undefined>,
  ): Promise<string[]> {
    const out = domains.map((d) => this.get(d.domid, d.uuid));
    const missing = out.flatMap((n, i) => (n === undefined ? [i] : []));
    let next = 0;
    const worker = async () => {
      while (next < missing.length) {
        const i = missing[next++]!;
        const d = domains[i]!;
        const name = await read(d.domid);
        out[i] = name ?? "";
        if (name !== undefined) this.set(d.domid, d.uuid, name);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.opts.concurrency, missing.length) }, worker));
    return out as string[];
  }
}
