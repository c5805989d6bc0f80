// The pool of pre-built shells (domains with memory populated and no kernel yet), per shape. A
// create takes a shell of its shape when one is there; the pool then refills in the background, one
// shell at a time, up to `depth` per shape and `maxMiB` in all. Shapes come from the flags and from
// demand: each create's shape becomes (or stays) one of the `maxShapes` most recent; a shape that
// falls out of that list gives its shells back.
import { logger } from "../../../../lib/log.js";

const log = logger("xen-lean-pool");

export interface Shape {
  memoryMiB: number;
  maxMemoryMiB: number;
  vcpus: number;
  maxVcpus: number;
}

export function shapeKey(s: Shape): string {
  return `${s.memoryMiB}m${s.maxMemoryMiB}M${s.vcpus}c${s.maxVcpus}C-pv`;
}

/** Parses `--pool-shapes`: comma list of MEMORY_MIB[:VCPUS], e.g. "4,64:2". */
export function parseShapes(text: string): Shape[] {
  return text
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)
    .map((item) => {
      const m = /^(\d+)(?::(\d+))?$/.exec(item);
      const mem = m ? Number(m[1]) : NaN;
      const vcpus = m?.[2] ? Number(m[2]) : 1;
      if (!m || mem < 1 || vcpus < 1 || vcpus > 128)
        throw new Error(`pool shape must be MEMORY_MIB[:VCPUS], got ${JSON.stringify(item)}`);
      return { memoryMiB: mem, maxMemoryMiB: mem, vcpus, maxVcpus: vcpus };
    });
}

/** What the pool needs from the builder (libsfxen in production, a double in unit tests). */
export interface ShellBuilder {
  prepare(name: string, shape: Shape): Promise<number>;
  destroy(domid: number): Promise<void>;
  freeKiB(): Promise<number>;
}

export interface PoolOptions {
  /** Shells kept ready per shape; 0 turns the pool off. */
  depth: number;
  /** Memory all shells together may hold. */
  maxMiB: number;
  /** Shapes to keep from the start (before any demand). */
  shapes?: Shape[];
  /** How many distinct recent shapes are kept. */
  maxShapes?: number;
  /** Xen memory left free after a refill (so a cold build of another shape still fits). */
  reserveMiB?: number;
  onChange?: (depths: Map<string, number>) => void;
}

interface Entry {
  shape: Shape;
  shells: number[];
  lastUsed: number;
}

export class ShellPool {
  private readonly entries = new Map<string, Entry>();
  private seq = 0;
  private refilling: Promise<void> | undefined;
  private closed = false;

  constructor(
    private readonly builder: ShellBuilder,
    private readonly opts: PoolOptions,
  ) {
    for (const s of opts.shapes ?? []) this.learn(s);
  }

  /** Records demand for `shape` and hands out a ready shell of it, if any. The caller kicks the
   *  refill when its create is done, so the refill does not compete with it for dom0's CPU. */
  take(shape: Shape): number | undefined {
    const e = this.learn(shape);
    const domid = e?.shells.shift();
    this.changed();
    return domid;
  }

  /** Memory held by shells now. */
  heldMiB(): number {
    let sum = 0;
    for (const e of this.entries.values()) sum += e.shells.length * e.shape.memoryMiB;
    return sum;
  }

  depths(): Map<string, number> {
    return new Map([...this.entries].map(([k, e]) => [k, e.shells.length]));
  }

  /** Resolves when no refill is running (tests and benchmarks wait on it). */
  async idle(): Promise<void> {
    while (this.refilling) await this.refilling;
  }

  /** Gives back shells (largest first) until `miB` is freed or none are left; for a cold build short of memory. */
  async release(miB: number): Promise<number> {
    await this.idle();
    let freed = 0;
    const order = [...this.entries.values()].sort((a, b) => b.shape.memoryMiB - a.shape.memoryMiB);
    for (const e of order) {
      while (freed < miB && e.shells.length > 0) {
        await this.builder.destroy(e.shells.pop()!).catch(() => undefined);
        freed += e.shape.memoryMiB;
      }
    }
    this.changed();
    return freed;
  }

  /** Stops refilling and destroys every shell. */
  async close(): Promise<void> {
    this.closed = true;
    await this.idle();
    for (const e of this.entries.values())
      for (const d of e.shells.splice(0)) await this.builder.destroy(d).catch(() => undefined);
    this.changed();
  }

  /** Starts a refill if none runs. */
  kick(): void {
    if (this.refilling || this.closed || this.opts.depth <= 0) return;
    this.refilling = this.refill()
      .catch((err: unknown) => {
        log.warn("pool refill stopped", { err: String(err) });
      })
      .finally(() => {
        this.refilling = undefined;
      });
  }

  private learn(shape: Shape): Entry | undefined {
    if (this.opts.depth <= 0) return undefined;
    const key = shapeKey(shape);
    let e = this.entries.get(key);
    if (!e) {
      e = { shape: { ...shape }, shells: [], lastUsed: 0 };
      this.entries.set(key, e);
    }
    e.lastUsed = Date.now() + this.seq++ / 1e6;
    const max = this.opts.maxShapes ?? 4;
    while (this.entries.size > max) {
      const [oldKey, old] = [...this.entries].reduce((a, b) => (b[1].lastUsed < a[1].lastUsed ? b : a));
      this.entries.delete(oldKey);
      for (const d of old.shells) void this.builder.destroy(d).catch(() => undefined);
    }
    return e;
  }

  /** The shape most short of shells that still fits the pool's and Xen's memory, if any. */
  private async next(): Promise<Entry | undefined> {
    const want = [...this.entries.values()]
      .filter((e) => e.shells.length < this.opts.depth)
      .filter((e) => this.heldMiB() + e.shape.memoryMiB <= this.opts.maxMiB)
      .sort((a, b) => a.shells.length - b.shells.length || b.lastUsed - a.lastUsed);
    if (want.length === 0) return undefined;
    const freeMiB = (await this.builder.freeKiB()) / 1024;
    return want.find((e) => freeMiB - e.shape.memoryMiB >= (this.opts.reserveMiB ?? 64));
  }

  private async refill(): Promise<void> {
    for (let e = await this.next(); e && !this.closed; e = await this.next()) {
      const name = `sf-shell-${e.shape.memoryMiB}m${e.shape.vcpus}c-${process.pid}-${this.seq++}`;
      const domid = await this.builder.prepare(name, e.shape);
      if (this.closed || this.entries.get(shapeKey(e.shape)) !== e) {
        await this.builder.destroy(domid).catch(() => undefined);
        continue;
      }
      e.shells.push(domid);
      this.changed();
    }
  }

  private changed(): void {
    this.opts.onChange?.(this.depths());
  }
}
