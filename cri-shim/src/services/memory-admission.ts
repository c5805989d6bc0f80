// RunPodSandbox's memory check without a hypercall per sandbox. A snapshot of Xen's free memory is
// taken together with the set of sandboxes whose domain existed just before it, and reused for up to
// `maxAgeMs`: every sandbox without a domain at the snapshot is counted as promised against the
// snapshot's free memory, so a domain built since (whose memory left the free figure after the
// snapshot) is counted once, as a promise; a domain destroyed since only makes the check stricter.
// Under a burst of sandboxes the check was one libxl call each, inside the lock every RunPodSandbox
// waits on.

export interface MemorySnapshot {
  at: number;
  freeMiB: number;
  /** Sandboxes whose domain existed when the snapshot was taken. */
  live: ReadonlySet<string>;
}

/** What a sandbox holds back: its id, its reservation, whether it has let go of it (notready). */
export interface Holder {
  id: string;
  reservedMiB: number;
  released: boolean;
}

/** Memory promised to sandboxes that had no domain at the snapshot (pure). */
export function promisedMiB(holders: Iterable<Holder>, live: ReadonlySet<string>): number {
  let sum = 0;
  for (const h of holders) if (!h.released && !live.has(h.id)) sum += h.reservedMiB;
  return sum;
}

export class MemoryAdmission {
  private snap: MemorySnapshot | undefined;
  private taking: Promise<MemorySnapshot> | undefined;

  constructor(
    private readonly source: { live(): Set<string>; freeKiB(): Promise<number> },
    private readonly maxAgeMs = 1000,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** A snapshot at most maxAgeMs old (or a new one when `fresh`); concurrent callers share one. */
  async snapshot(fresh = false): Promise<MemorySnapshot> {
    if (!fresh && this.snap && this.now() - this.snap.at <= this.maxAgeMs) return this.snap;
    this.taking ??= (async () => {
      try {
        // The live set first: a domain built while Xen is asked is then counted twice, never not at all.
        const live = this.source.live();
        const freeMiB = Math.floor((await this.source.freeKiB()) / 1024);
        this.snap = { at: this.now(), freeMiB, live };
        return this.snap;
      } finally {
        this.taking = undefined;
      }
    })();
    return this.taking;
  }

  /** Whether `requestMiB` more fits beside `holders`' promises; a refusal is checked again on a fresh snapshot. */
  async fits(
    requestMiB: number,
    holders: () => Iterable<Holder>,
  ): Promise<{ ok: boolean; freeMiB: number; promisedMiB: number }> {
    const check = (s: MemorySnapshot) => {
      const promised = promisedMiB(holders(), s.live);
      return { ok: requestMiB + promised <= s.freeMiB, freeMiB: s.freeMiB, promisedMiB: promised };
    };
    const first = check(await this.snapshot());
    return first.ok ? first : check(await this.snapshot(true));
  }
}
